local s = [==[
long ]] string ]=] with ]===] brackets
]==]
local c = --[[ block ]] 1 --[==[ another
]==] + 2
return s, c, 0x7fffffffffffffff, 0xffffffffffffffff, 1e308 * 10, 0x1p-1074, 9007199254740993, "\u{10FFFF}\z
    continued", '\x41\65\0'
