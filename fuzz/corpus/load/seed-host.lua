local r = {}
r[1] = echo({1, 2, {a = 1, [true] = false, [2.5] = "x"}})
r[2] = echo(ns.list)
r[3] = {pcall(echo, print)}
r[4] = echo(0/0)
r[5] = echo(math.huge, -math.huge)
r[6] = {pcall(echo)}
r[7] = echo("\0\255\xed\xa0\x80")
r[8] = echo(math.mininteger)
r[9] = {pcall(echo, coroutine.create(print))}
local cyc = {} cyc[1] = cyc
r[10] = {pcall(echo, cyc)}
r[11] = echo({[{}] = 1})
return r
