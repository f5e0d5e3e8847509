/* The interpreter corpus: stack exhaustion, 5.4.4 bugs, edges. Shared with the service test. */
#ifndef MJ_ADV_INTERP_CASES_H
#define MJ_ADV_INTERP_CASES_H

#include "adv_util.h"

/* Enough heap for the Lua stack to reach LUAI_MAXSTACK before the memory limit. */
static const mj_limits adv_interp_big_heap = {
    .memory = 64u << 20,
    .instructions = 50000000,
    .timeout_ms = 2000,
    .output = 1u << 20,
    .source = 1u << 20,
    .result_bytes = 1u << 20,
    .result_depth = 32,
    .result_items = 100000,
};

/* A function with a large frame, so the Lua stack fills with few CallInfos. */
#define BIG_FRAME                                                                                  \
	"local function f(a) local b, c, d, e, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v, "   \
	"w, "                                                                                      \
	"x, y, z = a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a "        \
	"return 1 + f(a) end "

/* The same heap with time for three stack overflows even on a loaded machine. */
static const mj_limits adv_interp_big_heap_slow = {
    .memory = 64u << 20,
    .instructions = 50000000,
    .timeout_ms = 8000,
    .output = 1u << 20,
    .source = 1u << 20,
    .result_bytes = 1u << 20,
    .result_depth = 32,
    .result_items = 100000,
};

#define P10 "(((((((((("
#define Q10 "))))))))))"
#define P100 P10 P10 P10 P10 P10 P10 P10 P10 P10 P10
#define Q100 Q10 Q10 Q10 Q10 Q10 Q10 Q10 Q10 Q10 Q10

/* coroutine.close of a coroutine whose pending __close closes the next one, 10000 deep. */
#define CLOSE_CHAIN                                                                                \
	"local N = 10000 local cos = {} "                                                          \
	"for i = 1, N do "                                                                         \
	"  cos[i] = coroutine.create(function() "                                                  \
	"    local x <close> = setmetatable({}, {__close = function() "                            \
	"      local nxt = cos[i + 1] "                                                            \
	"      if nxt then local ok, err = coroutine.close(nxt) if not ok then error(err, 0) end " \
	"end "                                                                                     \
	"    end}) "                                                                               \
	"    coroutine.yield() "                                                                   \
	"  end) "                                                                                  \
	"  coroutine.resume(cos[i]) "                                                              \
	"end "                                                                                     \
	"local ok, err = coroutine.close(cos[1]) if not ok then error(err, 0) end "                \
	"return 'closed all'"

/* The same chain, but every __close first burns most of its C-call budget in nested gsub
 * callbacks: the closed thread's C-call count restarts from its own stale value, so each link
 * may add ~180 real C frames. */
#define CLOSE_CHAIN_DEEP_C                                                                         \
	"local N = 40 local cos = {} "                                                             \
	"local function deep(n, k) "                                                               \
	"  if n == 0 then "                                                                        \
	"    local nxt = cos[k + 1] "                                                              \
	"    if nxt then local ok, err = coroutine.close(nxt) if not ok then error(err, 0) end "   \
	"end "                                                                                     \
	"    return '' "                                                                           \
	"  end "                                                                                   \
	"  return (('x'):gsub('x', function() return deep(n - 1, k) end)) "                        \
	"end "                                                                                     \
	"for i = 1, N do "                                                                         \
	"  cos[i] = coroutine.create(function() "                                                  \
	"    local x <close> = setmetatable({}, {__close = function() deep(180, i) end}) "         \
	"    coroutine.yield() "                                                                   \
	"  end) "                                                                                  \
	"  coroutine.resume(cos[i]) "                                                              \
	"end "                                                                                     \
	"local ok, err = coroutine.close(cos[1]) if not ok then error(err, 0) end "                \
	"return 'closed all'"

/* coroutine.wrap functions that fail, each closing its pending variable by calling the next. */
#define WRAP_CLOSE_CHAIN                                                                           \
	"local fs = {} "                                                                           \
	"for i = 1, 10000 do "                                                                     \
	"  fs[i] = coroutine.wrap(function() "                                                     \
	"    local x <close> = setmetatable({}, {__close = function() "                            \
	"      if fs[i + 1] then fs[i + 1]() end end}) "                                           \
	"    error('boom ' .. i) "                                                                 \
	"  end) "                                                                                  \
	"end "                                                                                     \
	"fs[1]()"

