/* Unit tests of read-only namespaces and host functions. */
#include <stdint.h>
#include <stdlib.h>

#include "test_util.h"

/* Builds {total = 42.5, id = 7, name = "ord-1", items = {"a", "b", "c"}, meta = {paid = true}}. */
static void
make_order(mj_value *v)
{
	mj_value *k, *x;

	assert_int_equal(mj_value_map(v, 5), MJ_OK);
	k = v->u.m.keys;
	x = v->u.m.vals;
	assert_int_equal(mj_value_string(&k[0], "total", 5), MJ_OK);
	mj_value_float(&x[0], 42.5);
	assert_int_equal(mj_value_string(&k[1], "id", 2), MJ_OK);
	mj_value_int(&x[1], 7);
	assert_int_equal(mj_value_string(&k[2], "name", 4), MJ_OK);
	assert_int_equal(mj_value_string(&x[2], "ord-1", 5), MJ_OK);
	assert_int_equal(mj_value_string(&k[3], "items", 5), MJ_OK);
	assert_int_equal(mj_value_array(&x[3], 3), MJ_OK);
	assert_int_equal(mj_value_string(&x[3].u.a.items[0], "a", 1), MJ_OK);
	assert_int_equal(mj_value_string(&x[3].u.a.items[1], "b", 1), MJ_OK);
	assert_int_equal(mj_value_string(&x[3].u.a.items[2], "c", 1), MJ_OK);
	assert_int_equal(mj_value_string(&k[4], "meta", 4), MJ_OK);
	assert_int_equal(mj_value_map(&x[4], 1), MJ_OK);
	assert_int_equal(mj_value_string(&x[4].u.m.keys[0], "paid", 4), MJ_OK);
	mj_value_bool(&x[4].u.m.vals[0], true);
}

static void
test_namespace_reads(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_value order;

	(void)state;
	make_order(&order);
	assert_int_equal(mj_engine_set_namespace(e, "Order", &order), MJ_OK);
	mj_value_free(&order); /* the engine keeps its own copy */
	tu_expect_int(e, "return Order.id", 7);
	tu_expect_int(e, "return Order.total == 42.5 and 1 or 0", 1);
	tu_expect_int(e, "return Order.missing == nil and Order.meta.nope == nil and 1 or 0", 1);
	tu_expect_int(e, "return #Order.items", 3);
	tu_expect_int(e, "return Order.items[2] == 'b' and Order.meta.paid and 1 or 0", 1);
	tu_expect_int(e, "local n = 0 for k, v in pairs(Order) do n = n + 1 end return n", 5);
	tu_expect_int(e,
	              "local s = '' for i, v in ipairs(Order.items) do s = s .. v end "
	              "return s == 'abc' and 1 or 0",
	              1);
	tu_expect_int(e,
	              "return type(Order) == 'table' and getmetatable(Order) == 'namespace' "
	              "and 1 or 0",
	              1);
	mj_engine_free(e);
}

static void
test_namespace_is_read_only(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_value order;

	(void)state;
	make_order(&order);
	assert_int_equal(mj_engine_set_namespace(e, "Order", &order), MJ_OK);
	mj_value_free(&order);
	tu_expect_error(e, "Order.id = 8", MJ_KIND_RUNTIME, "read-only");
	tu_expect_error(e, "Order.newkey = 1", MJ_KIND_RUNTIME, "read-only");
	tu_expect_error(e, "Order.items[1] = 'z'", MJ_KIND_RUNTIME, "read-only");
	tu_expect_error(e, "Order.meta.paid = false", MJ_KIND_RUNTIME, "read-only");
	tu_expect_error(e, "rawset(Order, 'id', 9)", MJ_KIND_RUNTIME, "read-only");
	tu_expect_error(e, "rawset(Order.meta, 'paid', 9)", MJ_KIND_RUNTIME, "read-only");
	tu_expect_error(e, "setmetatable(Order, nil)", MJ_KIND_RUNTIME, "protected");
	tu_expect_error(e, "table.insert(Order.items, 'd')", MJ_KIND_RUNTIME, "read-only");
	tu_expect_int(e, "return Order.id + #Order.items", 10);
	mj_engine_free(e);
}

