local weak = setmetatable({}, {__mode = "k"})
for i = 1, 2000 do weak[{}] = i end
local strs = {}
for i = 1, 2000 do strs[i] = tostring(i) .. string.rep("s", i % 50) end
return collectgarbage("count") > 0, pcall(collectgarbage, "collect"), pcall(collectgarbage, "step"), #strs
