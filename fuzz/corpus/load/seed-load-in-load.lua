local f = load("return load('return load(\"return 1 + ...\")(...)')(...)")
local parts = {"return ", "2", " * ", "21"}
local i = 0
local g = load(function() i = i + 1 return parts[i] end)
local env = {x = 5}
local h = load("x = x + 1 return x", "chunk", "t", env)
local bad, msg = load("return +")
local bin = load("\27Lua", "b", "b")
local r = load(function() error("reader fails") end)
local deep = "return 1"
for k = 1, 30 do deep = "return load(" .. string.format("%q", deep) .. ")()" end
return f(41), g(), h(), env.x, bad, msg, bin, r, load(deep)()
