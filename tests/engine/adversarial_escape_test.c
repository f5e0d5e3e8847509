/* Hostile scripts trying to leave the sandbox: hidden libraries, bytecode, finalizers, leaks. */
#include "adv_escape_cases.h"

static void
test_escape_scripts(void **state)
{
	mj_limits l = adv_escape_table_limits();

	(void)state;
	adv_run_table("escape", adv_escape_cases,
	              sizeof(adv_escape_cases) / sizeof(adv_escape_cases[0]), &l);
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
