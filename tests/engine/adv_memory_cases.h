/* The memory corpus: bombs of every shape, the emergency-GC path. Shared with the service test. */
#ifndef MJ_ADV_MEMORY_CASES_H
#define MJ_ADV_MEMORY_CASES_H

#include "adv_util.h"

static const mj_limits adv_memory_big_heap = {
    .memory = 32u << 20,
    .instructions = 0,
    .timeout_ms = 8000,
    .output = 1u << 20,
    .source = 1u << 20,
    .result_bytes = 1u << 20,
    .result_depth = 32,
    .result_items = 100000,
};

/* Growing a heap of many small live objects up to the cap takes a series of full collections
 * (garbage never counts), which is slow under sanitizers: these cases get a longer clock so
 * they can only end by the memory limit. */
static const mj_limits adv_memory_slow_cap = {.memory = 4u << 20,
                                              .instructions = 0,
                                              .timeout_ms = 5000,
                                              .output = 1u << 20,
                                              .source = 1u << 20,
                                              .result_bytes = 1u << 20,
                                              .result_depth = 32,
                                              .result_items = 100000};

static const adv_case adv_memory_cases[] = {
    /* ---- strings ---- */
    {.name = "string_rep_huge",
     .src = "return #string.rep('x', 1e9)",
     .kind = MJ_KIND_MEMORY,
     .needle = "memory limit"},
    {.name = "string_rep_just_over_limit",
     .src = "return #string.rep('x', 4 * 1024 * 1024)",
     .kind = MJ_KIND_MEMORY},
    {.name = "string_rep_with_separator",
     .src = "return #string.rep('abc', 1e7, string.rep('-', 100))",
     .kind = MJ_KIND_MEMORY},
    {.name = "string_rep_accumulate",
     .src = "local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 1e5) end",
     .kind = MJ_KIND_MEMORY},
    {.name = "concat_doubling",
     .src = "local s = 'x' while true do s = s .. s end",
     .kind = MJ_KIND_MEMORY},
    {.name = "concat_unique_parts",
     .src = "local s = string.rep('x', 1000) local parts = {} "
            "while true do parts[#parts + 1] = s .. #parts end",
     .kind = MJ_KIND_MEMORY},
    {.name = "table_concat_huge",
     .src = "local t = {} for i = 1, 1000 do t[i] = string.rep('y', 1000) end "
            "local all = {} while true do all[#all + 1] = table.concat(t) end",
     .kind = MJ_KIND_MEMORY},
    {.name = "gsub_huge_result",
     .src = "return #(string.rep('x', 1e5):gsub('x', string.rep('y', 100)))",
     .kind = MJ_KIND_MEMORY},
    {.name = "gsub_function_huge_result",
     .src = "local big = string.rep('y', 1e4) "
            "return #(string.rep('x', 1e4):gsub('x', function() return big end))",
     .kind = MJ_KIND_MEMORY},
    {.name = "format_huge",
     .src = "local s = string.rep('x', 1e6) "
            "return #string.format('%s%s%s%s%s', s, s, s, s, s)",
     .kind = MJ_KIND_MEMORY},
    {.name = "string_pack_huge",
     .src = "local s = string.rep('x', 1e6) "
            "return #string.pack('s4s4s4s4s4', s, s, s, s, s)",
     .kind = MJ_KIND_MEMORY},

    /* ---- tables ---- */
    {.name = "array_growth",
     .src = "local t = {} local i = 0 while true do i = i + 1 t[i] = i end",
     .kind = MJ_KIND_MEMORY},
    {.name = "hash_growth",
     .src = "local t = {} local i = 0 while true do i = i + 1 t['k' .. i] = true end",
     .kind = MJ_KIND_MEMORY},
    {.name = "float_key_growth",
     .src = "local t = {} local i = 0 while true do i = i + 1 t[i + 0.5] = i end",
     .kind = MJ_KIND_MEMORY},
    {.name = "deep_nesting",
     .src = "local t = {} while true do t = {t} end",
     .kind = MJ_KIND_MEMORY},
    {.name = "constructor_preallocation",
     .src = "return #load('return {' .. string.rep('1,', 300000) .. '}')()",
     .kind = MJ_KIND_MEMORY},
    {.name = "table_move_preallocation",
     .src = "local src = setmetatable({}, {__index = function(_, k) return k end}) "
            "local dst, off = {}, 0 "
            "while true do table.move(src, 1, 200000, off + 1, dst) off = off + 200000 end",
     .kind = MJ_KIND_MEMORY},
    {.name = "unpack_onto_stack",
     .src = "local function f(...) return select('#', ...) end "
            "return f(table.unpack({}, 1, 250000))",
     .kind = MJ_KIND_MEMORY},
    {.name = "closures_flood",
     .src = "local t = {} local i = 0 "
            "while true do i = i + 1 local j = i t[i] = function() return j end end",
     .kind = MJ_KIND_MEMORY},
    {.name = "interned_strings_flood",
     .src = "local t = {} local i = 0 while true do i = i + 1 t[i] = 'abcdefgh' .. i end",
     .kind = MJ_KIND_MEMORY},

    /* ---- coroutines ---- */
    {.name = "coroutine_flood",
     .src = "local t = {} while true do t[#t + 1] = coroutine.create(function() end) end",
     .kind = MJ_KIND_MEMORY},
    {.name = "suspended_coroutine_flood",
     .src = "local t = {} while true do local co = coroutine.wrap(function() "
            "local a = {1, 2, 3} coroutine.yield() end) co() t[#t + 1] = co end",
     .kind = MJ_KIND_MEMORY},
    {.name = "memory_inside_coroutine",
     .src = "coroutine.wrap(function() local t = {} while true do t[#t + 1] = {} end end)()",
     .kind = MJ_KIND_MEMORY},

    /* ---- swallowing the kill ---- */
    {.name = "pcall_swallows_alloc_failure",
     .src = "while true do pcall(string.rep, 'x', 1e9) end",
     .kind = MJ_KIND_MEMORY},
    {.name = "pcall_then_return",
     .src = "local ok = pcall(function() local t = {} while true do t[#t + 1] = {} end end) "
            "return 'escaped', ok",
     .kind = MJ_KIND_MEMORY},
    {.name = "memory_in_close_handler",
     .src = "local x <close> = setmetatable({}, {__close = function() local t = {} "
            "while true do t[#t + 1] = {} end end})",
     .kind = MJ_KIND_MEMORY},
    {.name = "memory_in_xpcall_handler",
     .src = "xpcall(error, function() local t = {} while true do t[#t + 1] = {} end end)",
     .kind = MJ_KIND_MEMORY},
    {.name = "memory_in_load_reader",
     .src = "local keep = {} return load(function() keep[#keep + 1] = string.rep('-', 1e5) "
            "return '-' end)",
     .kind = MJ_KIND_MEMORY},

    /* ---- at the cap: table assignments across the limit (Lua 5.4.4 emergency-GC bug) ---- */
    {.name = "fill_then_fresh_keys",
     .src = "local fill = {} while collectgarbage('count') < 3900 do "
            "fill[#fill + 1] = string.rep('f', 1000) .. #fill end "
            "local t, i = {}, 0 while true do i = i + 1 t['k' .. i] = i end",
     .kind = MJ_KIND_MEMORY},
    {.name = "fill_then_big_resize",
     .src = "local fill = {} while collectgarbage('count') < 3000 do "
            "fill[#fill + 1] = string.rep('f', 1000) .. #fill end "
            "local t, i = {}, 0 while true do i = i + 1 t[i * 3 + 0.25] = {} end",
     .kind = MJ_KIND_MEMORY},
    {.name = "garbage_then_fresh_keys",
     .src = "local t, i = {}, 0 while true do i = i + 1 "
            "local junk = string.rep('j', 300) .. i t[junk:sub(1, 8) .. i] = {i} end",
     .kind = MJ_KIND_MEMORY,
     .limits = &adv_memory_slow_cap,
     .max_ms = 6000},
    {.name = "fresh_table_keys_at_cap",
     .src = "local fill = {} while collectgarbage('count') < 3950 do fill[#fill + 1] = {} end "
            "local t = {} while true do t[{}] = {} end",
     .kind = MJ_KIND_MEMORY,
     .limits = &adv_memory_slow_cap,
     .max_ms = 6000},

    /* ---- a bigger heap: many collections along the way ---- */
    {.name = "big_heap_table_growth",
     .src = "local t = {} local i = 0 while true do i = i + 1 t[i] = {i} end",
     .kind = MJ_KIND_MEMORY,
     .limits = &adv_memory_big_heap,
     .max_ms = 8000},
};

