local r = {}
r[1] = {pcall(error)}
r[2] = {pcall(error, setmetatable({}, {__tostring = function() error("nested") end}))}
r[3] = {pcall(error, string.rep("e", 100000))}
r[4] = {xpcall(function() error("a") end, function(m) error("handler") end)}
r[5] = {pcall(error, {code = 1}, 2)}
r[6] = select("#", pcall(error, nil))
local function rec(n) return rec(n + 1) + 1 end
r[7] = {pcall(rec, 1)}
local function tail(n) if n == 0 then return "done" end return tail(n - 1) end
r[8] = tail(100000)
error(setmetatable({}, {__index = function() return "boom" end}))
