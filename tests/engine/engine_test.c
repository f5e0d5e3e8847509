/* Unit tests of the engine's lifecycle, calls, results, errors, stats and limits. */
#include <stdint.h>
#include <stdlib.h>

#include "test_util.h"

/* ---- lifecycle ---- */

static void
test_new_free(void **state)
{
	mj_engine_config cfg;
	mj_engine *e = NULL;

	(void)state;
	mj_engine_config_default(&cfg);
	assert_int_equal(mj_engine_new(&e, &cfg), MJ_OK);
	assert_non_null(e);
	assert_true(mj_engine_memory(e) > 0);
	assert_true(mj_engine_memory(e) < 64 * 1024);
	mj_engine_free(e);
	mj_engine_free(NULL);
}

static void
test_new_rejects_bad_config(void **state)
{
	static const char *const bad_mod[] = {"io"};
	static const char *const null_mod[] = {NULL};
	mj_engine_config cfg;
	mj_engine *e = (mj_engine *)0x1;
	const char *why = NULL;

	(void)state;
	assert_int_equal(mj_engine_new(NULL, NULL), MJ_EINVAL);
	mj_engine_config_default(&cfg);
	assert_int_equal(mj_engine_new(&e, NULL), MJ_EINVAL);
	cfg.limits.memory = 1000;
	assert_int_equal(mj_engine_new(&e, &cfg), MJ_EINVAL);
	assert_int_equal(mj_limits_check(&cfg.limits, &why), MJ_EINVAL);
	assert_non_null(strstr(why, "memory"));
	mj_engine_config_default(&cfg);
	cfg.limits.output = 0;
	assert_int_equal(mj_engine_new(&e, &cfg), MJ_EINVAL);
	mj_engine_config_default(&cfg);
	cfg.limits.result_depth = 1000;
	assert_int_equal(mj_engine_new(&e, &cfg), MJ_EINVAL);
	mj_engine_config_default(&cfg);
	cfg.modules = bad_mod;
	cfg.nmodules = 1;
	assert_int_equal(mj_engine_new(&e, &cfg), MJ_EINVAL);
	cfg.modules = null_mod;
	assert_int_equal(mj_engine_new(&e, &cfg), MJ_EINVAL);
	cfg.modules = NULL;
	assert_int_equal(mj_engine_new(&e, &cfg), MJ_EINVAL);
	/* *out is written only on success. */
	assert_ptr_equal(e, (mj_engine *)0x1);
}

/* A failing allocator: the first `allowance` allocations succeed, the rest fail. */
static long allowance;
static long allocations;

static void *
failing_malloc(void *ud, size_t n)
{
	(void)ud;
	if (allocations++ >= allowance)
		return NULL;
	return malloc(n);
}

static void *
failing_realloc(void *ud, void *p, size_t n)
{
	(void)ud;
	if (p == NULL || n > 0) {
		if (allocations++ >= allowance)
			return NULL;
	}
	return realloc(p, n);
}

static void
failing_free(void *ud, void *p)
{
	(void)ud;
	free(p);
}

static const mj_allocator failing = {failing_malloc, failing_realloc, failing_free, NULL};

/* libuv-style sweep: raise the allowance until construction succeeds; every failure before
 * that must unwind cleanly (ASan reports any leak or bad free). */
static void
test_new_oom_sweep(void **state)
{
	static const char *const mods[] = {"json"};
	mj_engine_config cfg;
	mj_engine *e;
	mj_err err = MJ_ENOMEM;
	int failures = 0;

	(void)state;
	mj_engine_config_default(&cfg);
	cfg.modules = mods;
	cfg.nmodules = 1;
	for (allowance = 0; allowance < 100000; allowance++) {
		allocations = 0;
		e = NULL;
		mj_set_allocator(&failing);
		err = mj_engine_new(&e, &cfg);
		mj_set_allocator(NULL);
		if (err == MJ_OK)
			break;
		assert_int_equal(err, MJ_ENOMEM);
		assert_null(e);
		failures++;
	}
	assert_int_equal(err, MJ_OK);
	assert_true(failures > 10);
	mj_set_allocator(&failing);
	allowance = 1L << 30;
	tu_expect_int(e, "return 6 * 7", 42);
	mj_engine_free(e);
	mj_set_allocator(NULL);
}

