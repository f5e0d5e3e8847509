/* Hostile scripts trying to leave the sandbox: hidden libraries, bytecode, finalizers, leaks. */
#include "adv_util.h"

/* The whole reachable environment, by allowlist: anything else in _G or a library is a leak. */
#define ALLOWLIST_SCRIPT                                                                           \
	"local function set(s) local t = {} for w in s:gmatch('%S+') do t[w] = true end return t " \
	"end "                                                                                     \
	"local allowed = { "                                                                       \
	"  ADV_SENTINEL = true, _G = true, _VERSION = true, assert = true, collectgarbage = "      \
	"true, error = true, "                                                                     \
	"  getmetatable = true, ipairs = true, load = true, next = true, pairs = true, "           \
	"  pcall = true, print = true, rawequal = true, rawget = true, rawlen = true, "            \
	"  rawset = true, require = true, select = true, setmetatable = true, tonumber = true, "   \
	"  tostring = true, type = true, xpcall = true, "                                          \
	"  string = set('byte char format len lower pack packsize rep reverse sub unpack upper "   \
	"               find match gmatch gsub'), "                                                \
	"  table = set('concat insert move pack remove sort unpack'), "                            \
	"  math = set('abs ceil cos deg exp floor fmod huge log max maxinteger min mininteger "    \
	"             modf pi rad random randomseed sin sqrt tan tointeger type ult acos asin "    \
	"             atan'), "                                                                    \
	"  utf8 = set('char charpattern codepoint codes len offset'), "                            \
	"  coroutine = set('create isyieldable running status yield resume wrap close'), "         \
	"  os = set('clock date difftime time'), "                                                 \
	"} "                                                                                       \
	"for k, v in pairs(_G) do "                                                                \
	"  local a = allowed[k] assert(a, 'unexpected global ' .. tostring(k)) "                   \
	"  if type(a) == 'table' then for k2 in pairs(v) do "                                      \
	"    assert(a[k2], 'unexpected ' .. k .. '.' .. tostring(k2)) end end "                    \
	"end "                                                                                     \
	"local smt = getmetatable('') "                                                            \
	"for k in pairs(smt) do assert(set('__index __add __sub __mul __mod __pow __div __idiv "   \
	"  __unm')[k], 'string metatable has ' .. k) end "                                         \
	"assert(smt.__index == string) "                                                           \
	"return 'ok'"

/* A Lua 5.4 chunk header and the start of a function, as string.dump writes it. */
#define BYTECODE                                                                                   \
	"\x1bLuaT\x00\x19\x93\r\n\x1a\n\x04\x08\x08xV\x00\x00\x00\x00\x00\x00\x00\x00\x00"         \
	"\x00\x00(w@\x01\x80\x80\x80\x00\x01\x02\x85Q\x00\x00\x00"
#define NUL_AFTER_CODE "return 1\0garbage"
#define NUL_AT_START "\0return 1"
#define RAW_NUL_IN_STRING "return 'a\0b'"
#define LEN(s) (sizeof(s) - 1)

