local n = 0
::top::
n = n + 1
if n < 10 then goto top end
for i = 1, 3 do
  for j = 1, 3 do
    if j == 2 then goto continue end
    n = n + i * j
    ::continue::
  end
end
local x <const> = 10
return n, x, math.maxinteger + 1, math.mininteger // -1, math.fmod(-6, 4), 3 % -2
