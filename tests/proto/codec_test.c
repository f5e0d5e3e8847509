/* Unit tests of the wire codec: round trips, malformed and hostile input, caps and budgets. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mj/proto.h"

static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Wraps buf[0..*len) as field `field` (length-delimited) of an outer message, in place. */
static void
wrap(uint8_t *buf, size_t *len, unsigned field)
{
	uint8_t hdr[16];
	size_t h = put_varint(hdr, (uint64_t)field << 3 | 2);

	h += put_varint(hdr + h, *len);
	memmove(buf + h, buf, *len);
	memcpy(buf, hdr, h);
	*len += h;
}

/* A map {x = [1, 2.5, "s"], [7] = true, [false] = {}} as an mj_value. */
static void
make_value(mj_value *v)
{
	mj_value *arr;

	assert_int_equal(mj_value_map(v, 3), MJ_OK);
	assert_int_equal(mj_value_string(&v->u.m.keys[0], "x", 1), MJ_OK);
	arr = &v->u.m.vals[0];
	assert_int_equal(mj_value_array(arr, 3), MJ_OK);
	mj_value_int(&arr->u.a.items[0], 1);
	mj_value_float(&arr->u.a.items[1], 2.5);
	assert_int_equal(mj_value_string(&arr->u.a.items[2], "s\0t", 3), MJ_OK);
	mj_value_int(&v->u.m.keys[1], 7);
	mj_value_bool(&v->u.m.vals[1], true);
	mj_value_bool(&v->u.m.keys[2], false);
	assert_int_equal(mj_value_map(&v->u.m.vals[2], 0), MJ_OK);
}

static void
pack_request(const char *src, uint8_t **buf, size_t *len)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;

	req.version = MJ_PROTO_VERSION;
	req.id = 42;
	req.tenant = "acme";
	req.engine = "default";
	ev.source.data = (uint8_t *)src;
	ev.source.len = strlen(src);
	ev.chunk_name = "main";
	req.op_case = MOONJAIL__V1__REQUEST__OP_EVAL;
	req.eval = &ev;
	assert_int_equal(mj_proto_pack(&req.base, buf, len), MJ_OK);
}

static void
test_request_round_trip(void **state)
{
	ProtobufCMessage *m = NULL;
	mj_request *r;
	uint8_t *buf;
	size_t len;
	char why[128];

	(void)state;
	pack_request("return 1 + 1", &buf, &len);
	assert_int_equal(mj_proto_unpack(&moonjail__v1__request__descriptor, buf, len, NULL, &m,
	                                 why, sizeof(why)),
	                 MJ_OK);
	r = (mj_request *)m;
	assert_int_equal(r->version, 1);
	assert_int_equal(r->id, 42);
	assert_string_equal(r->tenant, "acme");
	assert_int_equal(r->op_case, MOONJAIL__V1__REQUEST__OP_EVAL);
	assert_int_equal(r->eval->source.len, 12);
	assert_memory_equal(r->eval->source.data, "return 1 + 1", 12);
	assert_string_equal(r->eval->chunk_name, "main");
	mj_proto_free(m);
	mj_free(buf);
	/* An empty message is valid: every field at its default. */
	assert_int_equal(mj_proto_unpack(&moonjail__v1__request__descriptor, NULL, 0, NULL, &m, why,
	                                 sizeof(why)),
	                 MJ_OK);
	assert_int_equal(((mj_request *)m)->op_case, MOONJAIL__V1__REQUEST__OP__NOT_SET);
	mj_proto_free(m);
	mj_proto_free(NULL);
}

static void
test_truncated_and_garbage(void **state)
{
	ProtobufCMessage *m;
	uint8_t *buf, junk[256];
	size_t len, i, j;
	char why[128];
	mj_err err;

	(void)state;
	pack_request("print('hello, world')", &buf, &len);
	/* Every prefix is either a valid message (cut at a field boundary) or rejected. */
	for (i = 0; i < len; i++) {
		m = NULL;
		err = mj_proto_unpack(&moonjail__v1__request__descriptor, buf, i, NULL, &m, why,
		                      sizeof(why));
		assert_true(err == MJ_OK || err == MJ_EINVAL);
		if (err == MJ_OK)
			mj_proto_free(m);
		else
			assert_non_null(strstr(why, "byte") != NULL ? why
			                                            : strstr(why, "malformed"));
	}
	mj_free(buf);
	/* Bounded random garbage never crashes. */
	srand(7);
	for (i = 0; i < 20000; i++) {
		len = (size_t)(rand() % (int)sizeof(junk));
		for (j = 0; j < len; j++)
			junk[j] = (uint8_t)rand();
		m = NULL;
		err = mj_proto_unpack(&moonjail__v1__request__descriptor, junk, len, NULL, &m, why,
		                      sizeof(why));
		assert_true(err == MJ_OK || err == MJ_EINVAL || err == MJ_ELIMIT);
		mj_proto_free(m);
	}
	/* Groups (wire types 3 and 4) are refused. */
	junk[0] = (1 << 3) | 3;
	assert_int_equal(
	    mj_proto_validate(&moonjail__v1__request__descriptor, junk, 1, NULL, why, sizeof(why)),
	    MJ_EINVAL);
	assert_non_null(strstr(why, "wire type"));
	/* A field whose wire type disagrees with its declared type is malformed. */
	junk[0] = (3 << 3) | 0; /* tenant (a string) sent as a varint */
	junk[1] = 5;
	m = NULL;
	assert_int_equal(mj_proto_unpack(&moonjail__v1__request__descriptor, junk, 2, NULL, &m, why,
	                                 sizeof(why)),
	                 MJ_EINVAL);
	assert_null(m);
}

