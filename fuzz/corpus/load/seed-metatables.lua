local log = {}
local base = {greet = function() return "hi" end}
local mid = setmetatable({}, {__index = base})
local top = setmetatable({}, {__index = mid, __len = function() return 42 end,
  __concat = function(a, b) return "cat" end, __eq = function() return true end,
  __call = function(self, x) return x * 2 end, __tostring = function() return "top" end})
log[1] = top.greet()
log[2] = #top
log[3] = top .. "x"
log[4] = top(21)
log[5] = tostring(top)
log[6] = pcall(setmetatable, {}, {__gc = function() end})
local chain = {}
for i = 1, 100 do chain = setmetatable({}, {__index = chain}) end
log[7] = chain.missing
local loop = setmetatable({}, {})
getmetatable(loop).__index = loop
log[8] = pcall(function() return loop.x end)
log[9] = getmetatable("").__index == string
log[10] = pcall(rawset, ns, "x", 1)
return log