/* Every call under host allocation failure either succeeds or reports MJ_ENOMEM, and leaks
 * nothing. */
static void
test_eval_oom_sweep(void **state)
{
	static const char src[] = "print('x') local j = require('json') return {1, 'a', {b=2}}";
	mj_result r;
	mj_engine *e;
	mj_err err = MJ_ENOMEM;

	(void)state;
	for (allowance = 0; allowance < 100000; allowance++) {
		e = tu_engine(NULL, 1);
		allocations = 0;
		mj_set_allocator(&failing);
		err = mj_engine_eval(e, src, strlen(src), "t", &r);
		mj_set_allocator(NULL);
		if (err == MJ_OK && r.kind == MJ_KIND_NONE) {
			mj_result_free(&r);
			mj_engine_free(e);
			break;
		}
		if (err == MJ_OK) {
			/* Host OOM inside the Lua heap surfaces as a memory error. */
			if (r.kind != MJ_KIND_MEMORY)
				fail_msg("allowance %ld: %s: %s", allowance, mj_kind_name(r.kind),
				         r.message);
			mj_result_free(&r);
		} else {
			assert_int_equal(err, MJ_ENOMEM);
		}
		/* The engine stays usable (possibly after a reset). */
		if (mj_engine_eval(e, "return 1", 8, "t", &r) == MJ_OK)
			mj_result_free(&r);
		else
			assert_int_equal(mj_engine_reset(e), MJ_OK);
		mj_engine_free(e);
	}
	assert_true(allowance > 3);
}