static const adv_case adv_interp_cases[] = {
    /* ---- the Lua stack ---- */
    {.name = "lua_stack_overflow",
     .src = BIG_FRAME "return f(1)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow",
     .limits = &adv_interp_big_heap},
    {.name = "lua_stack_overflow_varargs",
     .src = "local function f(...) return 1 + f(1, ...) end return f()",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow",
     .limits = &adv_interp_big_heap},
    {.name = "lua_stack_overflow_recovered_in_pcall",
     .src = BIG_FRAME "for i = 1, 3 do local ok, e = pcall(f, 1) "
                      "assert(not ok and e:find('stack overflow')) end return 'recovered'",
     .kind = MJ_KIND_NONE,
     .values = "\"recovered\"",
     .limits = &adv_interp_big_heap_slow,
     .max_ms = 8000},
    {.name = "lua_stack_overflow_small_heap",
     .src = "local function f(a) return 1 + f(a) end return f(1)",
     .kind = MJ_KIND_MEMORY,
     .alt = MJ_KIND_RUNTIME},

    /* ---- the C stack ---- */
    {.name = "cstack_nested_pcall",
     .src = "local function f() local ok, e = pcall(f) if not ok then error(e, 0) end end f()",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_gsub_recursive_repl",
     .src = "local function f(s) return (s:gsub('.', f)) end return f('ab')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_index_function",
     .src = "local t = setmetatable({}, {}) "
            "getmetatable(t).__index = function(t, k) return t[k] end return t.x",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_newindex_function",
     .src = "local t = setmetatable({}, {}) "
            "getmetatable(t).__newindex = function(t, k, v) t[k] = v end t.x = 1",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "index_table_chain_loop",
     .src = "local a, b = {}, {} setmetatable(a, {__index = b}) setmetatable(b, {__index = a}) "
            "return a.x",
     .kind = MJ_KIND_RUNTIME,
     .needle = "chain too long"},
    {.name = "newindex_table_chain_loop",
     .src = "local a, b = {}, {} setmetatable(a, {__newindex = b}) "
            "setmetatable(b, {__newindex = a}) a.x = 1",
     .kind = MJ_KIND_RUNTIME,
     .needle = "chain too long"},
    {.name = "cstack_tostring_recursion",
     .src = "local t = setmetatable({}, {__tostring = function(s) return tostring(s) end}) "
            "return tostring(t)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_print_tostring_recursion",
     .src = "local t = setmetatable({}, {__tostring = function(s) print(s) return 'x' end}) "
            "print(t)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_format_tostring_recursion",
     .src = "local t = setmetatable({}, {__tostring = function(s) "
            "return string.format('%s', s) end}) return string.format('%s', t)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_concat_recursion",
     .src = "local mt = {} mt.__concat = function(a, b) return a .. b end "
            "return setmetatable({}, mt) .. 'x'",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_lt_recursion",
     .src = "local mt = {} mt.__lt = function(a, b) return a < b end "
            "local a, b = setmetatable({}, mt), setmetatable({}, mt) return a < b",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_sort_comparator_recursion",
     .src = "local function cmp(a, b) table.sort({3, 2, 1}, cmp) return a < b end "
            "table.sort({3, 2, 1}, cmp)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_load_reader_recursion",
     .src = "local function r() local f, e = load(r) if not f then error(e, 0) end end "
            "local f, e = load(r) error(e, 0)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "overflow"},
    {.name = "coroutine_wrap_nest_300",
     .src = "local function nest(n) if n == 0 then return 0 end "
            "return coroutine.wrap(function() return nest(n - 1) + 1 end)() end "
            "return nest(300)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "coroutine_resume_nest_300",
     .src = "local function nest(n) if n == 0 then return 0 end "
            "local co = coroutine.create(function() return nest(n - 1) + 1 end) "
            "local ok, v = coroutine.resume(co) if not ok then error(v, 0) end return v end "
            "return nest(300)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "stack overflow"},
    {.name = "cstack_xpcall_loop_loop",
     .src = "local function loop() assert(pcall(loop)) end local ok, m = xpcall(loop, loop) "
            "return ok",
     .kind = MJ_KIND_NONE,
     .alt = MJ_KIND_RUNTIME,
     .max_ms = 6000},
    {.name = "error_in_error_handler",
     .src = "local ok = xpcall(error, function(m) error(m) end) return ok",
     .kind = MJ_KIND_NONE,
     .values = "false"},

    /* ---- the parser ---- */
    {.name = "parser_deep_parentheses",
     .src = "return " P100 P100 P100 "1" Q100 Q100 Q100,
     .kind = MJ_KIND_SYNTAX},
    {.name = "parser_deep_parentheses_via_load",
     .src = "local f, e = load('return ' .. string.rep('(', 1e5) .. '1' .. "
            "string.rep(')', 1e5)) return f, type(e)",
     .kind = MJ_KIND_NONE,
     .values = "nil, \"string\""},
    {.name = "parser_deep_functions_via_load",
     .src = "local f, e = load(string.rep('return function() ', 1000) .. "
            "string.rep(' end', 1000)) return f, type(e)",
     .kind = MJ_KIND_NONE,
     .values = "nil, \"string\""},
    {.name = "parser_deep_tables_via_load",
     .src = "local f, e = load('return ' .. string.rep('{', 1e5) .. string.rep('}', 1e5)) "
            "return f, type(e)",
     .kind = MJ_KIND_NONE,
     .values = "nil, \"string\""},
    {.name = "goto_into_tbc_scope",
     .src = "do goto l local x <close> = nil ::l:: print(x) end",
     .kind = MJ_KIND_SYNTAX},
    {.name = "assign_to_const", .src = "local x <const> = 1 x = 2", .kind = MJ_KIND_SYNTAX},

    /* ---- to-be-closed variables and coroutine.close (Lua 5.4.4 bug area) ---- */
    {.name = "close_chain_10000",
     .src = CLOSE_CHAIN,
     .kind = MJ_KIND_RUNTIME,
     .limits = &adv_interp_big_heap,
     .max_ms = 4000},
    {.name = "close_chain_with_deep_c_frames",
     .src = CLOSE_CHAIN_DEEP_C,
     .kind = MJ_KIND_RUNTIME,
     .needle = "overflow",
     .limits = &adv_interp_big_heap,
     .max_ms = 4000},
    {.name = "wrap_close_chain_10000",
     .src = WRAP_CLOSE_CHAIN,
     .kind = MJ_KIND_RUNTIME,
     .limits = &adv_interp_big_heap,
     .max_ms = 4000},
    {.name = "close_resume_alternation",
     .src = "local function link(n) if n == 0 then return end "
            "local inner = coroutine.create(function() local x <close> = setmetatable({}, "
            "{__close = function() coroutine.wrap(function() link(n - 1) end)() end}) "
            "coroutine.yield() end) coroutine.resume(inner) "
            "local ok, e = coroutine.close(inner) if not ok then error(e, 0) end end "
            "link(5000)",
     .kind = MJ_KIND_RUNTIME,
     .limits = &adv_interp_big_heap,
     .max_ms = 4000},
    {.name = "close_errors_replace_each_other",
     .src = "local a <close> = setmetatable({}, {__close = function() error('from a', 0) end}) "
            "local b <close> = setmetatable({}, {__close = function() error('from b', 0) end}) "
            "error('body', 0)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "from a"},
    {.name = "tbc_non_closable",
     .src = "local x <close> = {}",
     .kind = MJ_KIND_RUNTIME,
     .needle = "non-closable"},
    {.name = "close_coroutine_with_erroring_close",
     .src = "local co = coroutine.create(function() local x <close> = setmetatable({}, "
            "{__close = function() error('in close') end}) error('body') end) "
            "coroutine.resume(co) local ok = coroutine.close(co) "
            "return ok, coroutine.status(co)",
     .kind = MJ_KIND_NONE,
     .values = "false, \"dead\""},
    {.name = "yield_inside_close_during_close",
     .src = "local co = coroutine.create(function() local x <close> = setmetatable({}, "
            "{__close = function() coroutine.yield('from close') end}) coroutine.yield() end) "
            "coroutine.resume(co) return (coroutine.close(co))",
     .kind = MJ_KIND_NONE,
     .values = "false"},
    {.name = "yield_inside_close_at_return",
     .src = "local f = coroutine.wrap(function() local x <close> = setmetatable({}, "
            "{__close = function() coroutine.yield('c') end}) return 'r' end) return f(), f()",
     .kind = MJ_KIND_NONE,
     .values = "\"c\", \"r\""},
    {.name = "close_self_from_close",
     .src = "local co co = coroutine.create(function() local x <close> = setmetatable({}, "
            "{__close = function() assert(not pcall(coroutine.close, co)) end}) "
            "coroutine.yield() end) coroutine.resume(co) return coroutine.close(co)",
     .kind = MJ_KIND_NONE,
     .values = "true"},
    {.name = "resume_closing_coroutine_from_close",
     .src = "local co co = coroutine.create(function() local x <close> = setmetatable({}, "
            "{__close = function() local ok = coroutine.resume(co) assert(not ok) end}) "
            "coroutine.yield() end) coroutine.resume(co) return coroutine.close(co)",
     .kind = MJ_KIND_NONE,
     .values = "true"},
    {.name = "wrap_resumes_itself",
     .src = "local f f = coroutine.wrap(function() return f() end) return f()",
     .kind = MJ_KIND_RUNTIME,
     .needle = "non-suspended"},

    /* ---- arithmetic and library edges that crash careless C ---- */
    {.name = "integer_division_edges",
     .src = "return math.mininteger // -1, math.mininteger % -1, "
            "pcall(function() return 1 // 0 end)",
     .kind = MJ_KIND_NONE,
     .values = "-9223372036854775808, 0, false, \"adv:1: attempt to divide by zero\""},
    {.name = "for_loop_at_integer_limits",
     .src = "local n = 0 for i = math.maxinteger - 2, math.maxinteger do n = n + 1 end "
            "for i = math.mininteger, math.mininteger + 2 do n = n + 1 end "
            "for i = math.mininteger + 2, math.mininteger, -1 do n = n + 1 end return n",
     .kind = MJ_KIND_NONE,
     .values = "9"},
    {.name = "for_loop_zero_step",
     .src = "for i = 1, 10, 0 do end",
     .kind = MJ_KIND_RUNTIME,
     .needle = "step is zero"},
    {.name = "string_sub_extreme_indices",
     .src = "return ('abc'):sub(math.mininteger, math.maxinteger), "
            "('abc'):sub(math.maxinteger), ('abc'):byte(math.mininteger, math.maxinteger)",
     .kind = MJ_KIND_NONE,
     .values = "\"abc\", \"\", 97, 98, 99"},
    {.name = "format_widest_float",
     .src = "return #string.format('%99.99f', -1e308)",
     .kind = MJ_KIND_NONE,
     .values = "410"},
    {.name = "format_no_integer_representation",
     .src = "return string.format('%d', 2^63)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "integer representation"},
    {.name = "unpack_unfinished_string",
     .src = "return string.unpack('z', 'abc')",
     .kind = MJ_KIND_RUNTIME},
    {.name = "pack_bad_alignment",
     .src = "return string.pack('!17 i3', 1)",
     .kind = MJ_KIND_RUNTIME},
    {.name = "concat_at_maxinteger",
     .src = "return table.concat({}, '', math.maxinteger, math.maxinteger)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "invalid value"},
    {.name = "unpack_at_maxinteger",
     .src = "return select('#', table.unpack({}, math.maxinteger - 1, math.maxinteger))",
     .kind = MJ_KIND_NONE,
     .values = "2"},
    {.name = "insert_position_out_of_bounds",
     .src = "table.insert({}, math.maxinteger, 1)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "out of bounds"},
    {.name = "utf8_extreme_codepoints",
     .src = "return #utf8.char(0x7FFFFFFF), pcall(utf8.codepoint, '\\xff')",
     .kind = MJ_KIND_NONE,
     .values = "6, false, \"invalid UTF-8 code\""},
    {.name = "tostring_of_huge_integer_keys",
     .src = "local t = {[math.mininteger] = 1, [math.maxinteger] = 2, [-0.0] = 3} "
            "return t[math.mininteger] + t[math.maxinteger] + t[0]",
     .kind = MJ_KIND_NONE,
     .values = "6"},
};

/* The limits of every interp case that names none. */
static inline mj_limits
adv_interp_table_limits(void)
{
	return adv_limits(4u << 20, 10000000, 3000);
}

#endif
