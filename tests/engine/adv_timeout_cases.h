/* The wall-clock corpus: loops in Lua, C, patterns and handlers. Shared with the service test. */
#ifndef MJ_ADV_TIMEOUT_CASES_H
#define MJ_ADV_TIMEOUT_CASES_H

#include "adv_util.h"

#define SPIN "function() while true do end end"
#define FAKE_LEN(n) "setmetatable({}, {__len = function() return " n " end})"

static const adv_case adv_timeout_cases[] = {
    /* ---- pure Lua: the watchdog's hook must land ---- */
    {.name = "while_true",
     .src = "while true do end",
     .kind = MJ_KIND_TIMEOUT,
     .needle = "timeout"},
    {.name = "goto_loop", .src = "::top:: goto top", .kind = MJ_KIND_TIMEOUT},
    {.name = "tail_call_recursion",
     .src = "local function f() return f() end return f()",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "pcall_in_loop", .src = "while true do pcall(" SPIN ") end", .kind = MJ_KIND_TIMEOUT},
    {.name = "pcall_error_loop",
     .src = "while true do pcall(error, 'x') for i = 1, 50 do end end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "os_clock_busy_wait",
     .src = "local t0 = os.clock() while os.clock() - t0 < 60 do end return 'escaped'",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "coroutine_resume_loop",
     .src = "local co = coroutine.create(" SPIN ") while true do coroutine.resume(co) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "coroutine_ping_pong",
     .src = "local f = coroutine.wrap(function() while true do coroutine.yield() end end) "
            "while true do f() end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "coroutine_wrap_nested_loop",
     .src = "coroutine.wrap(function() coroutine.wrap(function() while true do pcall(" SPIN
            ") end end)() end)()",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "coroutine_close_looping_close",
     .src = "local co = coroutine.create(function() local x <close> = setmetatable({}, "
            "{__close = " SPIN "}) coroutine.yield() end) coroutine.resume(co) "
            "while true do pcall(coroutine.close, co) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "tbc_close_loops",
     .src = "local x <close> = setmetatable({}, {__close = function() while true do pcall(" SPIN
            ") end end}) while true do end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "load_reader_loops",
     .src = "while true do pcall(load, " SPIN ") end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "xpcall_looping_handler",
     .src = "xpcall(" SPIN ", " SPIN ")",
     .kind = MJ_KIND_TIMEOUT},

    /* ---- patterns: backtracking must end at the deadline ---- */
    {.name = "backtracking_find",
     .src = "return string.rep('a', 5000):find('.-.-.-.-.-.-.-b')",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "backtracking_optional_items",
     .src = "local s = string.rep('a', 28) "
            "return s:match(string.rep('a?', 28) .. string.rep('a', 28) .. 'b')",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "backtracking_gmatch",
     .src = "for w in string.rep('a', 5000):gmatch('.-.-.-.-b') do end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "backtracking_gsub",
     .src = "return string.rep('a', 5000):gsub('.-.-.-.-b', '')",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "balance_quadratic",
     .src = "return string.rep('(', 200000):find('%b()')",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "literal_prefix_quadratic",
     .src = "local s = string.rep('a', 1e6) local p = string.rep('a', 1000) .. '.b' "
            "while true do s:find(p) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "plain_find_loop",
     .src = "local s = string.rep('a', 1e6) local p = string.rep('a', 5e5) .. 'b' "
            "while true do s:find(p, 1, true) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "gsub_repl_function_loops",
     .src = "return ('abc'):gsub('.', " SPIN ")",
     .kind = MJ_KIND_TIMEOUT},

    /* ---- table functions: fake lengths error out, real work ends at the deadline ---- */
    {.name = "insert_fake_len",
     .src = "table.insert(" FAKE_LEN("math.maxinteger") ", 'x')",
     .kind = MJ_KIND_RUNTIME},
    {.name = "insert_pos_fake_len",
     .src = "table.insert(" FAKE_LEN("1e15") ", 1, 'x')",
     .kind = MJ_KIND_RUNTIME},
    {.name = "remove_fake_len",
     .src = "table.remove(" FAKE_LEN("1e15") ", 1)",
     .kind = MJ_KIND_RUNTIME},
    {.name = "concat_fake_len",
     .src = "return table.concat(" FAKE_LEN("1e15") ")",
     .kind = MJ_KIND_RUNTIME},
    {.name = "unpack_fake_len",
     .src = "return table.unpack(" FAKE_LEN("1e15") ")",
     .kind = MJ_KIND_RUNTIME},
    {.name = "sort_fake_len", .src = "table.sort(" FAKE_LEN("1e15") ")", .kind = MJ_KIND_RUNTIME},
    {.name = "unpack_huge_range",
     .src = "return table.unpack({}, 1, 1e8)",
     .kind = MJ_KIND_RUNTIME},
    {.name = "unpack_full_integer_range",
     .src = "return table.unpack({}, math.mininteger, math.maxinteger)",
     .kind = MJ_KIND_RUNTIME},
    {.name = "move_huge_range",
     .src = "table.move({}, 1, math.maxinteger, 2)",
     .kind = MJ_KIND_RUNTIME},
    {.name = "move_negative_range",
     .src = "table.move({}, math.mininteger, -1, 1)",
     .kind = MJ_KIND_RUNTIME},
    {.name = "len_metamethod_loops",
     .src = "table.insert(setmetatable({}, {__len = " SPIN "}), 1)",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "concat_index_loops",
     .src = "return table.concat(setmetatable({}, {__len = function() return 10 end, "
            "__index = " SPIN "}))",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "move_loop",
     .src = "local t = {} while true do table.move(t, 1, 200000, 2) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "insert_front_loop",
     .src = "local t = {} for i = 1, 100000 do t[i] = i end "
            "while true do table.insert(t, 1, 0) table.remove(t, 1) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "concat_loop",
     .src = "local t = {} for i = 1, 30000 do t[i] = 'x' end while true do table.concat(t) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "unpack_loop",
     .src = "local t = {} for i = 1, 30000 do t[i] = i end "
            "while true do select('#', table.unpack(t)) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "sort_loop",
     .src = "local t = {} for i = 1, 100000 do t[i] = (i * 7919) % 100000 end "
            "while true do table.sort(t) table.sort(t, function(a, b) return a > b end) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "sort_comparator_loops",
     .src = "table.sort({3, 2, 1}, " SPIN ")",
     .kind = MJ_KIND_TIMEOUT},

    /* ---- other long C calls ---- */
    {.name = "string_upper_loop",
     .src = "local s = string.rep('x', 3e5) while true do s:upper() end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "string_rep_loop",
     .src = "while true do string.rep('x', 1e6) end",
     .kind = MJ_KIND_TIMEOUT},
    {.name = "string_rep_empty_huge",
     .src = "return #string.rep('', math.maxinteger)",
     .kind = MJ_KIND_NONE,
     .values = "0"},
    {.name = "string_rep_empty_separator",
     .src = "return #string.rep('', 1e15, '')",
     .kind = MJ_KIND_NONE,
     .values = "0"},
    {.name = "call_metamethod_self_chain",
     .src = "local mt = {} local t = setmetatable({}, mt) mt.__call = t return t()",
     .kind = MJ_KIND_TIMEOUT,
     .alt = MJ_KIND_MEMORY},
    /* ---- found in review: a __len that answers differently the second time ---- */
    {.name = "two_faced_len_insert",
     .src = "local c = 0 local t = setmetatable({}, {__len = function() c = c + 1 "
            "if c == 1 then return 1 end return 1 << 40 end}) table.insert(t, 1, 'x') "
            "return rawget(t, 1)",
     .kind = MJ_KIND_NONE,
     .values = "\"x\""},
    {.name = "two_faced_len_remove",
     .src = "local c = 0 local t = setmetatable({}, {__len = function() c = c + 1 "
            "if c == 1 then return 1 end return 1 << 40 end}) table.remove(t, 1) return c",
     .kind = MJ_KIND_NONE,
     .values = "1"},
    {.name = "two_faced_len_sort",
     .src = "local c = 0 local t = setmetatable({}, {__len = function() c = c + 1 "
            "if c == 1 then return 2 end return (1 << 31) - 2 end}) table.sort(t, tonumber)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "__len"},
    {.name = "negative_len_insert",
     .src = "local t = setmetatable({}, {__len = function() return -5 end}) "
            "table.insert(t, math.mininteger, 1)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "negative"},
    {.name = "huge_set_scan",
     .src = "return (('b'):rep(1e6)):find('[' .. ('a'):rep(1e6) .. ']')",
     .kind = MJ_KIND_TIMEOUT,
     .alt = MJ_KIND_MEMORY},
    {.name = "huge_frontier_set",
     .src = "for w in (('b '):rep(5e5)):gmatch('%f[' .. ('a'):rep(1e6) .. ']') do end",
     .kind = MJ_KIND_TIMEOUT,
     .alt = MJ_KIND_MEMORY},
    {.name = "gsub_empty_capture_repl",
     .src = "return (('b'):rep(1e6)):gsub('(a*)', ('%1'):rep(1e6))",
     .kind = MJ_KIND_TIMEOUT,
     .alt = MJ_KIND_MEMORY},
};

/* The limits of every timeout case that names none. */
static inline mj_limits
adv_timeout_table_limits(void)
{
	return adv_limits(4u << 20, 0, 200);
}

#endif