static void
test_reset(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	tu_expect_int(e, "counter = 5 return counter", 5);
	assert_int_equal(mj_engine_reset(e), MJ_OK);
	tu_eval(e, "return counter", &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_int_equal(r.values[0].type, MJ_VNIL);
	mj_result_free(&r);
	assert_int_equal(mj_engine_reset(NULL), MJ_EINVAL);
	mj_engine_free(e);
}

/* ---- eval, run and state ---- */

static void
test_state_persists_and_engines_are_isolated(void **state)
{
	mj_engine *a = tu_engine(NULL, 0), *b = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	tu_expect_int(a, "function inc() n = (n or 0) + 1 return n end return inc()", 1);
	tu_expect_int(a, "return inc()", 2);
	tu_expect_int(a, "t = {x = 10} return t.x", 10);
	tu_expect_int(a, "t.x = t.x + 1 return t.x", 11);
	tu_eval(b, "return inc, t, n", &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_int_equal(r.nvalues, 3);
	assert_int_equal(r.values[0].type, MJ_VNIL);
	assert_int_equal(r.values[1].type, MJ_VNIL);
	assert_int_equal(r.values[2].type, MJ_VNIL);
	mj_result_free(&r);
	/* A library change in one engine is invisible in another. */
	tu_expect_int(a, "string.rep = nil; getmetatable('').__index.upper = nil return 1", 1);
	tu_expect_int(b, "return #string.rep('ab', 3) + #('x'):upper()", 7);
	mj_engine_free(a);
	mj_engine_free(b);
}

static void
test_eval_returns_every_value(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	tu_eval(e, "return 1, 2.0, 'a\\0b', true, nil, false, {}, {1, 2}, {x = 1}, print", &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_null(r.message);
	assert_int_equal(r.nvalues, 10);
	assert_int_equal(r.values[0].type, MJ_VINT);
	assert_int_equal(r.values[1].type, MJ_VFLOAT);
	assert_true(r.values[1].u.f == 2.0);
	assert_int_equal(r.values[2].type, MJ_VSTRING);
	assert_int_equal(r.values[2].u.s.len, 3);
	assert_memory_equal(r.values[2].u.s.ptr, "a\0b", 3);
	assert_int_equal(r.values[3].type, MJ_VBOOL);
	assert_true(r.values[3].u.b);
	assert_int_equal(r.values[4].type, MJ_VNIL);
	assert_int_equal(r.values[5].type, MJ_VBOOL);
	assert_false(r.values[5].u.b);
	assert_int_equal(r.values[6].type, MJ_VMAP);
	assert_int_equal(r.values[6].u.m.len, 0);
	assert_int_equal(r.values[7].type, MJ_VARRAY);
	assert_int_equal(r.values[7].u.a.len, 2);
	assert_int_equal(r.values[8].type, MJ_VMAP);
	assert_int_equal(r.values[9].type, MJ_VOPAQUE);
	assert_string_equal(r.values[9].u.s.ptr, "function");
	mj_result_free(&r);
	/* Empty tables inside a map once left a key on the Lua stack, and the next lua_next
	 * aborted the process (found by fuzz_load). */
	tu_eval(e, "return {x = {}, y = {}, z = {a = {}, b = {}}}, {{}, {}}", &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_int_equal(r.nvalues, 2);
	assert_int_equal(r.values[0].type, MJ_VMAP);
	assert_int_equal(r.values[0].u.m.len, 3);
	assert_int_equal(r.values[1].type, MJ_VARRAY);
	assert_int_equal(r.values[1].u.a.len, 2);
	mj_result_free(&r);
	tu_expect_int(e, "return 1 + 1", 2);
	mj_engine_free(e);
}

static void
test_run_returns_nothing(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	assert_int_equal(mj_engine_run(e, "x = 3 print(x) return x, {t = 1}", 32, NULL, &r), MJ_OK);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_int_equal(r.nvalues, 0);
	assert_null(r.values);
	assert_int_equal(r.output_len, 2);
	assert_string_equal(r.output, "3\n");
	mj_result_free(&r);
	/* A result that eval would refuse (a cycle) is fine for run. */
	assert_int_equal(mj_engine_run(e, "local t = {} t.t = t return t", 29, NULL, &r), MJ_OK);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	mj_result_free(&r);
	tu_expect_int(e, "return x", 3);
	mj_engine_free(e);
}

static void
test_bad_arguments(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	assert_int_equal(mj_engine_eval(NULL, "x", 1, NULL, &r), MJ_EINVAL);
	assert_int_equal(mj_engine_eval(e, NULL, 1, NULL, &r), MJ_EINVAL);
	assert_int_equal(mj_engine_eval(e, "x", 1, NULL, NULL), MJ_EINVAL);
	/* Empty source is a valid empty chunk. */
	assert_int_equal(mj_engine_eval(e, NULL, 0, NULL, &r), MJ_OK);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_int_equal(r.nvalues, 0);
	mj_result_free(&r);
	mj_engine_free(e);
}

static void
test_print_output(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	tu_eval(e,
	        "print('a', 1, 2.5, nil, true) print() print(setmetatable({}, "
	        "{__tostring = function() return 'T' end}))",
	        &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_string_equal(r.output, "a\t1\t2.5\tnil\ttrue\n\nT\n");
	assert_int_equal(r.stats.output_bytes, strlen(r.output));
	assert_false(r.output_truncated);
	mj_result_free(&r);
	/* Output is per call. */
	tu_eval(e, "return 1", &r);
	assert_int_equal(r.output_len, 0);
	assert_string_equal(r.output, "");
	mj_result_free(&r);
	mj_engine_free(e);
}

/* ---- errors ---- */

static void
test_syntax_error(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	tu_eval(e, "x = 1\n\nif then", &r);
	assert_int_equal(r.kind, MJ_KIND_SYNTAX);
	assert_int_equal(r.line, 3);
	assert_non_null(strstr(r.message, "t:3:"));
	assert_null(r.traceback);
	assert_false(r.engine_reset);
	mj_result_free(&r);
	tu_expect_kind(e, "\x1bLua\x54\x00", MJ_KIND_SYNTAX);
	mj_engine_free(e);
}

static void
test_runtime_error(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	tu_eval(e, "local function f()\n  error('bad thing')\nend\nf()", &r);
	assert_int_equal(r.kind, MJ_KIND_RUNTIME);
	assert_int_equal(r.line, 2);
	assert_string_equal(r.message, "t:2: bad thing");
	assert_non_null(r.traceback);
	assert_non_null(strstr(r.traceback, "stack traceback"));
	assert_non_null(strstr(r.traceback, "t:4"));
	mj_result_free(&r);
	/* Non-string error objects: described, never converted through metamethods. */
	tu_expect_error(e, "error({code = 1})", MJ_KIND_RUNTIME, "error object is a table value");
	tu_expect_error(e,
	                "error(setmetatable({}, {__tostring = function() while true do end end}))",
	                MJ_KIND_RUNTIME, "error object is a table value");
	tu_expect_error(e, "error(42)", MJ_KIND_RUNTIME, "42");
	tu_expect_error(e, "error(4.5)", MJ_KIND_RUNTIME, "4.5");
	tu_expect_error(e, "error()", MJ_KIND_RUNTIME, "nil value");
	tu_expect_error(e, "error('no position', 0)", MJ_KIND_RUNTIME, "no position");
	/* The line of a non-string error still comes from the stack. */
	tu_eval(e, "\n\nerror({})", &r);
	assert_int_equal(r.line, 3);
	mj_result_free(&r);
	/* A huge message is truncated, not copied whole. */
	tu_eval(e, "error(string.rep('x', 100000), 0)", &r);
	assert_int_equal(r.kind, MJ_KIND_RUNTIME);
	assert_true(strlen(r.message) < 10000);
	mj_result_free(&r);
	/* After an ordinary error the engine keeps its state. */
	tu_expect_kind(e, "keep = 7 error('x')", MJ_KIND_RUNTIME);
	tu_expect_int(e, "return keep", 7);
	mj_engine_free(e);
}

static void
test_error_kinds_of_limits(void **state)
{
	mj_limits l;
	mj_engine *e;
	mj_result r;

	(void)state;
	mj_limits_default(&l);
	l.instructions = 100000;
	l.timeout_ms = 0;
	e = tu_engine(&l, 0);
	tu_expect_int(e, "kept = 1 return kept", 1);
	tu_eval(e, "kept = 2 while true do end", &r);
	assert_int_equal(r.kind, MJ_KIND_INSTRUCTIONS);
	assert_true(r.engine_reset);
	assert_non_null(strstr(r.message, "instruction limit"));
	assert_true(r.stats.instructions >= 100000);
	assert_int_equal(r.stats.instruction_limit, 100000);
	assert_int_equal(r.line, 1);
	mj_result_free(&r);
	/* The reset dropped every global. */
	tu_eval(e, "return kept", &r);
	assert_int_equal(r.values[0].type, MJ_VNIL);
	mj_result_free(&r);
	mj_engine_free(e);

	mj_limits_default(&l);
	l.instructions = 0;
	l.timeout_ms = 50;
	e = tu_engine(&l, 0);
	tu_eval(e, "while true do end", &r);
	assert_int_equal(r.kind, MJ_KIND_TIMEOUT);
	assert_true(r.engine_reset);
	assert_true(r.stats.wall_us >= 50000);
	assert_true(r.stats.wall_us < 2000000);
	mj_result_free(&r);
	tu_expect_int(e, "return 2", 2);
	mj_engine_free(e);

	mj_limits_default(&l);
	l.memory = 1 << 20;
	e = tu_engine(&l, 0);
	tu_eval(e, "local t = {} for i = 1, 1e7 do t[i] = i end", &r);
	assert_int_equal(r.kind, MJ_KIND_MEMORY);
	assert_true(r.engine_reset);
	assert_true(r.stats.memory_peak <= l.memory + (64u << 10));
	assert_true(r.stats.memory_peak > l.memory / 2);
	mj_result_free(&r);
	tu_expect_int(e, "return 3", 3);
	mj_engine_free(e);

	mj_limits_default(&l);
	l.output = 100;
	e = tu_engine(&l, 0);
	tu_eval(e, "for i = 1, 1000 do print(i) end", &r);
	assert_int_equal(r.kind, MJ_KIND_OUTPUT);
	assert_true(r.output_truncated);
	assert_int_equal(r.output_len, 100);
	assert_true(r.engine_reset);
	mj_result_free(&r);
	mj_engine_free(e);
}

static void
test_limits_are_sticky(void **state)
{
	mj_limits l;
	mj_engine *e;

	(void)state;
	mj_limits_default(&l);
	l.instructions = 200000;
	l.timeout_ms = 0;
	e = tu_engine(&l, 0);
	tu_expect_kind(e, "for i = 1, 100 do pcall(function() while true do end end) end return 1",
	               MJ_KIND_INSTRUCTIONS);
	tu_expect_kind(e, "return pcall(function() while true do end end)", MJ_KIND_INSTRUCTIONS);
	tu_expect_kind(e,
	               "local ok = xpcall(function() while true do end end, "
	               "function(m) return m end) while true do pcall(error) end",
	               MJ_KIND_INSTRUCTIONS);
	tu_expect_kind(e,
	               "local co = coroutine.wrap(function() while true do end end) "
	               "for i = 1, 10 do pcall(co) end return 1",
	               MJ_KIND_INSTRUCTIONS);
	tu_expect_kind(e,
	               "local co = coroutine.create(function() while true do end end) "
	               "local ok = coroutine.resume(co) return ok",
	               MJ_KIND_INSTRUCTIONS);
	tu_expect_kind(e, "local f = load(function() while true do end end) return f",
	               MJ_KIND_INSTRUCTIONS);
	tu_expect_kind(e,
	               "do local x <close> = setmetatable({}, {__close = function() "
	               "pcall(function() while true do end end) end}) end return 1",
	               MJ_KIND_INSTRUCTIONS);
	/* A budget spread over many coroutines is still one budget. */
	tu_expect_kind(e,
	               "local n = 0 for i = 1, 1e6 do local co = coroutine.wrap(function() "
	               "for j = 1, 100 do n = n + 1 end end) co() end return n",
	               MJ_KIND_INSTRUCTIONS);
	tu_expect_int(e, "return 5", 5);
	mj_engine_free(e);
}

static void
test_source_limit(void **state)
{
	mj_limits l;
	mj_engine *e;
	mj_result r;
	char *big;

	(void)state;
	mj_limits_default(&l);
	l.source = 1000;
	e = tu_engine(&l, 0);
	big = malloc(2001);
	memset(big, ' ', 2000);
	big[2000] = '\0';
	assert_int_equal(mj_engine_eval(e, big, 2000, NULL, &r), MJ_OK);
	assert_int_equal(r.kind, MJ_KIND_BAD_REQUEST);
	assert_false(r.engine_reset);
	mj_result_free(&r);
	free(big);
	/* load() inside the script obeys the same limit. */
	tu_eval(e, "return load(string.rep(' ', 5000))", &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_int_equal(r.nvalues, 2);
	assert_int_equal(r.values[0].type, MJ_VNIL);
	assert_non_null(strstr(r.values[1].u.s.ptr, "too large"));
	mj_result_free(&r);
	tu_expect_kind(e,
	               "local n = 0 return load(function() n = n + 1 if n < 100 then "
	               "return string.rep(' ', 100) end end)",
	               MJ_KIND_NONE);
	mj_engine_free(e);
}

static void
test_result_limits(void **state)
{
	mj_limits l;
	mj_engine *e;

	(void)state;
	mj_limits_default(&l);
	l.result_bytes = 100;
	l.result_depth = 4;
	l.result_items = 50;
	e = tu_engine(&l, 0);
	tu_expect_error(e, "return string.rep('x', 101)", MJ_KIND_OUTPUT, "bytes");
	tu_expect_error(e, "return {{{{{1}}}}}", MJ_KIND_OUTPUT, "deep");
	tu_expect_error(e, "local t = {} for i = 1, 60 do t[i] = i end return t", MJ_KIND_OUTPUT,
	                "values");
	tu_expect_error(e, "return table.unpack({}, 1, 60)", MJ_KIND_OUTPUT, "values");
	tu_expect_kind(e, "return {{{1}}}", MJ_KIND_NONE);
	tu_expect_error(e, "local t = {} t[1] = {t} return t", MJ_KIND_RUNTIME, "cycle");
	tu_expect_error(e, "return {[{}] = 1}", MJ_KIND_RUNTIME, "key of type 'table'");
	/* Result limits do not reset the engine: nothing was interrupted. */
	tu_expect_int(e, "x = 9 return string.rep('x', 200) == nil and 0 or x", 9);
	mj_engine_free(e);
}

static void
test_stats(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;

	(void)state;
	tu_eval(e, "local t = {} for i = 1, 50000 do t[i] = i end return #t", &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_true(r.stats.instructions >= 100000);
	assert_true(r.stats.instructions <= 400000);
	assert_true(r.stats.memory_peak >= 50000 * 16);
	assert_true(r.stats.memory_peak >= r.stats.memory_current);
	assert_int_equal(r.stats.memory_limit, 16u << 20);
	assert_int_equal(r.stats.timeout_ms, 1000);
	assert_int_equal(r.stats.output_limit, 1u << 20);
	assert_true(r.stats.wall_us > 0);
	mj_result_free(&r);
	mj_engine_free(e);
}

/* ---- sandbox ---- */

static void
test_sandbox_globals(void **state)
{
	static const char *const absent[] = {
	    "io",          "debug",        "package",    "dofile",  "loadfile",  "warn",
	    "string.dump", "os.execute",   "os.getenv",  "os.exit", "os.remove", "os.rename",
	    "os.tmpname",  "os.setlocale", "loadstring", "module",  "unpack",    "getfenv",
	    "setfenv",     "newproxy",     NULL};
	static const char *const present[] = {
	    "assert",     "error",         "getmetatable",   "ipairs",
	    "next",       "pairs",         "pcall",          "print",
	    "rawequal",   "rawget",        "rawlen",         "rawset",
	    "select",     "setmetatable",  "tonumber",       "tostring",
	    "type",       "xpcall",        "load",           "collectgarbage",
	    "require",    "string.format", "string.gsub",    "table.concat",
	    "math.floor", "utf8.char",     "coroutine.wrap", "os.time",
	    "os.clock",   "os.date",       "os.difftime",    NULL};
	mj_engine *e = tu_engine(NULL, 0);
	char src[128];
	size_t i;

	(void)state;
	for (i = 0; absent[i] != NULL; i++) {
		snprintf(src, sizeof(src),
		         "local ok, v = pcall(function() return %s end) "
		         "return (ok and v == nil) and 1 or 0",
		         absent[i]);
		tu_expect_int(e, src, 1);
	}
	for (i = 0; present[i] != NULL; i++) {
		snprintf(src, sizeof(src), "return type(%s) == 'function' and 1 or 0", present[i]);
		tu_expect_int(e, src, 1);
	}
	tu_expect_int(e, "return getmetatable('').__index.dump == nil and 1 or 0", 1);
	tu_expect_int(e, "return _G == _ENV and _G._G == _G and 1 or 0", 1);
	tu_expect_error(e, "collectgarbage('stop')", MJ_KIND_RUNTIME, "not allowed");
	tu_expect_error(e, "collectgarbage()", MJ_KIND_RUNTIME, "not allowed");
	tu_expect_int(e, "return collectgarbage('count') > 0 and 1 or 0", 1);
	tu_expect_error(e, "setmetatable({}, {__gc = function() end})", MJ_KIND_RUNTIME, "__gc");
	tu_expect_error(e, "setmetatable({}, {__gc = false})", MJ_KIND_RUNTIME, "__gc");
	tu_expect_error(e, "return require('os')", MJ_KIND_RUNTIME, "not installed");
	tu_expect_error(e, "return require('json')", MJ_KIND_RUNTIME, "not installed");
	tu_expect_error(e, "return load('return 1', 'x', 'b')", MJ_KIND_RUNTIME, "binary");
	tu_expect_int(e, "return load('return 1', 'x', 't')()", 1);
	tu_expect_int(e, "return load('return y', 'x', 't', {y = 4})()", 4);
	tu_expect_int(e, "local f, err = load('\\27Lua') return f == nil and 1 or 0", 1);
	tu_expect_int(e, "return #string.format('%5d', 3) + #os.date('%Y')", 9);
	tu_expect_int(e, "return math.type(os.time()) == 'integer' and 1 or 0", 1);
	mj_engine_free(e);
}

static void
test_coroutines_work(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);

	(void)state;
	tu_expect_int(e,
	              "local co = coroutine.create(function(a, b) local c = coroutine.yield(a + b) "
	              "return c * 2 end) local ok, v = coroutine.resume(co, 1, 2) "
	              "local ok2, w = coroutine.resume(co, 10) return v + w",
	              23);
	tu_expect_int(
	    e,
	    "local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end "
	    "end) return gen() + gen() + gen()",
	    6);
	tu_expect_error(e, "local g = coroutine.wrap(function() error('inner') end) g()",
	                MJ_KIND_RUNTIME, "inner");
	tu_expect_int(e,
	              "local co = coroutine.create(function() coroutine.yield() end) "
	              "coroutine.resume(co) local closed = 0 "
	              "return coroutine.close(co) and coroutine.status(co) == 'dead' and 1 or 0",
	              1);
	tu_expect_int(e,
	              "local ok, msg = coroutine.resume(coroutine.create(function() end)) "
	              "local co = coroutine.create(function() end) coroutine.resume(co) "
	              "local ok2, msg2 = coroutine.resume(co) "
	              "return (ok and not ok2 and msg2:find('dead')) and 1 or 0",
	              1);
	tu_expect_error(e, "coroutine.close(coroutine.running())", MJ_KIND_RUNTIME, "running");
	tu_expect_int(e,
	              "local log = {} local co = coroutine.wrap(function() "
	              "local x <close> = setmetatable({}, {__close = function() log[1] = 'c' end}) "
	              "error('e') end) pcall(co) return log[1] == 'c' and 1 or 0",
	              1);
	mj_engine_free(e);
}

static void
test_table_guards(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);

	(void)state;
	tu_expect_int(e,
	              "local t = {3, 1, 2} table.sort(t) table.insert(t, 4) "
	              "table.remove(t, 1) return t[1] * 100 + t[3] * 10 + #t",
	              243);
	tu_expect_int(e, "return #table.concat({1, 2, 3}, ',')", 5);
	tu_expect_int(e, "local t = table.move({1, 2, 3}, 1, 3, 2) return t[4]", 3);
	tu_expect_error(e, "table.move({}, 1, math.maxinteger, 2)", MJ_KIND_RUNTIME, "too large");
	tu_expect_error(
	    e, "table.insert(setmetatable({}, {__len = function() return 1 << 40 end}), 1, 1)",
	    MJ_KIND_RUNTIME, "too large");
	tu_expect_error(e, "table.concat({}, '', 1, 1 << 40)", MJ_KIND_RUNTIME, "too large");
	tu_expect_error(e, "table.unpack({}, 1, 1 << 40)", MJ_KIND_RUNTIME, "too large");
	tu_expect_error(e, "table.insert(1, 2)", MJ_KIND_RUNTIME, "table expected");
	mj_engine_free(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_free),
	    cmocka_unit_test(test_new_rejects_bad_config),
	    cmocka_unit_test(test_new_oom_sweep),
	    cmocka_unit_test(test_eval_oom_sweep),
	    cmocka_unit_test(test_reset),
	    cmocka_unit_test(test_state_persists_and_engines_are_isolated),
	    cmocka_unit_test(test_eval_returns_every_value),
	    cmocka_unit_test(test_run_returns_nothing),
	    cmocka_unit_test(test_bad_arguments),
	    cmocka_unit_test(test_print_output),
	    cmocka_unit_test(test_syntax_error),
	    cmocka_unit_test(test_runtime_error),
	    cmocka_unit_test(test_error_kinds_of_limits),
	    cmocka_unit_test(test_limits_are_sticky),
	    cmocka_unit_test(test_source_limit),
	    cmocka_unit_test(test_result_limits),
	    cmocka_unit_test(test_stats),
	    cmocka_unit_test(test_sandbox_globals),
	    cmocka_unit_test(test_coroutines_work),
	    cmocka_unit_test(test_table_guards),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
