/* Writes the binary seed corpus of fuzz_request and fuzz_value: fuzz_seeds DIR writes
 * DIR/request/seed-*.bin and DIR/value/seed-*.bin (the committed ones came from here). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mj/proto.h"

static const char *outdir;

static void
die(const char *what)
{
	fprintf(stderr, "fuzz_seeds: %s\n", what);
	exit(1);
}

static void
write_file(const char *sub, const char *name, const uint8_t *buf, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/seed-%s.bin", outdir, sub, name);
	if ((f = fopen(path, "wb")) == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		die(path);
}

static void
write_msg(const char *sub, const char *name, const ProtobufCMessage *m)
{
	uint8_t *buf;
	size_t len;

	if (mj_proto_pack(m, &buf, &len) != MJ_OK)
		die("cannot pack");
	write_file(sub, name, buf, len);
	mj_free(buf);
}

static void
set_string(mj_value *v, const char *s, size_t len)
{
	if (mj_value_string(v, s, len) != MJ_OK)
		die("out of memory");
}

/* A map holding one of every kind, awkward strings and every kind of key. */
static void
make_tree(mj_value *v)
{
	mj_value *arr;

	if (mj_value_map(v, 7) != MJ_OK)
		die("out of memory");
	set_string(&v->u.m.keys[0], "list", 4);
	arr = &v->u.m.vals[0];
	if (mj_value_array(arr, 9) != MJ_OK)
		die("out of memory");
	mj_value_nil(&arr->u.a.items[0]);
	mj_value_bool(&arr->u.a.items[1], true);
	mj_value_int(&arr->u.a.items[2], INT64_MIN);
	mj_value_float(&arr->u.a.items[3], -0.0);
	mj_value_float(&arr->u.a.items[4], NAN);
	mj_value_float(&arr->u.a.items[5], 1e300 * 1e10);
	set_string(&arr->u.a.items[6], "nul\0\xff\xc3\xa9\xed\xa0\x80\"\\\n", 13);
	if (mj_value_opaque(&arr->u.a.items[7], "function") != MJ_OK)
		die("out of memory");
	mj_value_float(&arr->u.a.items[8], 5e-324);
	mj_value_int(&v->u.m.keys[1], -7);
	set_string(&v->u.m.vals[1], "", 0);
	mj_value_float(&v->u.m.keys[2], 2.5);
	mj_value_int(&v->u.m.vals[2], INT64_MAX);
	mj_value_bool(&v->u.m.keys[3], false);
	if (mj_value_map(&v->u.m.vals[3], 0) != MJ_OK)
		die("out of memory");
	set_string(&v->u.m.keys[4], "\xf0\x9f\x8c\x99", 4);
	mj_value_float(&v->u.m.vals[4], 0.1);
	mj_value_float(&v->u.m.keys[5], -0.0);
	mj_value_float(&v->u.m.vals[5], 1.0);
	set_string(&v->u.m.keys[6], "array", 5);
	if (mj_value_array(&v->u.m.vals[6], 0) != MJ_OK)
		die("out of memory");
}

/* Arrays nested depth levels deep around an integer. */
static void
make_deep(mj_value *v, int depth)
{
	if (depth == 0) {
		mj_value_int(v, 1);
		return;
	}
	if (mj_value_array(v, 1) != MJ_OK)
		die("out of memory");
	make_deep(&v->u.a.items[0], depth - 1);
}

static mj_pvalue *
to_wire(const mj_value *v)
{
	mj_pvalue *pv;

	if (mj_proto_from_value(v, &pv) != MJ_OK)
		die("cannot convert a value");
	return pv;
}

