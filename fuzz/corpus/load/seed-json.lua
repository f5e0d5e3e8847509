local json = require("json")
local doc = json.encode({a = {1, 2, 3}, b = "x\"y\0", c = {d = {e = true}}, f = 1.5})
local back = json.decode(doc)
local bad = {pcall(json.decode, "[1, 2,")}
local deep = string.rep("[", 500) .. string.rep("]", 500)
local d2 = {pcall(json.decode, deep)}
local cyc = {} cyc.self = cyc
local e2 = {pcall(json.encode, cyc)}
local odd = {pcall(json.encode, {[1] = 1, [3] = 3})}
return doc, back, bad, d2, e2, odd, json.decode('"\\ud83d\\ude00"'), json.decode("1e400")
