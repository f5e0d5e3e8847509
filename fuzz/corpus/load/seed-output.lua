for i = 1, 100000 do print(i, string.rep("o", 64), nil, true, {}) end