static void
test_namespace_update_unset_and_reset(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_value v, arr;
	mj_result r;

	(void)state;
	assert_int_equal(mj_value_array(&arr, 2), MJ_OK);
	mj_value_int(&arr.u.a.items[0], 1);
	mj_value_int(&arr.u.a.items[1], 2);
	assert_int_equal(mj_engine_set_namespace(e, "Nums", &arr), MJ_OK);
	tu_expect_int(e, "return Nums[1] + Nums[2]", 3);
	mj_value_int(&arr.u.a.items[1], 20);
	assert_int_equal(mj_engine_set_namespace(e, "Nums", &arr), MJ_OK);
	tu_expect_int(e, "return Nums[1] + Nums[2]", 21);
	/* Namespaces survive a reset, explicit or after a limit kill. */
	assert_int_equal(mj_engine_reset(e), MJ_OK);
	tu_expect_int(e, "return Nums[2]", 20);
	assert_int_equal(mj_engine_unset_namespace(e, "Nums"), MJ_OK);
	assert_int_equal(mj_engine_unset_namespace(e, "Nums"), MJ_ENOENT);
	tu_eval(e, "return Nums", &r);
	assert_int_equal(r.values[0].type, MJ_VNIL);
	mj_result_free(&r);
	assert_int_equal(mj_engine_reset(e), MJ_OK);
	tu_eval(e, "return Nums", &r);
	assert_int_equal(r.values[0].type, MJ_VNIL);
	mj_result_free(&r);
	mj_value_free(&arr);

	/* Bad names and bad trees. */
	mj_value_int(&v, 1);
	assert_int_equal(mj_engine_set_namespace(e, "X", &v), MJ_EINVAL);
	assert_int_equal(mj_value_map(&v, 1), MJ_OK);
	assert_int_equal(mj_engine_set_namespace(e, "1bad", &v), MJ_EINVAL);
	assert_int_equal(mj_engine_set_namespace(e, "end", &v), MJ_EINVAL);
	assert_int_equal(mj_engine_set_namespace(e, "a.b", &v), MJ_EINVAL);
	assert_int_equal(mj_engine_set_namespace(e, NULL, &v), MJ_EINVAL);
	/* A nil key is refused, and the engine is unchanged. */
	assert_int_equal(mj_engine_set_namespace(e, "Bad", &v), MJ_EINVAL);
	assert_non_null(strstr(mj_engine_errmsg(e), "nil"));
	assert_int_equal(mj_value_opaque(&v.u.m.keys[0], "function"), MJ_OK);
	assert_int_equal(mj_engine_set_namespace(e, "Bad", &v), MJ_EINVAL);
	mj_value_free(&v.u.m.keys[0]);
	mj_value_float(&v.u.m.keys[0], 0.0 / 0.0);
	assert_int_equal(mj_engine_set_namespace(e, "Bad", &v), MJ_EINVAL);
	mj_value_int(&v.u.m.keys[0], 5);
	assert_int_equal(mj_value_opaque(&v.u.m.vals[0], "thread"), MJ_OK);
	assert_int_equal(mj_engine_set_namespace(e, "Bad", &v), MJ_EINVAL);
	mj_value_free(&v);
	tu_eval(e, "return Bad", &r);
	assert_int_equal(r.values[0].type, MJ_VNIL);
	mj_result_free(&r);
	mj_engine_free(e);
}

