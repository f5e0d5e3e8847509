/* Unit tests of size parsing, JSON rendering, value helpers and kind names. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mj/text.h"
#include "mj/value.h"

static void
test_parse_size(void **state)
{
	static const struct {
		const char *in;
		mj_err err;
		size_t want;
	} cases[] = {
	    {"16777216", MJ_OK, 16777216},
	    {"0", MJ_OK, 0},
	    {"1K", MJ_OK, 1024},
	    {"16M", MJ_OK, 16u << 20},
	    {"2G", MJ_OK, 2ull << 30},
	    {"1KiB", MJ_OK, 1024},
	    {"3MiB", MJ_OK, 3u << 20},
	    {"1GiB", MJ_OK, 1u << 30},
	    {"", MJ_EINVAL, 0},
	    {"M", MJ_EINVAL, 0},
	    {"12X", MJ_EINVAL, 0},
	    {"-1", MJ_EINVAL, 0},
	    {" 1", MJ_EINVAL, 0},
	    {"1 M", MJ_EINVAL, 0},
	    {"1m", MJ_EINVAL, 0},
	    {"1KB", MJ_EINVAL, 0},
	    {"1.5M", MJ_EINVAL, 0},
	    {"0x10", MJ_EINVAL, 0},
	    {"18446744073709551616", MJ_ELIMIT, 0},
	    {"17179869184G", MJ_ELIMIT, 0},
	    {"123456789012345678901234567890123", MJ_ELIMIT, 0},
	};
	size_t i, out;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		out = 12345;
		if (mj_parse_size(cases[i].in, &out) != cases[i].err)
			fail_msg("parse_size('%s')", cases[i].in);
		assert_int_equal(out, cases[i].err == MJ_OK ? cases[i].want : 12345);
	}
	assert_int_equal(mj_parse_size(NULL, &out), MJ_EINVAL);
}

static void
test_parse_u64(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(mj_parse_u64("18446744073709551615", &v), MJ_OK);
	assert_true(v == UINT64_MAX);
	assert_int_equal(mj_parse_u64("18446744073709551616", &v), MJ_ELIMIT);
	assert_int_equal(mj_parse_u64("12a", &v), MJ_EINVAL);
	assert_int_equal(mj_parse_u64("", &v), MJ_EINVAL);
	assert_int_equal(mj_parse_u64("+1", &v), MJ_EINVAL);
}

static char *
render(const mj_value *v, mj_buf *b)
{
	memset(b, 0, sizeof(*b));
	mj_buf_json_value(b, v);
	assert_false(b->failed);
	return b->ptr;
}

static void
test_json_render(void **state)
{
	mj_value v, m;
	mj_buf b;

	(void)state;
	mj_value_int(&v, -42);
	assert_string_equal(render(&v, &b), "-42");
	mj_buf_free(&b);
	mj_value_float(&v, 1.0);
	assert_string_equal(render(&v, &b), "1.0");
	mj_buf_free(&b);
	mj_value_float(&v, 0.1);
	assert_string_equal(render(&v, &b), "0.10000000000000001");
	mj_buf_free(&b);
	mj_value_float(&v, INFINITY);
	assert_string_equal(render(&v, &b), "null");
	mj_buf_free(&b);
	assert_int_equal(mj_value_string(&v, "a\"b\\\n\x01\xff\xc3\xa9", 9), MJ_OK);
	assert_string_equal(render(&v, &b), "\"a\\\"b\\\\\\n\\u0001\\u00ff\xc3\xa9\"");
	mj_buf_free(&b);
	mj_value_free(&v);
	assert_int_equal(mj_value_map(&m, 3), MJ_OK);
	assert_int_equal(mj_value_string(&m.u.m.keys[0], "k", 1), MJ_OK);
	assert_int_equal(mj_value_opaque(&m.u.m.vals[0], "function"), MJ_OK);
	mj_value_int(&m.u.m.keys[1], 7);
	assert_int_equal(mj_value_array(&m.u.m.vals[1], 2), MJ_OK);
	mj_value_bool(&m.u.m.keys[2], true);
	assert_string_equal(render(&m, &b),
	                    "{\"k\":\"<function>\",\"7\":[null,null],\"true\":null}");
	mj_buf_free(&b);
	mj_value_free(&m);
	/* An opaque type name off the wire is escaped like any string (found by fuzz_value). */
	assert_int_equal(mj_value_opaque(&v, "a\"b"), MJ_OK);
	assert_string_equal(render(&v, &b), "\"<a\\\"b>\"");
	mj_buf_free(&b);
	mj_value_free(&v);
}

