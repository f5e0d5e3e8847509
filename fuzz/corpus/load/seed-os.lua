return os.time(), os.clock() >= 0, os.date("!%Y-%m-%d %H:%M:%S", 0), os.date("*t", 86400),
  pcall(os.date, "%Ez"), pcall(os.date, "!%c", 1 << 60), os.difftime(10, 5),
  pcall(os.time, {year = 1 << 40, month = 1, day = 1}), type(io), type(debug), type(require)