static void
value_seeds(void)
{
	mj_value v;
	mj_pvalue *pv;
	Moonjail__V1__Value bad = MOONJAIL__V1__VALUE__INIT;
	Moonjail__V1__Value key = MOONJAIL__V1__VALUE__INIT;
	Moonjail__V1__Map map = MOONJAIL__V1__MAP__INIT, empty = MOONJAIL__V1__MAP__INIT;
	Moonjail__V1__Entry entry = MOONJAIL__V1__ENTRY__INIT, *entries[1] = {&entry};
	static const uint8_t garbage[] = {0x2a, 0x05, 'a', 'b'};

	make_tree(&v);
	write_msg("value", "tree", &(pv = to_wire(&v))->base);
	mj_proto_pvalue_free(pv);
	mj_value_free(&v);
	make_deep(&v, 60);
	write_msg("value", "deep", &(pv = to_wire(&v))->base);
	mj_proto_pvalue_free(pv);
	mj_value_free(&v);
	set_string(&v, "plain text", 10);
	write_msg("value", "string", &(pv = to_wire(&v))->base);
	mj_proto_pvalue_free(pv);
	mj_value_free(&v);

	/* A map whose key is NaN: refused with a reason. */
	key.kind_case = MOONJAIL__V1__VALUE__KIND_FLOAT;
	key.float_ = NAN;
	entry.key = &key;
	map.n_entries = 1;
	map.entries = entries;
	bad.kind_case = MOONJAIL__V1__VALUE__KIND_MAP;
	bad.map = &map;
	write_msg("value", "nan-key", &bad.base);
	/* A key that is a table, and an entry without a key. */
	key.kind_case = MOONJAIL__V1__VALUE__KIND_MAP;
	key.map = &empty;
	write_msg("value", "table-key", &bad.base);
	entry.key = NULL;
	write_msg("value", "no-key", &bad.base);
	write_file("value", "truncated", garbage, sizeof(garbage));
	write_file("value", "size-16M", (const uint8_t *)"16M", 3);
	write_file("value", "size-max", (const uint8_t *)"18446744073709551615", 20);
	write_file("value", "size-over", (const uint8_t *)"18446744073709551616", 20);
}

static Moonjail__V1__Limit *
limit(Moonjail__V1__Limit *l, uint64_t v)
{
	moonjail__v1__limit__init(l);
	l->value = v;
	return l;
}

