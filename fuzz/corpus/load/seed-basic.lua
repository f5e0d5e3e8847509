local a, b = 7, 3
local t = {a + b, a - b, a * b, a / b, a // b, a % b, a ^ b, a & b, a | b, a ~ b, a << b, a >> b}
return t, #t, "x" .. a, -a, not a, {x = 1, [2.5] = true, [false] = "f"}
