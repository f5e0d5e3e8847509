local t = {}
local cur = t
for i = 1, 40 do cur[1] = {} cur = cur[1] end
local ok = {}
local c2 = ok
for i = 1, 20 do c2.next = {i, tostring(i)} c2 = c2.next end
return ok, pcall(function() return t end), t