static void
test_value_helpers(void **state)
{
	mj_value a, c;

	(void)state;
	assert_int_equal(mj_value_map(&a, 2), MJ_OK);
	assert_int_equal(mj_value_string(&a.u.m.keys[0], "x", 1), MJ_OK);
	assert_int_equal(mj_value_array(&a.u.m.vals[0], 1), MJ_OK);
	mj_value_float(&a.u.m.vals[0].u.a.items[0], 2.5);
	mj_value_int(&a.u.m.keys[1], 3);
	assert_int_equal(mj_value_string(&a.u.m.vals[1], "\0z", 2), MJ_OK);
	assert_int_equal(mj_value_copy(&c, &a), MJ_OK);
	assert_true(mj_value_equal(&a, &c));
	mj_value_int(&c.u.m.vals[0].u.a.items[0], 2);
	assert_false(mj_value_equal(&a, &c));
	mj_value_free(&c);
	assert_int_equal(c.type, MJ_VNIL);
	mj_value_free(&a);
	mj_value_free(NULL);
	assert_int_equal(mj_value_string(NULL, "x", 1), MJ_EINVAL);
	assert_int_equal(mj_value_string(&a, NULL, 1), MJ_EINVAL);
	assert_int_equal(mj_value_opaque(&a, NULL), MJ_EINVAL);
	assert_string_equal(mj_vtype_name(MJ_VFLOAT), "float");
}

/* The published FNV-1a 64-bit test vectors, and chaining: tenants are routed by this hash. */
static void
test_fnv1a(void **state)
{
	(void)state;
	assert_true(mj_fnv1a(MJ_FNV1A_INIT, "") == 0xcbf29ce484222325ull);
	assert_true(mj_fnv1a(MJ_FNV1A_INIT, "a") == 0xaf63dc4c8601ec8cull);
	assert_true(mj_fnv1a(MJ_FNV1A_INIT, "foobar") == 0x85944171f73967e8ull);
	assert_true(mj_fnv1a(mj_fnv1a(MJ_FNV1A_INIT, "foo"), "bar") ==
	            mj_fnv1a(MJ_FNV1A_INIT, "foobar"));
}

static void
test_kinds(void **state)
{
	mj_kind k;
	int i;

	(void)state;
	for (i = MJ_KIND_NONE; i <= MJ_KIND_INTERNAL; i++) {
		assert_int_equal(mj_kind_parse(mj_kind_name((mj_kind)i), &k), MJ_OK);
		assert_int_equal(k, i);
	}
	assert_string_equal(mj_kind_name(MJ_KIND_ENGINE_LOST), "engine-lost");
	assert_string_equal(mj_kind_name(MJ_KIND_BAD_REQUEST), "bad-request");
	assert_int_equal(mj_kind_parse("nope", &k), MJ_EINVAL);
	assert_string_equal(mj_kind_name((mj_kind)999), "internal");
	assert_string_equal(mj_err_str(MJ_ENOMEM), "out of memory");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_size),  cmocka_unit_test(test_parse_u64),
	    cmocka_unit_test(test_json_render), cmocka_unit_test(test_value_helpers),
	    cmocka_unit_test(test_kinds),       cmocka_unit_test(test_fnv1a),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