static void
test_namespace_counts_against_memory(void **state)
{
	mj_limits l;
	mj_engine *e;
	mj_value big;
	size_t i;

	(void)state;
	mj_limits_default(&l);
	l.memory = 256 << 10;
	e = tu_engine(&l, 0);
	assert_int_equal(mj_value_array(&big, 50000), MJ_OK);
	for (i = 0; i < big.u.a.len; i++)
		assert_int_equal(mj_value_string(&big.u.a.items[i], "0123456789abcdef", 16), MJ_OK);
	assert_int_equal(mj_engine_set_namespace(e, "Big", &big), MJ_ELIMIT);
	mj_value_free(&big);
	tu_expect_int(e, "return Big == nil and 1 or 0", 1);
	assert_true(mj_engine_memory(e) < 64 << 10);
	mj_engine_free(e);
}

/* ---- host functions ---- */

static mj_err
host_add(void *ud, const mj_value *args, size_t nargs, mj_value *ret, char *err, size_t errlen)
{
	int *calls = ud;
	int64_t sum = 0;
	size_t i;

	(*calls)++;
	for (i = 0; i < nargs; i++) {
		if (args[i].type != MJ_VINT) {
			snprintf(err, errlen, "add: argument %zu is %s, want integer", i + 1,
			         mj_vtype_name(args[i].type));
			return MJ_EINVAL;
		}
		sum += args[i].u.i;
	}
	mj_value_int(ret, sum);
	return MJ_OK;
}

static mj_err
host_echo(void *ud, const mj_value *args, size_t nargs, mj_value *ret, char *err, size_t errlen)
{
	(void)ud;
	(void)err;
	(void)errlen;
	if (nargs == 0)
		return MJ_OK;
	return mj_value_copy(ret, &args[0]);
}

static mj_engine *reentrant_engine;

static mj_err
host_reenter(void *ud, const mj_value *args, size_t nargs, mj_value *ret, char *err, size_t errlen)
{
	mj_result r;

	(void)ud;
	(void)args;
	(void)nargs;
	mj_value_int(ret, mj_engine_eval(reentrant_engine, "return 1", 8, NULL, &r));
	snprintf(err, errlen, "unused");
	return MJ_OK;
}

