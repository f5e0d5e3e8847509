local t = {}
return xpcall(function() for i = 1, math.huge do t[i] = i end end, function(m) while true do end end)
