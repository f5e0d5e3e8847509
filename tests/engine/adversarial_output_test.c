/* Hostile scripts against output and result limits, and error objects that fight back. */
#include "adv_util.h"

#define SPIN "function() while true do end end"
#define LOOPING_MT                                                                                 \
	"{__index = " SPIN ", __newindex = " SPIN ", __len = " SPIN ", __pairs = " SPIN            \
	", __tostring = " SPIN ", __eq = " SPIN ", __call = " SPIN ", __name = 'evil'}"

static const adv_case cases[] = {
    /* ---- print floods ---- */
    {.name = "print_flood",
     .src = "while true do print('xxxxxxxxxxxxxxxxxxxxxxx') end",
     .kind = MJ_KIND_OUTPUT,
     .needle = "output limit",
     .flags = ADV_OUTPUT_FULL},
    {.name = "print_one_huge_line",
     .src = "print(string.rep('x', 1e5))",
     .kind = MJ_KIND_OUTPUT,
     .flags = ADV_OUTPUT_FULL},
    {.name = "print_many_arguments",
     .src = "print(table.unpack((function() local t = {} for i = 1, 5000 do t[i] = i end "
            "return t end)()))",
     .kind = MJ_KIND_OUTPUT,
     .flags = ADV_OUTPUT_FULL},
    {.name = "print_flood_in_pcall",
     .src = "while true do pcall(print, string.rep('y', 100)) end",
     .kind = MJ_KIND_OUTPUT,
     .flags = ADV_OUTPUT_FULL},
    {.name = "print_flood_then_return",
     .src = "pcall(function() while true do print('z') end end) return 'escaped'",
     .kind = MJ_KIND_OUTPUT,
     .flags = ADV_OUTPUT_FULL},
    {.name = "print_flood_in_coroutine",
     .src = "coroutine.wrap(function() while true do print('c') end end)()",
     .kind = MJ_KIND_OUTPUT,
     .flags = ADV_OUTPUT_FULL},
    {.name = "print_flood_in_close_handler",
     .src = "local x <close> = setmetatable({}, {__close = function() "
            "while true do print('c') end end})",
     .kind = MJ_KIND_OUTPUT,
     .flags = ADV_OUTPUT_FULL},
    {.name = "print_flood_in_xpcall_handler",
     .src = "xpcall(error, function() while true do print('h') end end)",
     .kind = MJ_KIND_OUTPUT,
     .flags = ADV_OUTPUT_FULL},
    {.name = "print_tostring_loops",
     .src = "print(setmetatable({}, {__tostring = " SPIN "}))",
     .kind = MJ_KIND_INSTRUCTIONS},
    {.name = "print_nul_bytes",
     .src = "print('a\\0b') return 1",
     .kind = MJ_KIND_NONE,
     .values = "1"},

    /* ---- error objects that fight back ---- */
    {.name = "error_table_tostring_loops",
     .src = "error(setmetatable({}, {__tostring = " SPIN "}))",
     .kind = MJ_KIND_RUNTIME,
     .needle = "(error object is a table value)"},
    {.name = "error_table_every_metamethod_loops",
     .src = "error(setmetatable({}, " LOOPING_MT "))",
     .kind = MJ_KIND_RUNTIME,
     .needle = "(error object is a table value)"},
    {.name = "error_table_from_coroutine_wrap",
     .src = "coroutine.wrap(function() error(setmetatable({}, " LOOPING_MT ")) end)()",
     .kind = MJ_KIND_RUNTIME,
     .needle = "(error object is a table value)"},
    {.name = "error_table_rethrown_by_close",
     .src = "local x <close> = setmetatable({}, {__close = function(_, e) error(e) end}) "
            "error(setmetatable({}, " LOOPING_MT "))",
     .kind = MJ_KIND_RUNTIME,
     .needle = "(error object is a table value)"},
    {.name = "error_table_through_pcall_and_rethrow",
     .src = "local ok, e = pcall(error, setmetatable({}, " LOOPING_MT ")) error(e)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "(error object is a table value)"},
    {.name = "error_nil",
     .src = "error()",
     .kind = MJ_KIND_RUNTIME,
     .needle = "(error object is a nil value)"},
    {.name = "error_thread",
     .src = "error(coroutine.create(print))",
     .kind = MJ_KIND_RUNTIME,
     .needle = "(error object is a thread value)"},
    {.name = "error_float", .src = "error(1.5)", .kind = MJ_KIND_RUNTIME, .needle = "1.5"},
    {.name = "error_huge_string",
     .src = "error(string.rep('x', 1e6))",
     .kind = MJ_KIND_RUNTIME,
     .needle = "xxx..."},
    {.name = "error_message_with_nul",
     .src = "error('a\\0b', 0)",
     .kind = MJ_KIND_RUNTIME,
     .needle = "a"},

    /* ---- returned values: converted raw, bounded, cycle-safe ---- */
    {.name = "result_array_with_looping_metamethods",
     .src = "return setmetatable({1, 2, 3}, " LOOPING_MT ")",
     .kind = MJ_KIND_NONE,
     .values = "[1,2,3]"},
    {.name = "result_map_with_looping_metamethods",
     .src = "return setmetatable({a = 1}, " LOOPING_MT ")",
     .kind = MJ_KIND_NONE,
     .values = "{\"a\"=1}"},
    {.name = "result_empty_with_looping_metamethods",
     .src = "return setmetatable({}, " LOOPING_MT ")",
     .kind = MJ_KIND_NONE,
     .values = "{}"},
    {.name = "result_nested_metamethods",
     .src = "local inner = setmetatable({x = true}, " LOOPING_MT ") "
            "return setmetatable({inner}, " LOOPING_MT ")",
     .kind = MJ_KIND_NONE,
     .values = "[{\"x\"=true}]"},
    {.name = "result_protected_metatable",
     .src = "return setmetatable({7}, {__metatable = 'locked', __index = " SPIN "})",
     .kind = MJ_KIND_NONE,
     .values = "[7]"},
    {.name = "result_cycle",
     .src = "local t = {} t.self = t return t",
     .kind = MJ_KIND_RUNTIME,
     .needle = "cycle"},
    {.name = "result_cycle_two_tables",
     .src = "local a, b = {}, {} a[1] = b b[1] = a return a",
     .kind = MJ_KIND_RUNTIME,
     .needle = "cycle"},
    {.name = "result_cycle_through_key_value",
     .src = "local a = {} a.x = {y = {z = a}} return 1, a",
     .kind = MJ_KIND_RUNTIME,
     .needle = "cycle"},
    {.name = "result_shared_not_cycle",
     .src = "local s = {1} return {s, s}",
     .kind = MJ_KIND_NONE,
     .values = "[[1],[1]]"},
    {.name = "result_too_deep",
     .src = "local t = {} for i = 1, 100 do t = {t} end return t",
     .kind = MJ_KIND_OUTPUT,
     .needle = "too deep"},
    {.name = "result_too_many_items",
     .src = "local t = {} for i = 1, 1000 do t[i] = i end return t",
     .kind = MJ_KIND_OUTPUT,
     .needle = "too large"},
    {.name = "result_too_many_map_items",
     .src = "local t = {} for i = 1, 1000 do t['k' .. i] = i end return t",
     .kind = MJ_KIND_OUTPUT,
     .needle = "too large"},
    {.name = "result_too_many_values",
     .src = "local t = {} for i = 1, 1000 do t[i] = i end return table.unpack(t)",
     .kind = MJ_KIND_OUTPUT,
     .needle = "too large"},
    {.name = "result_too_many_bytes",
     .src = "return string.rep('x', 5000)",
     .kind = MJ_KIND_OUTPUT,
     .needle = "too large"},
    {.name = "result_shared_string_counted_each_time",
     .src = "local s = string.rep('x', 1000) return {s, s, s, s, s}",
     .kind = MJ_KIND_OUTPUT,
     .needle = "too large"},
    {.name = "result_key_bytes_counted",
     .src = "return {[string.rep('k', 5000)] = 1}",
     .kind = MJ_KIND_OUTPUT,
     .needle = "too large"},
    {.name = "result_dag_bomb",
     .src = "local t = {} for i = 1, 7 do t = {t, t} end return t",
     .kind = MJ_KIND_OUTPUT,
     .needle = "too large"},
    {.name = "result_dag_bomb_deep",
     .src = "local t = {} for i = 1, 60 do t = {t, t} end return t",
     .kind = MJ_KIND_OUTPUT},
    {.name = "result_table_key",
     .src = "return {[{}] = 1}",
     .kind = MJ_KIND_RUNTIME,
     .needle = "key"},
    {.name = "result_function_key",
     .src = "return {[print] = 1}",
     .kind = MJ_KIND_RUNTIME,
     .needle = "key"},
    {.name = "result_opaque_values",
     .src = "return print, coroutine.create(print), function() end",
     .kind = MJ_KIND_NONE,
     .values = "<function>, <thread>, <function>"},
    {.name = "result_float_kinds",
     .src = "return 1/0, -1/0, math.mininteger, 2^53, -0.0",
     .kind = MJ_KIND_NONE,
     .values = "inff, -inff, -9223372036854775808, 9.0072e+15f, -0f"},
    {.name = "result_nan",
     .src = "local n = 0/0 return n ~= n",
     .kind = MJ_KIND_NONE,
     .values = "true"},
    {.name = "result_array_with_hole",
     .src = "return {1, nil, 3}",
     .kind = MJ_KIND_NONE,
     .values = "{1=1,3=3}"},
};

static void
test_output_scripts(void **state)
{
	mj_limits l = adv_limits(4u << 20, 10000000, 1000);

	(void)state;
	l.output = 4096;
	l.result_bytes = 4096;
	l.result_depth = 8;
	l.result_items = 100;
	adv_run_table("output", cases, sizeof(cases) / sizeof(cases[0]), &l);
}

/* Output is per call: a flood in one call leaves the next call's output empty and untruncated,
 * and what was printed before a failure is still returned. */
static void
per_call_child(const void *arg)
{
	mj_limits l = adv_limits(4u << 20, 10000000, 1000);
	mj_engine *e;
	mj_result r;
	int i;

	(void)arg;
	l.output = 4096;
	if ((e = adv_engine("per_call", &l)) == NULL)
		return;
	for (i = 0; i < 3; i++) {
		if (adv_eval_kind("per_call", e, "while true do print('flood') end", MJ_KIND_OUTPUT,
		                  &r) &&
		    (!r.output_truncated || r.output_len != l.output ||
		     r.stats.output_bytes != l.output || r.stats.output_limit != l.output))
			adv_fail("per_call", "truncated %d, len %zu, stats %zu/%zu",
			         (int)r.output_truncated, r.output_len, r.stats.output_bytes,
			         r.stats.output_limit);
		mj_result_free(&r);
		if (adv_eval_kind("per_call", e, "print('a') print('b\\0c') error('late')",
		                  MJ_KIND_RUNTIME, &r) &&
		    (r.output_truncated || r.output_len != 6 ||
		     memcmp(r.output, "a\nb\0c\n", 6) != 0))
			adv_fail("per_call", "output after an error: truncated %d, %zu bytes",
			         (int)r.output_truncated, r.output_len);
		mj_result_free(&r);
	}
	/* Exactly the limit is fine; one byte more is not. */
	if (adv_eval_kind("per_call", e, "print(string.rep('x', 4095))", MJ_KIND_NONE, &r) &&
	    (r.output_truncated || r.output_len != 4096))
		adv_fail("per_call", "4096 bytes of output: truncated %d, len %zu",
		         (int)r.output_truncated, r.output_len);
	mj_result_free(&r);
	if (adv_eval_kind("per_call", e, "print(string.rep('x', 4096))", MJ_KIND_OUTPUT, &r) &&
	    (!r.output_truncated || r.output_len != 4096))
		adv_fail("per_call", "4097 bytes of output: truncated %d, len %zu",
		         (int)r.output_truncated, r.output_len);
	mj_result_free(&r);
	adv_check_healthy("per_call", e);
	mj_engine_free(e);
}

static void
test_output_per_call(void **state)
{
	(void)state;
	adv_run_custom("output_per_call", NULL, per_call_child, 10000);
}

/* A chunk one byte over the source limit is refused before it is parsed, and changes nothing. */
static void
source_child(const void *arg)
{
	mj_limits l = adv_limits(4u << 20, 10000000, 1000);
	char *src;
	mj_engine *e;
	mj_result r;
	mj_err err;

	(void)arg;
	l.source = 4096;
	if ((e = adv_engine("source", &l)) == NULL)
		return;
	if ((src = malloc(l.source + 2)) == NULL) {
		adv_fail("source", "out of memory");
		mj_engine_free(e);
		return;
	}
	adv_plant_sentinel("source", e);
	/* "return 1" padded with a comment to exactly the limit, then one byte more. */
	memset(src, '-', l.source + 1);
	memcpy(src, "return 1 ", 9);
	src[l.source + 1] = '\0';
	if ((err = mj_engine_eval(e, src, l.source, "adv", &r)) != MJ_OK || r.kind != MJ_KIND_NONE)
		adv_fail("source", "a chunk of exactly the limit: %s %s", mj_err_str(err),
		         err == MJ_OK ? mj_kind_name(r.kind) : "");
	if (err == MJ_OK)
		mj_result_free(&r);
	if ((err = mj_engine_eval(e, src, l.source + 1, "adv", &r)) != MJ_OK ||
	    r.kind != MJ_KIND_BAD_REQUEST || r.engine_reset)
		adv_fail("source", "one byte over the limit: %s %s", mj_err_str(err),
		         err == MJ_OK ? mj_kind_name(r.kind) : "");
	if (err == MJ_OK)
		mj_result_free(&r);
	/* load() inside the engine applies the same limit. */
	adv_expect_values("source", e,
	                  "local f, e = load(string.rep(' ', 4097)) return f, e ~= nil, "
	                  "load(string.rep(' ', 4096)) ~= nil",
	                  "nil, true, true");
	adv_expect_values("source", e, "return ADV_SENTINEL", "42");
	free(src);
	adv_check_healthy("source", e);
	mj_engine_free(e);
}

static void
test_output_source_limit(void **state)
{
	(void)state;
	adv_run_custom("source_limit", NULL, source_child, 10000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_output_scripts),
	    cmocka_unit_test(test_output_per_call),
	    cmocka_unit_test(test_output_source_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
