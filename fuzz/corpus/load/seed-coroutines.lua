local function gen(n)
  return coroutine.wrap(function()
    for i = 1, n do coroutine.yield(i) end
  end)
end
local sum = 0
for v in gen(100) do sum = sum + v end
local co = coroutine.create(function(a, b)
  local c = coroutine.yield(a + b)
  local ok, e = pcall(coroutine.yield, c * 2)
  error({code = e})
end)
local r = {coroutine.resume(co, 1, 2)}
r[#r + 1] = select(2, coroutine.resume(co, 10))
r[#r + 1] = select(2, coroutine.resume(co, "x"))
local nest = coroutine.wrap(function()
  return coroutine.wrap(function()
    return coroutine.wrap(function() return coroutine.isyieldable(), coroutine.running() end)()
  end)()
end)
local cl = coroutine.create(function() local x <close> = setmetatable({}, {__close = function() end}) coroutine.yield() end)
coroutine.resume(cl)
local closed = {coroutine.close(cl)}
local loop = coroutine.wrap(function() while true do coroutine.yield() end end)
for i = 1, 1000 do loop() end
return sum, r, nest(), closed, coroutine.status(co)
