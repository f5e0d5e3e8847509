local s = utf8.char(72, 228, 8364, 128512, 0x7fffffff)
local cps = {}
for _, c in utf8.codes(s, true) do cps[#cps + 1] = c end
return s, utf8.len(s), utf8.len("\xff\xfe"), cps, utf8.offset(s, -1), utf8.codepoint(s, 1, -1),
  pcall(utf8.codes, "\xff"), utf8.charpattern
