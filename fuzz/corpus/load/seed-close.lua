local log = {}
do
  local a <close> = setmetatable({}, {__close = function(_, e) log[#log + 1] = "a:" .. tostring(e) end})
  local b <close> = setmetatable({}, {__close = function() error("in close") end})
  local c <close> = nil
end