static void
test_deep_nesting_is_refused(void **state)
{
	ProtobufCMessage *m = NULL;
	size_t len = 0, i;
	uint8_t *buf;
	char why[128];

	(void)state;
	/* A Value nested 5000 levels (Value.array -> Array.items -> Value ...): about 30 KB, which
	 * overflows the stack inside protobuf-c without the depth check. */
	buf = calloc(1, 200000);
	for (i = 0; i < 5000; i++) {
		wrap(buf, &len, 1); /* Array.items */
		wrap(buf, &len, 6); /* Value.array */
	}
	assert_true(len < 200000);
	assert_int_equal(
	    mj_proto_unpack(&moonjail__v1__value__descriptor, buf, len, NULL, &m, why, sizeof(why)),
	    MJ_ELIMIT);
	assert_null(m);
	assert_non_null(strstr(why, "nested too deeply"));
	free(buf);
}

static void
test_caps_and_budget(void **state)
{
	ProtobufCMessage *m = NULL;
	mj_proto_caps caps;
	uint8_t *buf;
	size_t len = 0, i, n = 100000;
	char why[128];

	(void)state;
	/* An Array of 100000 empty Values: 200 KB on the wire, many MB unpacked. */
	buf = malloc(n * 2 + 16);
	for (i = 0; i < n; i++) {
		buf[len++] = (1 << 3) | 2;
		buf[len++] = 0;
	}
	mj_proto_caps_default(&caps);
	caps.memory_budget = 1 << 20;
	assert_int_equal(mj_proto_unpack(&moonjail__v1__array__descriptor, buf, len, &caps, &m, why,
	                                 sizeof(why)),
	                 MJ_ELIMIT);
	assert_non_null(strstr(why, "decoded"));
	caps.memory_budget = 64 << 20;
	caps.max_messages = 1000;
	assert_int_equal(mj_proto_unpack(&moonjail__v1__array__descriptor, buf, len, &caps, &m, why,
	                                 sizeof(why)),
	                 MJ_ELIMIT);
	assert_non_null(strstr(why, "too many"));
	caps.max_messages = n + 1;
	assert_int_equal(mj_proto_unpack(&moonjail__v1__array__descriptor, buf, len, &caps, &m, why,
	                                 sizeof(why)),
	                 MJ_OK);
	assert_int_equal(((Moonjail__V1__Array *)m)->n_items, n);
	mj_proto_free(m);
	caps.max_bytes = len - 1;
	assert_int_equal(
	    mj_proto_validate(&moonjail__v1__array__descriptor, buf, len, &caps, why, sizeof(why)),
	    MJ_ELIMIT);
	assert_non_null(strstr(why, "too large"));
	free(buf);
}

static void
test_value_round_trip(void **state)
{
	ProtobufCMessage *m = NULL;
	mj_pvalue *pv = NULL;
	mj_value v, back;
	uint8_t *buf;
	size_t len;
	char why[128];

	(void)state;
	make_value(&v);
	assert_int_equal(mj_proto_from_value(&v, &pv), MJ_OK);
	assert_int_equal(mj_proto_pack(&pv->base, &buf, &len), MJ_OK);
	mj_proto_pvalue_free(pv);
	assert_int_equal(
	    mj_proto_unpack(&moonjail__v1__value__descriptor, buf, len, NULL, &m, why, sizeof(why)),
	    MJ_OK);
	assert_int_equal(mj_proto_to_value((mj_pvalue *)m, &back, why, sizeof(why)), MJ_OK);
	assert_true(mj_value_equal(&v, &back));
	mj_value_free(&back);
	mj_proto_free(m);
	mj_free(buf);
	mj_value_free(&v);
	/* An unset value is nil; opaque values keep their type name. */
	assert_int_equal(mj_proto_to_value(NULL, &back, why, sizeof(why)), MJ_OK);
	assert_int_equal(back.type, MJ_VNIL);
	assert_int_equal(mj_value_opaque(&v, "thread"), MJ_OK);
	assert_int_equal(mj_proto_from_value(&v, &pv), MJ_OK);
	assert_int_equal(mj_proto_to_value(pv, &back, why, sizeof(why)), MJ_OK);
	assert_true(mj_value_equal(&v, &back));
	mj_value_free(&back);
	mj_value_free(&v);
	mj_proto_pvalue_free(pv);
}

