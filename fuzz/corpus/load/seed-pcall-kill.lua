local ok, e = pcall(function() while true do end end)
print("after", ok, e)
return ok, e
