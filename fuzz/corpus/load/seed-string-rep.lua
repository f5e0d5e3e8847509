local s = string.rep("ab", 1000, ",")
local n = #s
local ok, err = pcall(string.rep, "x", 1 << 40)
local ok2 = pcall(string.rep, "", 1 << 62)
local big = ("y"):rep(1 << 20)
big = big .. big .. big
return n, ok, err, ok2, #big, s:sub(-5), ("z"):rep(-1), ("abc"):rep(3, "\0")
