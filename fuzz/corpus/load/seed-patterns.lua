local s = string.rep("a", 3000)
local r = {}
r[1] = s:find("a*a*a*a*a*b")
r[2] = ("hello world from lua"):gsub("(%w+)", "<%1>")
r[3] = ("key=val; k2=v2"):gsub("(%w+)=(%w+)", function(k, v) return v .. "=" .. k end)
r[4] = ("f(a(b)c)d"):match("%b()")
r[5] = ("THE (quick) fox"):find("%f[%a]%a+", 5)
for w in ("one two three"):gmatch("()(%a+)()") do r[#r + 1] = w end
r[#r + 1] = ("abc"):gsub("", "-")
r[#r + 1] = pcall(string.find, "x", "[a")
r[#r + 1] = pcall(string.gsub, "x", "(", "")
r[#r + 1] = pcall(string.rep, s, 100000)
r[#r + 1] = ("x"):rep(100):match(string.rep("x?", 100) .. string.rep("x", 100))
r[#r + 1] = ("abc"):gsub("%w", {a = 1, b = true})
r[#r + 1] = s:find("a", 1, true)
return r