/* A script whose live data is over half the limit but which never holds more than the limit
 * at once must not be killed: the limit is about the heap a script keeps, and garbage is the
 * engine's to collect. */
static const adv_case adv_memory_legit_cases[] = {
    {.name = "live_half_limit_with_churn",
     .src = "local keep = {} for i = 1, 2200 do keep[i] = string.rep('k', 1000) .. i end "
            "for i = 1, 2000 do local tmp = string.rep('t', 1000) .. i end return #keep",
     .kind = MJ_KIND_NONE,
     .values = "2200"},
    {.name = "garbage_made_inside_coroutines",
     .src = "local keep = {} for i = 1, 2200 do keep[i] = string.rep('k', 1000) .. i end "
            "for i = 1, 60 do "
            "local s = coroutine.wrap(function() return string.rep('y', 200000) end)() end "
            "return #keep",
     .kind = MJ_KIND_NONE,
     .values = "2200"},
    {.name = "after_kill_engine_has_room",
     .src = "local t = {} for i = 1, 3000 do t[i] = string.rep('z', 1000) .. i end return #t",
     .kind = MJ_KIND_NONE,
     .values = "3000"},
};

/* The limits of every memory case that names none. */
static inline mj_limits
adv_memory_table_limits(void)
{
	return adv_limits(4u << 20, 0, 1500);
}

#endif
