local ok, e = pcall(function()
  local t = {}
  for i = 1, 1e7 do t[i] = {i} end
end)
return ok, e, collectgarbage("count")
