/* The instruction-limit corpus: endless loops, ways to swallow a kill. Shared with the service
 * test. */
#ifndef MJ_ADV_INSTRUCTIONS_CASES_H
#define MJ_ADV_INSTRUCTIONS_CASES_H

#include "adv_util.h"

#define SPIN "function() while true do end end"

/* xpcall's message handler runs with hooks off when the error came from the hook. */

static const adv_case adv_instructions_cases[] = {
    /* ---- plain endless loops ---- */
    {.name = "while_true",
     .src = "while true do end",
     .kind = MJ_KIND_INSTRUCTIONS,
     .needle = "instruction limit"},
    {.name = "repeat_until_false",
     .src = "local x = 0 repeat x = x + 1 until false",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "goto_loop", .src = "::top:: goto top", .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "numeric_for_maxinteger",
     .src = "for i = 1, math.maxinteger do end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "tail_call_recursion",
     .src = "local function f(n) return f(n + 1) end return f(1)",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "mutual_tail_calls",
     .src = "local g local function f() return g() end "
            "g = function() return f() end return f()",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "generic_for_endless_iterator",
     .src = "for _ in function() return 1 end do end",
     .kind = MJ_KIND_INSTRUCTIONS},

    /* ---- swallowing the kill ---- */
    {.name = "pcall_in_loop",
     .src = "while true do pcall(" SPIN ") end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "pcall_then_return",
     .src = "local ok = pcall(" SPIN ") return 'escaped', ok",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "nested_pcall",
     .src = "local spin = " SPIN " while true do pcall(pcall, pcall, pcall, spin) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "pcall_error_loop",
     .src = "while true do pcall(error, {}) for i = 1, 50 do end end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "xpcall_returning_handler_in_loop",
     .src = "while true do xpcall(" SPIN ", function(m) return m end) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "xpcall_looping_handler",
     .src = "xpcall(" SPIN ", " SPIN ")",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "xpcall_error_then_looping_handler",
     .src = "xpcall(error, " SPIN ")",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "xpcall_handler_calls_pcall",
     .src = "xpcall(" SPIN ", function(m) while true do pcall(" SPIN ") end end)",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "xpcall_handler_is_error",
     .src = "while true do xpcall(" SPIN ", error) end",
     .kind = MJ_KIND_INSTRUCTIONS},

    /* ---- coroutines ---- */
    {.name = "coroutine_resume_swallow",
     .src = "local co = coroutine.create(" SPIN ") while true do coroutine.resume(co) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "coroutine_resume_fresh_each_time",
     .src = "while true do coroutine.resume(coroutine.create(" SPIN ")) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "coroutine_wrap_in_pcall_loop",
     .src = "while true do pcall(coroutine.wrap(" SPIN ")) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "coroutine_pcall_inside_coroutine",
     .src = "local f = coroutine.wrap(function() while true do pcall(" SPIN ") end end) "
            "while true do pcall(f) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "coroutine_close_looping_close",
     .src = "local co = coroutine.create(function() local x <close> = setmetatable({}, "
            "{__close = " SPIN "}) coroutine.yield() end) coroutine.resume(co) "
            "while true do pcall(coroutine.close, co) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "coroutine_wrap_error_runs_looping_close",
     .src = "local f = coroutine.wrap(function() local x <close> = setmetatable({}, "
            "{__close = " SPIN "}) error('boom') end) pcall(f) return 'escaped'",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "coroutine_yield_across_pcall_loop",
     .src = "local f = coroutine.wrap(function() while true do pcall(coroutine.yield) end end) "
            "while true do f() end",
     .kind = MJ_KIND_INSTRUCTIONS},
    /* Each coroutine does less than a hook step; the total is 20x the budget. */
    {.name = "many_short_coroutines",
     .src = "local n = 0 for i = 1, 100000 do coroutine.wrap(function() for j = 1, 50 do "
            "n = n + 1 end end)() end return n",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "round_robin_yielding_coroutines",
     .src = "local cos = {} for i = 1, 300 do cos[i] = coroutine.wrap(function() while true do "
            "for j = 1, 30 do end coroutine.yield() end end) end "
            "for r = 1, 500 do for i = 1, 300 do cos[i]() end end return 'done'",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "nested_short_coroutines",
     .src = "local function nest(d) if d == 0 then for i = 1, 20 do end return end "
            "coroutine.wrap(function() nest(d - 1) end)() end "
            "for i = 1, 100000 do nest(4) end return 'done'",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "coroutine_close_each_time",
     .src = "for i = 1, 1e6 do local co = coroutine.create(function() local x <close> = "
            "setmetatable({}, {__close = function() for j = 1, 40 do end end}) "
            "coroutine.yield() end) coroutine.resume(co) coroutine.close(co) end return 'done'",
     .kind = MJ_KIND_INSTRUCTIONS},

    /* ---- load ---- */
    {.name = "load_reader_loops", .src = "return load(" SPIN ")", .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "load_reader_burns_budget",
     .src = "local n = 0 return load(function() n = n + 1 for i = 1, 1e5 do end "
            "if n < 1e5 then return ' ' end end)",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "load_reader_in_pcall_loop",
     .src = "while true do pcall(load, " SPIN ") end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "load_text_chunk_loops",
     .src = "load('while true do end')()",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "load_chunk_in_pcall_loop",
     .src = "local f = load('while true do end') while true do pcall(f) end",
     .kind = MJ_KIND_INSTRUCTIONS},

    /* ---- to-be-closed variables ---- */
    {.name = "tbc_close_loops_at_normal_end",
     .src = "local x <close> = setmetatable({}, {__close = " SPIN "})",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "tbc_close_loops_after_kill",
     .src = "local x <close> = setmetatable({}, {__close = " SPIN "}) while true do end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "tbc_close_calls_pcall",
     .src = "local x <close> = setmetatable({}, {__close = function() while true do pcall(" SPIN
            ") end end}) while true do end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "tbc_close_in_pcall_loop",
     .src = "while true do pcall(function() local x <close> = setmetatable({}, {__close = " SPIN
            "}) error('e') end) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "tbc_generic_for_closing_value",
     .src = "for _ in function() return nil end, nil, nil, setmetatable({}, {__close = " SPIN
            "}) do end",
     .kind = MJ_KIND_INSTRUCTIONS},

    /* ---- metamethods and library callbacks ---- */
    {.name = "index_metamethod_loops",
     .src = "return setmetatable({}, {__index = " SPIN "}).x",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "gsub_repl_function_loops",
     .src = "return ('abc'):gsub('.', " SPIN ")",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "sort_comparator_loops",
     .src = "table.sort({3, 2, 1}, " SPIN ")",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "tostring_metamethod_loops",
     .src = "return tostring(setmetatable({}, {__tostring = " SPIN "}))",
     .kind = MJ_KIND_INSTRUCTIONS},

    /* ---- work done inside C functions must be charged too ---- */
    {.name = "plain_find_loop",
     .src = "local s = string.rep('a', 1e5) while true do s:find('b', 1, true) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "backtracking_pattern",
     .src = "return string.rep('a', 3000):find('.-.-.-.-.-.-b')",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "table_move_loop",
     .src = "local t = {} while true do table.move(t, 1, 200000, 2) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "table_insert_front_loop",
     .src = "local t = {} for i = 1, 100000 do t[i] = i end "
            "while true do table.insert(t, 1, 0) table.remove(t, 1) end",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "string_rep_empty_huge",
     .src = "return #string.rep('', math.maxinteger)",
     .kind = MJ_KIND_NONE,
     .values = "0"},
};

/* The limits of every instructions case that names none. */
static inline mj_limits
adv_instructions_table_limits(void)
{
	return adv_limits(4u << 20, 1000000, 0);
}

#endif
