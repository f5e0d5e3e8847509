local function count(...) return select("#", ...) end
local s = string.rep("x", 100000)
return count(table.unpack({}, 1, 10000)), pcall(string.byte, s, 1, -1),
  pcall(function(...) return select(-1, ...) end), count(string.byte("abc", 1, -1))