static const adv_case cases[] = {
    /* ---- hidden libraries and functions ---- */
    {.name = "allowlist_only", .src = ALLOWLIST_SCRIPT, .kind = MJ_KIND_NONE, .values = "\"ok\""},
    {.name = "no_io", .src = "return io", .kind = MJ_KIND_NONE, .values = "nil"},
    {.name = "os_dangerous_functions_absent",
     .src = "local n = 0 for _, k in ipairs{'execute', 'getenv', 'exit', 'remove', 'rename', "
            "'tmpname', 'setlocale'} do assert(os[k] == nil, k) n = n + 1 end return n",
     .kind = MJ_KIND_NONE,
     .values = "7"},
    {.name = "os_execute_call",
     .src = "os.execute('id')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "execute"},
    {.name = "os_exit_call", .src = "os.exit(1)", .kind = MJ_KIND_RUNTIME},
    {.name = "os_allowed_functions_work",
     .src = "return type(os.time()), type(os.clock()), os.date('!%Y', 0), os.difftime(2, 1)",
     .kind = MJ_KIND_NONE,
     .values = "\"number\", \"number\", \"1970\", 1f"},
    {.name = "os_date_bad_conversion", .src = "return os.date('%Ez%')", .kind = MJ_KIND_RUNTIME},
    {.name = "no_package",
     .src = "return package, debug, dofile, loadfile, warn",
     .kind = MJ_KIND_NONE,
     .values = "nil, nil, nil, nil, nil"},
    {.name = "require_os",
     .src = "return require('os')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "not found"},
    {.name = "require_io",
     .src = "return require('io')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "not found"},
    {.name = "require_debug", .src = "return require('debug')", .kind = MJ_KIND_RUNTIME},
    {.name = "require_path",
     .src = "return require('../../../../etc/passwd')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "not found"},
    {.name = "require_not_installed_json",
     .src = "return require('json')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "not found"},
    {.name = "string_dump_absent",
     .src = "return string.dump, ('').dump, getmetatable('').__index.dump",
     .kind = MJ_KIND_NONE,
     .values = "nil, nil, nil"},
    {.name = "string_dump_call", .src = "return string.dump(print)", .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_stop", .src = "collectgarbage('stop')", .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_default_collect", .src = "collectgarbage()", .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_step", .src = "collectgarbage('step', 1e9)", .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_generational",
     .src = "collectgarbage('generational')",
     .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_count_allowed",
     .src = "return collectgarbage('count') > 0",
     .kind = MJ_KIND_NONE,
     .values = "true"},
    {.name = "format_bad_conversion",
     .src = "return string.format('%n', 1)",
     .kind = MJ_KIND_RUNTIME},

    /* ---- finalizers ---- */
    {.name = "setmetatable_with_gc",
     .src = "setmetatable({}, {__gc = function() end})",
     .kind = MJ_KIND_RUNTIME,
     .needle = "__gc"},
    {.name = "setmetatable_with_false_gc",
     .src = "setmetatable({}, {__gc = false})",
     .kind = MJ_KIND_RUNTIME,
     .needle = "__gc"},
    {.name = "gc_inherited_through_index_never_runs",
     .src = "ran = false for i = 1, 1000 do setmetatable({}, setmetatable({}, {__index = "
            "{__gc = function() ran = true end}})) end "
            "local junk = {} for i = 1, 200000 do junk[i % 100 + 1] = {i} end return ran",
     .kind = MJ_KIND_NONE,
     .values = "false"},

    /* ---- _ENV and load tricks ---- */
    {.name = "env_is_the_sandbox",
     .src = "return _ENV == _G, _G._G == _G, getmetatable(_G) == nil",
     .kind = MJ_KIND_NONE,
     .values = "true, true, true"},
    {.name = "local_env_hides_nothing",
     .src = "local function f() local _ENV = setmetatable({}, {__index = _G}) "
            "return io, os.execute, debug end return f()",
     .kind = MJ_KIND_NONE,
     .values = "nil, nil, nil"},
    {.name = "load_with_custom_env",
     .src = "local f = load('return io, os and os.getenv, package', 'x', 't', "
            "setmetatable({}, {__index = _G})) return f()",
     .kind = MJ_KIND_NONE,
     .values = "nil, nil, nil"},
    {.name = "load_source_limit",
     .src = "local f, err = load(string.rep(' ', 1048577)) return f, err",
     .kind = MJ_KIND_NONE,
     .values = "nil, \"chunk too large (limit 1048576 bytes)\""},
    {.name = "load_reader_source_limit",
     .src = "local piece = string.rep(' ', 65536) "
            "local f, err = load(function() return piece end) return f == nil, type(err)",
     .kind = MJ_KIND_NONE,
     .values = "true, \"string\""},
    {.name = "close_running_main_thread",
     .src = "return pcall(coroutine.close, coroutine.running())",
     .kind = MJ_KIND_NONE,
     .values = "false, \"cannot close a running coroutine\""},
    {.name = "resume_running_main_thread",
     .src = "return coroutine.resume(coroutine.running())",
     .kind = MJ_KIND_NONE,
     .values = "false, \"cannot resume non-suspended coroutine\""},

    /* ---- bytecode ---- */
    {.name = "eval_bytecode_header", .src = BYTECODE, .len = LEN(BYTECODE), .kind = MJ_KIND_SYNTAX},
    {.name = "eval_bytecode_signature_only", .src = "\x1bLua", .kind = MJ_KIND_SYNTAX},
    {.name = "load_binary_string",
     .src = "local f, err = load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n\\4\\8\\8junk') "
            "return f, err:find('binary') ~= nil",
     .kind = MJ_KIND_NONE,
     .values = "nil, true"},
    {.name = "load_binary_reader",
     .src = "local parts, i = {'\\27Lu', 'aT\\0junk'}, 0 "
            "local f, err = load(function() i = i + 1 return parts[i] end) "
            "return f, err:find('binary') ~= nil",
     .kind = MJ_KIND_NONE,
     .values = "nil, true"},
    {.name = "load_mode_b",
     .src = "local ok, f = pcall(load, 'return 1', 'x', 'b') return type(f) == 'function'",
     .kind = MJ_KIND_NONE,
     .values = "false"},
    {.name = "load_mode_b_binary",
     .src = "local ok, f = pcall(load, '\\27LuaT\\0junk', 'x', 'b') "
            "return type(f) == 'function'",
     .kind = MJ_KIND_NONE,
     .values = "false"},

    /* ---- NUL bytes ---- */
    {.name = "nul_after_code",
     .src = NUL_AFTER_CODE,
     .len = LEN(NUL_AFTER_CODE),
     .kind = MJ_KIND_SYNTAX},
    {.name = "nul_at_start", .src = NUL_AT_START, .len = LEN(NUL_AT_START), .kind = MJ_KIND_SYNTAX},
    {.name = "nul_escape_in_string",
     .src = "local s = 'a\\0b' return #s, s:byte(2), s",
     .kind = MJ_KIND_NONE,
     .values = "3, 0, \"a\\0b\""},
    {.name = "raw_nul_inside_string_literal",
     .src = RAW_NUL_IN_STRING,
     .len = LEN(RAW_NUL_IN_STRING),
     .kind = MJ_KIND_NONE,
     .values = "\"a\\0b\""},
    {.name = "load_nul_after_code",
     .src = "local f, err = load('return 1\\0garbage') return f, type(err)",
     .kind = MJ_KIND_NONE,
     .values = "nil, \"string\""},
};

static void
test_escape_scripts(void **state)
{
	mj_limits l = adv_limits(4u << 20, 10000000, 1000);

	(void)state;
	adv_run_table("escape", cases, sizeof(cases) / sizeof(cases[0]), &l);
}

/* Changing library tables, the string metatable or globals in engine A leaves engine B alone. */
static void
isolation_child(const void *arg)
{
	static const char *const attack =
	    "rawset(string, 'rep', function() return 'pwned' end) "
	    "string.upper = nil table.concat = print math.pi = 3 "
	    "getmetatable('').__index = {len = function() return -1 end} "
	    "getmetatable('').__add = function() return 'pwned' end "
	    "rawset(_G, 'pcall', error) X = 'from A' return 'done'";
	static const char *const probe =
	    "return string.rep('a', 3), string.upper('a'), ('abc'):len(), X, "
	    "table.concat({1, 2}), math.pi > 3.14, pcall(type, 1)";
	mj_limits l = adv_limits(4u << 20, 10000000, 1000);
	mj_engine *a, *b;

	(void)arg;
	if ((a = adv_engine("isolation", &l)) == NULL)
		return;
	if ((b = adv_engine("isolation", &l)) == NULL) {
		mj_engine_free(a);
		return;
	}
	adv_expect_values("isolation", a, attack, "\"done\"");
	/* A keeps its own changes (state persists), B never sees them. */
	adv_expect_values("isolation", a, "return string.rep('a', 3), ('abc'):len(), X",
	                  "\"pwned\", -1, \"from A\"");
	adv_expect_values("isolation", b, probe,
	                  "\"aaa\", \"A\", 3, nil, \"12\", true, true, \"number\"");
	/* Resetting A restores the pristine libraries. */
	if (mj_engine_reset(a) != MJ_OK)
		adv_fail("isolation", "mj_engine_reset failed");
	adv_expect_values("isolation", a, probe,
	                  "\"aaa\", \"A\", 3, nil, \"12\", true, true, \"number\"");
	adv_check_healthy("isolation", a);
	adv_check_healthy("isolation", b);
	mj_engine_free(a);
	mj_engine_free(b);
}

static void
test_escape_isolation(void **state)
{
	(void)state;
	adv_run_custom("engine_isolation", NULL, isolation_child, 10000);
}

/* A __gc added to a metatable after setmetatable is never called, however much GC runs. */
static void
late_gc_child(const void *arg)
{
	static const char *const setup =
	    "gc_ran = 0 local mt = {} keep = {} "
	    "for i = 1, 200 do keep[i] = setmetatable({}, mt) setmetatable({}, mt) end "
	    "mt.__gc = function() gc_ran = gc_ran + 1 end "
	    "rawset(mt, '__gc', mt.__gc) late_mt = mt return gc_ran";
	static const char *const churn =
	    "local junk = {} for i = 1, 30000 do junk[i % 512 + 1] = {i, tostring(i)} end "
	    "return gc_ran";
	mj_limits l = adv_limits(4u << 20, 50000000, 2000);
	mj_engine *e;
	int i;

	(void)arg;
	if ((e = adv_engine("late_gc", &l)) == NULL)
		return;
	adv_expect_values("late_gc", e, setup, "0");
	for (i = 0; i < 5; i++)
		adv_expect_values("late_gc", e, churn, "0");
	/* Drop every reference, churn again: still nothing may run. */
	adv_expect_values("late_gc", e, "keep = nil return gc_ran", "0");
	for (i = 0; i < 5; i++)
		adv_expect_values("late_gc", e, churn, "0");
	adv_check_healthy("late_gc", e);
	mj_engine_free(e);
}

static void
test_escape_late_gc(void **state)
{
	(void)state;
	adv_run_custom("late_gc_never_runs", NULL, late_gc_child, 15000);
}

/* Namespaces are read-only from Lua, whatever path the script takes to the data. */
static void
namespace_child(const void *arg)
{
	static const struct {
		const char *src;
		mj_kind kind;
	} attacks[] = {
	    {"Order.total = 0", MJ_KIND_RUNTIME},
	    {"rawset(Order, 'total', 0)", MJ_KIND_RUNTIME},
	    {"setmetatable(Order, nil)", MJ_KIND_RUNTIME},
	    {"Order.items[1] = 0", MJ_KIND_RUNTIME},
	    {"table.insert(Order.items, 4)", MJ_KIND_RUNTIME},
	    {"getmetatable(Order).__index = {}", MJ_KIND_RUNTIME},
	    {"local f, s = pairs(Order) pcall(rawset, s, 'total', 0) "
	     "pcall(function() s.total = 0 end)",
	     MJ_KIND_NONE},
	    {"local f, s = pairs(Order.items) pcall(rawset, s, 1, 0) "
	     "pcall(function() s[1] = 0 end)",
	     MJ_KIND_NONE},
	    {"for k, v in next, Order do rawset(Order, k, 0) end", MJ_KIND_NONE},
	};
	mj_limits l = adv_limits(4u << 20, 10000000, 1000);
	mj_value tree, items;
	mj_engine *e;
	mj_result r;
	size_t i;

	(void)arg;
	if ((e = adv_engine("namespace", &l)) == NULL)
		return;
	if (mj_value_array(&items, 3) != MJ_OK || mj_value_map(&tree, 2) != MJ_OK) {
		adv_fail("namespace", "out of memory building the tree");
		mj_engine_free(e);
		return;
	}
	for (i = 0; i < 3; i++)
		mj_value_int(&items.u.a.items[i], (int64_t)i + 1);
	if (mj_value_string(&tree.u.m.keys[0], "total", 5) != MJ_OK ||
	    mj_value_string(&tree.u.m.keys[1], "items", 5) != MJ_OK)
		adv_fail("namespace", "out of memory building the tree");
	mj_value_int(&tree.u.m.vals[0], 5);
	tree.u.m.vals[1] = items;
	if (mj_engine_set_namespace(e, "Order", &tree) != MJ_OK)
		adv_fail("namespace", "mj_engine_set_namespace failed: %s", mj_engine_errmsg(e));
	mj_value_free(&tree);
	for (i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
		adv_eval_kind("namespace", e, attacks[i].src, attacks[i].kind, &r);
		mj_result_free(&r);
		/* Whatever the attack did, the data must be unchanged. */
		if (!adv_expect_values("namespace", e,
		                       "return Order.total, Order.items[1], #Order.items",
		                       "5, 1, 3"))
			adv_fail("namespace", "attack changed the namespace: %s", attacks[i].src);
		/* A reset reinstalls the host's copy, so each attack starts from clean data. */
		if (mj_engine_reset(e) != MJ_OK)
			adv_fail("namespace", "mj_engine_reset failed");
	}
	adv_check_healthy("namespace", e);
	mj_engine_free(e);
}

static void
test_escape_namespace(void **state)
{
	(void)state;
	adv_run_custom("namespace_read_only",
	               "the namespace proxy's __pairs (ns_pairs) returns the raw data table as "
	               "its state value, so `local _, data = pairs(NS)` gives a writable table "
	               "behind the read-only proxy",
	               namespace_child, 10000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_scripts),
	    cmocka_unit_test(test_escape_isolation),
	    cmocka_unit_test(test_escape_late_gc),
	    cmocka_unit_test(test_escape_namespace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