static void
request_seeds(void)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;
	Moonjail__V1__Run run = MOONJAIL__V1__RUN__INIT;
	Moonjail__V1__Create cr = MOONJAIL__V1__CREATE__INIT;
	Moonjail__V1__Limits lim = MOONJAIL__V1__LIMITS__INIT;
	Moonjail__V1__Limit ls[8];
	Moonjail__V1__SetNamespace sn = MOONJAIL__V1__SET_NAMESPACE__INIT;
	Moonjail__V1__UnsetNamespace un = MOONJAIL__V1__UNSET_NAMESPACE__INIT;
	Moonjail__V1__Ping ping = MOONJAIL__V1__PING__INIT;
	Moonjail__V1__Reset reset = MOONJAIL__V1__RESET__INIT;
	Moonjail__V1__StatsRequest stats = MOONJAIL__V1__STATS_REQUEST__INIT;
	Moonjail__Internal__V1__WorkerRequest wr = MOONJAIL__INTERNAL__V1__WORKER_REQUEST__INIT;
	Moonjail__Internal__V1__TenantPolicy tp = MOONJAIL__INTERNAL__V1__TENANT_POLICY__INIT;
	Moonjail__V1__Response resp = MOONJAIL__V1__RESPONSE__INIT;
	Moonjail__V1__Error err = MOONJAIL__V1__ERROR__INIT;
	Moonjail__V1__Stats st = MOONJAIL__V1__STATS__INIT;
	static char *modules[] = {"json"};
	static const char src[] = "local t = {} for i = 1, 10 do t[i] = i * i end return t, #t";
	static const char run_src[] = "print('hi\\0\\255')";
	mj_pvalue *values[2];
	uint8_t *inner;
	size_t inner_len;
	mj_value v;

	req.version = MJ_PROTO_VERSION;
	req.id = 42;
	req.tenant = "acme";
	req.engine = "default";

	req.op_case = MOONJAIL__V1__REQUEST__OP_PING;
	req.ping = &ping;
	write_msg("request", "ping", &req.base);
	req.op_case = MOONJAIL__V1__REQUEST__OP_RESET;
	req.reset = &reset;
	write_msg("request", "reset", &req.base);
	req.op_case = MOONJAIL__V1__REQUEST__OP_STATS;
	req.stats = &stats;
	write_msg("request", "stats", &req.base);

	ev.source.data = (uint8_t *)src;
	ev.source.len = sizeof(src) - 1;
	ev.chunk_name = "main";
	req.op_case = MOONJAIL__V1__REQUEST__OP_EVAL;
	req.eval = &ev;
	write_msg("request", "eval", &req.base);
	run.source.data = (uint8_t *)run_src;
	run.source.len = sizeof(run_src) - 1;
	req.op_case = MOONJAIL__V1__REQUEST__OP_RUN;
	req.run = &run;
	write_msg("request", "run", &req.base);

	lim.memory = limit(&ls[0], 4u << 20);
	lim.instructions = limit(&ls[1], 0);
	lim.timeout_ms = limit(&ls[2], 5000000000u);
	lim.output = limit(&ls[3], 1);
	lim.source = limit(&ls[4], 1u << 20);
	lim.result_bytes = limit(&ls[5], 1u << 20);
	lim.result_depth = limit(&ls[6], 201);
	lim.result_items = limit(&ls[7], UINT64_MAX);
	cr.limits = &lim;
	cr.n_modules = 1;
	cr.modules = modules;
	cr.prelude.data = (uint8_t *)"function inc(x) return x + 1 end";
	cr.prelude.len = 32;
	req.op_case = MOONJAIL__V1__REQUEST__OP_CREATE;
	req.create = &cr;
	write_msg("request", "create", &req.base);

	make_tree(&v);
	sn.name = "config";
	sn.value = to_wire(&v);
	mj_value_free(&v);
	req.op_case = MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE;
	req.set_namespace = &sn;
	write_msg("request", "set-namespace", &req.base);
	un.name = "config";
	req.op_case = MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE;
	req.unset_namespace = &un;
	write_msg("request", "unset-namespace", &req.base);

	/* What moonjaild forwards to a worker. */
	req.op_case = MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE;
	req.set_namespace = &sn;
	if (mj_proto_pack(&req.base, &inner, &inner_len) != MJ_OK)
		die("cannot pack");
	wr.request.data = inner;
	wr.request.len = inner_len;
	tp.defaults = &lim;
	tp.max = &lim;
	tp.max_engines = 8;
	tp.max_memory = 64u << 20;
	wr.policy = &tp;
	write_msg("request", "worker-set-namespace", &wr.base);
	mj_free(inner);
	mj_proto_pvalue_free(sn.value);

	req.op_case = MOONJAIL__V1__REQUEST__OP_EVAL;
	req.eval = &ev;
	if (mj_proto_pack(&req.base, &inner, &inner_len) != MJ_OK)
		die("cannot pack");
	wr.request.data = inner;
	wr.request.len = inner_len;
	wr.policy = NULL;
	write_msg("request", "worker-eval", &wr.base);
	mj_free(inner);

	/* Responses, as the client decodes them. */
	make_deep(&v, 5);
	values[0] = to_wire(&v);
	mj_value_free(&v);
	set_string(&v, "ok", 2);
	values[1] = to_wire(&v);
	mj_value_free(&v);
	resp.id = 42;
	resp.n_values = 2;
	resp.values = values;
	resp.output.data = (uint8_t *)"hello\n";
	resp.output.len = 6;
	st.instructions = 1000;
	st.memory_limit = 16u << 20;
	resp.stats = &st;
	resp.engine_created = 1;
	write_msg("request", "response-ok", &resp.base);
	mj_proto_pvalue_free(values[0]);
	mj_proto_pvalue_free(values[1]);
	resp.n_values = 0;
	resp.values = NULL;
	resp.status = MOONJAIL__V1__STATUS__STATUS_ERROR;
	err.kind = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_RUNTIME;
	err.message = "script:1: boom";
	err.line = 1;
	err.traceback = "stack traceback:\n\t[C]: in ?";
	resp.error = &err;
	resp.engine_reset = 1;
	write_msg("request", "response-error", &resp.base);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fuzz_seeds DIR (writes DIR/request and DIR/value)\n");
		return 2;
	}
	outdir = argv[1];
	value_seeds();
	request_seeds();
	return 0;
}
