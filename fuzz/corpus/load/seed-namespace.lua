local out = {}
for k, v in pairs(ns) do out[#out + 1] = tostring(k) end
out[#out + 1] = #ns.list
out[#out + 1] = ns.list[3]
out[#out + 1] = pcall(function() ns.x = 1 end)
out[#out + 1] = pcall(function() ns.nested.deep.y = 1 end)
out[#out + 1] = ns.nested.deep
out[#out + 1] = ipairs(ns.list)
return out, ns.list, ns.nested
