big = {}
local ok = pcall(function()
  for i = 1, 1e6 do big[i] = string.rep(string.char(i % 256), 64) .. i end
end)
return ok, #big