static void
test_host_functions(void **state)
{
	mj_engine *e = tu_engine(NULL, 0);
	mj_result r;
	int calls = 0;

	(void)state;
	assert_int_equal(mj_engine_register_function(e, "add", host_add, &calls), MJ_OK);
	assert_int_equal(mj_engine_register_function(e, "echo", host_echo, NULL), MJ_OK);
	tu_expect_int(e, "return add(1, 2, 3)", 6);
	tu_expect_int(e, "return add()", 0);
	assert_int_equal(calls, 2);
	tu_expect_error(e, "return add(1, 'x')", MJ_KIND_RUNTIME, "argument 2 is string");
	tu_expect_int(e, "local ok, msg = pcall(add, {}) return ok and 0 or 1", 1);
	tu_eval(e, "return echo({a = {1, 2}, b = 'x'})", &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_int_equal(r.values[0].type, MJ_VMAP);
	assert_int_equal(r.values[0].u.m.len, 2);
	mj_result_free(&r);
	tu_eval(e, "return echo()", &r);
	assert_int_equal(r.values[0].type, MJ_VNIL);
	mj_result_free(&r);
	/* Arguments are bounded like results: cycles and opaque values are handled. */
	tu_expect_error(e, "local t = {} t.t = t return echo(t)", MJ_KIND_RUNTIME, "cycle");
	tu_expect_error(e, "return echo(print)", MJ_KIND_RUNTIME, "opaque");
	/* Functions survive reset and replacing one keeps the name working. */
	assert_int_equal(mj_engine_reset(e), MJ_OK);
	tu_expect_int(e, "return add(40, 2)", 42);
	assert_int_equal(mj_engine_register_function(e, "add", host_echo, NULL), MJ_OK);
	tu_expect_int(e, "return add(5, 6)", 5);
	/* Bad registrations. */
	assert_int_equal(mj_engine_register_function(e, "bad name", host_add, NULL), MJ_EINVAL);
	assert_int_equal(mj_engine_register_function(e, "ok", NULL, NULL), MJ_EINVAL);
	assert_int_equal(mj_engine_register_function(NULL, "ok", host_add, NULL), MJ_EINVAL);
	/* A host function cannot re-enter its own engine. */
	reentrant_engine = e;
	assert_int_equal(mj_engine_register_function(e, "reenter", host_reenter, NULL), MJ_OK);
	tu_expect_int(e, "return reenter()", MJ_ESTATE);
	mj_engine_free(e);
}

static void
test_namespace_converts_to_its_data(void **state)
{
	mj_engine *e = tu_engine(NULL, 1);
	mj_value order;
	mj_result r;

	(void)state;
	make_order(&order);
	assert_int_equal(mj_engine_set_namespace(e, "Order", &order), MJ_OK);
	mj_value_free(&order);
	tu_eval(e, "return Order, Order.items, require('json').encode(Order.items)", &r);
	assert_int_equal(r.kind, MJ_KIND_NONE);
	assert_int_equal(r.nvalues, 3);
	assert_int_equal(r.values[0].type, MJ_VMAP);
	assert_int_equal(r.values[0].u.m.len, 5);
	assert_int_equal(r.values[1].type, MJ_VARRAY);
	assert_int_equal(r.values[1].u.a.len, 3);
	assert_int_equal(r.values[2].type, MJ_VSTRING);
	assert_string_equal(r.values[2].u.s.ptr, "[\"a\",\"b\",\"c\"]");
	mj_result_free(&r);
	/* The data behind a namespace stays out of reach through pairs. */
	tu_expect_error(e, "local f, s = pairs(Order) s.id = 0", MJ_KIND_RUNTIME, "read-only");
	tu_expect_int(e, "local f, s = pairs(Order) for k, v in f, s do end return Order.id", 7);
	/* json.null in a result is nil. */
	tu_eval(e, "return require('json').decode('[1, null, 3]')", &r);
	assert_int_equal(r.values[0].type, MJ_VARRAY);
	assert_int_equal(r.values[0].u.a.items[1].type, MJ_VNIL);
	mj_result_free(&r);
	mj_engine_free(e);
}

static mj_engine *other_engine;

static mj_err
host_use_other(void *ud, const mj_value *args, size_t nargs, mj_value *ret, char *err,
               size_t errlen)
{
	mj_result r;

	(void)ud;
	(void)args;
	(void)nargs;
	(void)err;
	(void)errlen;
	if (mj_engine_eval(other_engine, "return 1", 8, NULL, &r) != MJ_OK)
		return MJ_EINTERNAL;
	mj_value_int(ret, r.values[0].u.i);
	mj_result_free(&r);
	return MJ_OK;
}

/* A host function that runs another engine on the same thread must not switch off the caller's
 * wall-clock limit (found in review: the thread's current engine was not restored). */
static void
test_nested_engine_keeps_deadline(void **state)
{
	mj_limits l;
	mj_engine *a;
	mj_result r;

	(void)state;
	mj_limits_default(&l);
	l.instructions = 0;
	l.timeout_ms = 200;
	a = tu_engine(&l, 0);
	other_engine = tu_engine(NULL, 0);
	assert_int_equal(mj_engine_register_function(a, "other", host_use_other, NULL), MJ_OK);
	tu_eval(a, "local x = other() while true do end", &r);
	assert_int_equal(r.kind, MJ_KIND_TIMEOUT);
	assert_true(r.stats.wall_us < 5000000);
	mj_result_free(&r);
	mj_engine_free(other_engine);
	mj_engine_free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_namespace_reads),
	    cmocka_unit_test(test_namespace_is_read_only),
	    cmocka_unit_test(test_namespace_update_unset_and_reset),
	    cmocka_unit_test(test_namespace_counts_against_memory),
	    cmocka_unit_test(test_host_functions),
	    cmocka_unit_test(test_namespace_converts_to_its_data),
	    cmocka_unit_test(test_nested_engine_keeps_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