static void
test_bad_keys(void **state)
{
	Moonjail__V1__Value root = MOONJAIL__V1__VALUE__INIT, key = MOONJAIL__V1__VALUE__INIT;
	Moonjail__V1__Map map = MOONJAIL__V1__MAP__INIT;
	Moonjail__V1__Entry entry = MOONJAIL__V1__ENTRY__INIT, *entries[1] = {&entry};
	Moonjail__V1__Array arr = MOONJAIL__V1__ARRAY__INIT;
	mj_value v;
	char why[128];

	(void)state;
	root.kind_case = MOONJAIL__V1__VALUE__KIND_MAP;
	root.map = &map;
	map.n_entries = 1;
	map.entries = entries;
	assert_int_equal(mj_proto_to_value(&root, &v, why, sizeof(why)), MJ_EINVAL);
	assert_non_null(strstr(why, "without a key"));
	entry.key = &key;
	key.kind_case = MOONJAIL__V1__VALUE__KIND_FLOAT;
	key.float_ = NAN;
	assert_int_equal(mj_proto_to_value(&root, &v, why, sizeof(why)), MJ_EINVAL);
	assert_non_null(strstr(why, "NaN"));
	key.kind_case = MOONJAIL__V1__VALUE__KIND_ARRAY;
	key.array = &arr;
	assert_int_equal(mj_proto_to_value(&root, &v, why, sizeof(why)), MJ_EINVAL);
	key.kind_case = MOONJAIL__V1__VALUE__KIND_NIL;
	assert_int_equal(mj_proto_to_value(&root, &v, why, sizeof(why)), MJ_EINVAL);
	key.kind_case = MOONJAIL__V1__VALUE__KIND_INTEGER;
	key.integer = 3;
	assert_int_equal(mj_proto_to_value(&root, &v, why, sizeof(why)), MJ_OK);
	assert_int_equal(v.u.m.vals[0].type, MJ_VNIL);
	mj_value_free(&v);
}

static void
test_kinds(void **state)
{
	int i;

	(void)state;
	for (i = MJ_KIND_NONE; i <= MJ_KIND_INTERNAL; i++)
		assert_int_equal(mj_proto_kind_from(mj_proto_kind((mj_kind)i)), i);
	assert_int_equal(mj_proto_kind(MJ_KIND_ENGINE_LOST),
	                 MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST);
	assert_int_equal(mj_proto_kind_from((Moonjail__V1__ErrorKind)99), MJ_KIND_INTERNAL);
}

static void
test_limits(void **state)
{
	Moonjail__V1__Limits *pl = NULL;
	Moonjail__V1__Limit mem = MOONJAIL__V1__LIMIT__INIT;
	Moonjail__V1__Limits partial = MOONJAIL__V1__LIMITS__INIT;
	ProtobufCMessage *m = NULL;
	mj_limits want, got;
	uint8_t *buf;
	size_t len;
	char why[64];

	(void)state;
	mj_limits_default(&want);
	want.instructions = 0;
	want.timeout_ms = 250;
	want.result_depth = 9;
	assert_int_equal(mj_proto_limits_from(&want, &pl), MJ_OK);
	assert_int_equal(mj_proto_pack(&pl->base, &buf, &len), MJ_OK);
	mj_proto_free(&pl->base);
	assert_int_equal(mj_proto_unpack(&moonjail__v1__limits__descriptor, buf, len, NULL, &m, why,
	                                 sizeof(why)),
	                 MJ_OK);
	memset(&got, 0xff, sizeof(got));
	mj_proto_limits_apply((Moonjail__V1__Limits *)m, &got);
	assert_int_equal(got.memory, want.memory);
	assert_true(got.instructions == want.instructions);
	assert_int_equal(got.timeout_ms, want.timeout_ms);
	assert_int_equal(got.output, want.output);
	assert_int_equal(got.source, want.source);
	assert_int_equal(got.result_bytes, want.result_bytes);
	assert_int_equal(got.result_depth, want.result_depth);
	assert_int_equal(got.result_items, want.result_items);
	mj_proto_free(m);
	mj_free(buf);
	/* Absent fields leave the defaults alone; NULL changes nothing. */
	mem.value = 12345678;
	partial.memory = &mem;
	mj_limits_default(&got);
	mj_proto_limits_apply(&partial, &got);
	mj_proto_limits_apply(NULL, &got);
	assert_int_equal(got.memory, 12345678);
	assert_int_equal(got.timeout_ms, 1000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_round_trip),
	    cmocka_unit_test(test_truncated_and_garbage),
	    cmocka_unit_test(test_deep_nesting_is_refused),
	    cmocka_unit_test(test_caps_and_budget),
	    cmocka_unit_test(test_value_round_trip),
	    cmocka_unit_test(test_bad_keys),
	    cmocka_unit_test(test_kinds),
	    cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
