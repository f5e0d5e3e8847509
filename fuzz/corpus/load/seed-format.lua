return string.format("%q %q %q %q", "a\0\n\"", 1/0, math.mininteger, 0.1),
  string.format("%5.2f|%-10s|%x|%a|%g", math.pi, "left", 255, 1.0, 1e300),
  pcall(string.format, "%99999d", 1), pcall(string.format, "%d", 1.5),
  string.format("%s", setmetatable({}, {__tostring = function() return "obj" end})),
  tostring(1e15), tostring(2^63), math.tointeger(3.0), 7 // 0.0, -7 % math.huge,
  pcall(function() return 1 // 0 end), "10" + 5, "0x10" * 1, math.ult(-1, 1)
