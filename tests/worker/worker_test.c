/* Integration tests of moonjail-worker: the real binary, with the test as its supervisor. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "mj/proto.h"

#ifndef MOONJAIL_WORKER_BIN
#error "MOONJAIL_WORKER_BIN must name the moonjail-worker binary"
#endif

extern char **environ;

/* Generous for ASan builds; a healthy worker answers in milliseconds. */
#define RECV_TIMEOUT_MS 15000

typedef struct fx {
	char dir[64];
	char path[128];
	char url[160];
	nng_socket sock;
	bool open;
	pid_t pid;
	uint64_t next_id;
} fx;

/* The tenant policy sent with each request; tests change it before calling. */
typedef struct pol {
	mj_limits defaults;
	mj_limits max;
	uint32_t max_engines;
	uint64_t max_memory;
} pol;

static pol P;

static void
pol_reset(void)
{
	mj_limits_default(&P.defaults);
	P.max = P.defaults;
	P.max.memory = 32u << 20;
	P.max_engines = 0;
	P.max_memory = 0;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static bool
child_alive(fx *f)
{
	int st;

	return f->pid > 0 && waitpid(f->pid, &st, WNOHANG) == 0;
}

static int
start_worker(void **state, const char *const *extra)
{
	fx *f = calloc(1, sizeof(*f));
	const char *argv[16];
	size_t n = 0;

	pol_reset();
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/mjworkerXXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/w.sock", f->dir);
	snprintf(f->url, sizeof(f->url), "ipc://%s", f->path);
	assert_int_equal(nng_req0_open(&f->sock), 0);
	f->open = true;
	assert_int_equal(nng_socket_set_ms(f->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE),
	                 0);
	assert_int_equal(nng_socket_set_ms(f->sock, NNG_OPT_RECVTIMEO, RECV_TIMEOUT_MS), 0);
	assert_int_equal(nng_socket_set_ms(f->sock, NNG_OPT_SENDTIMEO, RECV_TIMEOUT_MS), 0);
	assert_int_equal(nng_socket_set_size(f->sock, NNG_OPT_RECVMAXSZ, 32u << 20), 0);
	assert_int_equal(nng_listen(f->sock, f->url, NULL, 0), 0);
	argv[n++] = MOONJAIL_WORKER_BIN;
	argv[n++] = "--connect";
	argv[n++] = f->url;
	argv[n++] = "--id";
	argv[n++] = "7";
	for (; extra != NULL && *extra != NULL && n < 15; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	assert_int_equal(
	    posix_spawn(&f->pid, MOONJAIL_WORKER_BIN, NULL, NULL, (char *const *)argv, environ), 0);
	f->next_id = 1;
	*state = f;
	return 0;
}

static int
setup(void **state)
{
	return start_worker(state, NULL);
}

static int
setup_two_executors(void **state)
{
	static const char *const extra[] = {"--executors", "2", "--contexts", "8", NULL};
	return start_worker(state, extra);
}

static int
setup_small_budget(void **state)
{
	static const char *const extra[] = {"--memory-budget", "1500K", NULL};
	return start_worker(state, extra);
}

static int
teardown(void **state)
{
	fx *f = *state;
	int st;

	if (f == NULL)
		return 0;
	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, &st, 0);
	}
	if (f->open)
		nng_close(f->sock);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	*state = NULL;
	return 0;
}

/* ---- building requests ---- */

static Moonjail__V1__Limits *
wire_limits(const mj_limits *l)
{
	Moonjail__V1__Limits *pl = NULL;

	assert_int_equal(mj_proto_limits_from(l, &pl), MJ_OK);
	return pl;
}

/* Wraps a packed client Request into a packed WorkerRequest carrying P. */
static void
wrap_request(const uint8_t *req, size_t reqlen, uint8_t **out, size_t *outlen)
{
	Moonjail__Internal__V1__WorkerRequest wr = MOONJAIL__INTERNAL__V1__WORKER_REQUEST__INIT;
	Moonjail__Internal__V1__TenantPolicy tp = MOONJAIL__INTERNAL__V1__TENANT_POLICY__INIT;

	tp.defaults = wire_limits(&P.defaults);
	tp.max = wire_limits(&P.max);
	tp.max_engines = P.max_engines;
	tp.max_memory = P.max_memory;
	wr.request.data = (uint8_t *)req;
	wr.request.len = reqlen;
	wr.policy = &tp;
	assert_int_equal(mj_proto_pack(&wr.base, out, outlen), MJ_OK);
	mj_proto_free(&tp.defaults->base);
	mj_proto_free(&tp.max->base);
}

static void
pack_call(fx *f, const char *tenant, const char *engine, Moonjail__V1__Request__OpCase op,
          void *msg, uint8_t **out, size_t *outlen)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	uint8_t *inner;
	size_t innerlen;

	req.version = MJ_PROTO_VERSION;
	req.id = f->next_id++;
	req.tenant = (char *)tenant;
	req.engine = (char *)(engine != NULL ? engine : "");
	req.op_case = op;
	switch (op) {
	case MOONJAIL__V1__REQUEST__OP_EVAL:
		req.eval = msg;
		break;
	case MOONJAIL__V1__REQUEST__OP_RUN:
		req.run = msg;
		break;
	case MOONJAIL__V1__REQUEST__OP_RESET:
		req.reset = msg;
		break;
	case MOONJAIL__V1__REQUEST__OP_DESTROY:
		req.destroy = msg;
		break;
	case MOONJAIL__V1__REQUEST__OP_CREATE:
		req.create = msg;
		break;
	case MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE:
		req.set_namespace = msg;
		break;
	case MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE:
		req.unset_namespace = msg;
		break;
	case MOONJAIL__V1__REQUEST__OP_STATS:
		req.stats = msg;
		break;
	case MOONJAIL__V1__REQUEST__OP_PING:
		req.ping = msg;
		break;
	default:
		break;
	}
	assert_int_equal(mj_proto_pack(&req.base, &inner, &innerlen), MJ_OK);
	wrap_request(inner, innerlen, out, outlen);
	mj_free(inner);
}

static Moonjail__V1__Response *
decode(void *buf, size_t len)
{
	Moonjail__V1__Response *r = moonjail__v1__response__unpack(NULL, len, buf);

	assert_non_null(r);
	return r;
}

/* Sends raw bytes as one message and returns the decoded reply. */
static Moonjail__V1__Response *
raw(fx *f, const void *buf, size_t len)
{
	Moonjail__V1__Response *r;
	void *rbuf = NULL;
	size_t rlen = 0;
	int rv;

	assert_int_equal(nng_send(f->sock, (void *)buf, len, 0), 0);
	rv = nng_recv(f->sock, &rbuf, &rlen, NNG_FLAG_ALLOC);
	if (rv != 0)
		fail_msg("no reply from the worker: %s", nng_strerror(rv));
	r = decode(rbuf, rlen);
	nng_free(rbuf, rlen);
	return r;
}

static Moonjail__V1__Response *
call(fx *f, const char *tenant, const char *engine, Moonjail__V1__Request__OpCase op, void *msg)
{
	Moonjail__V1__Response *r;
	uint8_t *buf;
	size_t len;

	pack_call(f, tenant, engine, op, msg, &buf, &len);
	r = raw(f, buf, len);
	mj_free(buf);
	return r;
}

static Moonjail__V1__Response *
eval(fx *f, const char *tenant, const char *engine, const char *src)
{
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;

	ev.source.data = (uint8_t *)src;
	ev.source.len = strlen(src);
	return call(f, tenant, engine, MOONJAIL__V1__REQUEST__OP_EVAL, &ev);
}

static Moonjail__V1__Response *
simple(fx *f, const char *tenant, const char *engine, Moonjail__V1__Request__OpCase op)
{
	/* Every empty operation message has the same layout: just the base. */
	Moonjail__V1__Ping empty = MOONJAIL__V1__PING__INIT;

	switch (op) {
	case MOONJAIL__V1__REQUEST__OP_RESET: {
		static Moonjail__V1__Reset m = MOONJAIL__V1__RESET__INIT;
		return call(f, tenant, engine, op, &m);
	}
	case MOONJAIL__V1__REQUEST__OP_DESTROY: {
		static Moonjail__V1__Destroy m = MOONJAIL__V1__DESTROY__INIT;
		return call(f, tenant, engine, op, &m);
	}
	case MOONJAIL__V1__REQUEST__OP_STATS: {
		static Moonjail__V1__StatsRequest m = MOONJAIL__V1__STATS_REQUEST__INIT;
		return call(f, tenant, engine, op, &m);
	}
	default:
		return call(f, tenant, engine, op, &empty);
	}
}

static void
free_resp(Moonjail__V1__Response *r)
{
	moonjail__v1__response__free_unpacked(r, NULL);
}

static void
assert_ok(const Moonjail__V1__Response *r)
{
	if (r->status != MOONJAIL__V1__STATUS__STATUS_OK)
		fail_msg("expected OK, got error kind %d: %s", r->error ? (int)r->error->kind : -1,
		         r->error && r->error->message ? r->error->message : "");
}

static void
assert_kind(const Moonjail__V1__Response *r, mj_kind kind)
{
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_ERROR);
	assert_non_null(r->error);
	if (r->error->kind != mj_proto_kind(kind))
		fail_msg("expected kind %s, got %d: %s", mj_kind_name(kind), (int)r->error->kind,
		         r->error->message ? r->error->message : "");
	assert_non_null(r->error->message);
	assert_true(strlen(r->error->message) > 0);
}

static int64_t
int_value(const Moonjail__V1__Response *r, size_t i)
{
	assert_true(r->n_values > i);
	assert_int_equal(r->values[i]->kind_case, MOONJAIL__V1__VALUE__KIND_INTEGER);
	return r->values[i]->integer;
}

static bool
is_nil(const Moonjail__V1__Response *r, size_t i)
{
	assert_true(r->n_values > i);
	return r->values[i]->kind_case == MOONJAIL__V1__VALUE__KIND__NOT_SET ||
	       r->values[i]->kind_case == MOONJAIL__V1__VALUE__KIND_NIL;
}

/* Evaluates src and expects one integer result. */
static void
expect_int(fx *f, const char *tenant, const char *engine, const char *src, int64_t want)
{
	Moonjail__V1__Response *r = eval(f, tenant, engine, src);

	assert_ok(r);
	assert_int_equal(int_value(r, 0), want);
	free_resp(r);
}

static Moonjail__V1__Response *
create(fx *f, const char *tenant, const char *engine, const mj_limits *l, const char *module,
       const char *prelude)
{
	Moonjail__V1__Create cr = MOONJAIL__V1__CREATE__INIT;
	Moonjail__V1__Response *r;
	char *mods[1];

	if (l != NULL)
		cr.limits = wire_limits(l);
	if (module != NULL) {
		mods[0] = (char *)module;
		cr.modules = mods;
		cr.n_modules = 1;
	}
	if (prelude != NULL) {
		cr.prelude.data = (uint8_t *)prelude;
		cr.prelude.len = strlen(prelude);
	}
	r = call(f, tenant, engine, MOONJAIL__V1__REQUEST__OP_CREATE, &cr);
	if (cr.limits != NULL)
		mj_proto_free(&cr.limits->base);
	return r;
}

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

/* Wraps buf[0..*len) as length-delimited field `field` of an outer message, in place. */
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

/* ---- tests ---- */

static void
test_eval_values_output_stats(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;

	r = eval(f, "acme", NULL, "print('hi') return 1, 'two', {a = 1}, 2.5");
	assert_ok(r);
	assert_int_equal(r->id, f->next_id - 1);
	assert_true(r->engine_created);
	assert_false(r->engine_reset);
	assert_int_equal(r->n_values, 4);
	assert_int_equal(int_value(r, 0), 1);
	assert_int_equal(r->values[1]->kind_case, MOONJAIL__V1__VALUE__KIND_STRING);
	assert_memory_equal(r->values[1]->string.data, "two", 3);
	assert_int_equal(r->values[2]->kind_case, MOONJAIL__V1__VALUE__KIND_MAP);
	assert_int_equal(r->values[3]->kind_case, MOONJAIL__V1__VALUE__KIND_FLOAT);
	assert_int_equal(r->output.len, 3);
	assert_memory_equal(r->output.data, "hi\n", 3);
	assert_non_null(r->stats);
	assert_true(r->stats->memory_current > 0);
	assert_int_equal(r->stats->memory_limit, 16u << 20);
	assert_int_equal(r->stats->timeout_ms, 1000);
	assert_int_equal(r->stats->engines, 1);
	free_resp(r);

	r = eval(f, "acme", "default", "return 1");
	assert_ok(r);
	assert_false(r->engine_created);
	free_resp(r);
}

static void
test_run_and_state_persists(void **state)
{
	fx *f = *state;
	Moonjail__V1__Run run = MOONJAIL__V1__RUN__INIT;
	Moonjail__V1__Response *r;
	const char *src = "x = 41 function inc(v) return v + 1 end return 99";

	run.source.data = (uint8_t *)src;
	run.source.len = strlen(src);
	r = call(f, "acme", "main", MOONJAIL__V1__REQUEST__OP_RUN, &run);
	assert_ok(r);
	assert_int_equal(r->n_values, 0);
	free_resp(r);
	expect_int(f, "acme", "main", "return inc(x)", 42);
	expect_int(f, "acme", "main", "x = x + 1 return x", 42);
	expect_int(f, "acme", "main", "return x", 42);
}

static void
test_tenants_and_engines_isolated(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;

	expect_int(f, "a", NULL, "secret = 7 return secret", 7);
	r = eval(f, "b", NULL, "return secret");
	assert_ok(r);
	assert_true(is_nil(r, 0));
	free_resp(r);
	r = eval(f, "a", "other", "return secret");
	assert_ok(r);
	assert_true(is_nil(r, 0));
	free_resp(r);
	expect_int(f, "a", "default", "return secret", 7);
}

static void
test_error_kinds(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;
	mj_limits l;

	r = eval(f, "t", NULL, "return +");
	assert_kind(r, MJ_KIND_SYNTAX);
	free_resp(r);

	r = eval(f, "t", NULL, "local x = 1\nerror('boom')\n");
	assert_kind(r, MJ_KIND_RUNTIME);
	assert_int_equal(r->error->line, 2);
	assert_non_null(strstr(r->error->message, "boom"));
	assert_true(r->error->traceback != NULL && strlen(r->error->traceback) > 0);
	free_resp(r);

	mj_limits_default(&l);
	l.memory = 1u << 20;
	r = create(f, "t", "mem", &l, NULL, NULL);
	assert_ok(r);
	free_resp(r);
	r = eval(f, "t", "mem", "local t = {} for i = 1, 1e8 do t[i] = i end");
	assert_kind(r, MJ_KIND_MEMORY);
	assert_true(r->engine_reset);
	free_resp(r);

	mj_limits_default(&l);
	l.instructions = 10000;
	r = create(f, "t", "ins", &l, NULL, NULL);
	assert_ok(r);
	free_resp(r);
	r = eval(f, "t", "ins", "while true do end");
	assert_kind(r, MJ_KIND_INSTRUCTIONS);
	free_resp(r);

	mj_limits_default(&l);
	l.instructions = 0;
	l.timeout_ms = 100;
	r = create(f, "t", "slow", &l, NULL, NULL);
	assert_ok(r);
	free_resp(r);
	r = eval(f, "t", "slow", "while true do end");
	assert_kind(r, MJ_KIND_TIMEOUT);
	free_resp(r);

	mj_limits_default(&l);
	l.output = 100;
	l.source = 200;
	r = create(f, "t", "small", &l, NULL, NULL);
	assert_ok(r);
	free_resp(r);
	r = eval(f, "t", "small", "print(string.rep('x', 1000))");
	assert_kind(r, MJ_KIND_OUTPUT);
	free_resp(r);
	{
		char src[400];
		memset(src, ' ', sizeof(src) - 1);
		src[sizeof(src) - 1] = '\0';
		r = eval(f, "t", "small", src);
		assert_kind(r, MJ_KIND_BAD_REQUEST);
		free_resp(r);
	}

	P.max_engines = 5;
	r = eval(f, "t", "one-too-many", "return 1");
	assert_kind(r, MJ_KIND_QUOTA);
	free_resp(r);
	/* Still serving the tenant's existing engines. */
	expect_int(f, "t", "small", "return 5", 5);
}

static void
test_create_clamps_and_validates(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;
	mj_limits l;

	mj_limits_default(&l);
	l.memory = (size_t)1 << 30;
	l.timeout_ms = 100000;
	l.instructions = 0;
	r = create(f, "c", "big", &l, NULL, NULL);
	assert_ok(r);
	assert_true(r->engine_created);
	free_resp(r);
	r = simple(f, "c", "big", MOONJAIL__V1__REQUEST__OP_STATS);
	assert_ok(r);
	assert_non_null(r->stats);
	assert_int_equal(r->stats->memory_limit, 32u << 20);
	assert_int_equal(r->stats->timeout_ms, 1000);
	assert_int_equal(r->stats->instruction_limit, P.max.instructions);
	assert_int_equal(r->stats->engines, 1);
	free_resp(r);

	r = create(f, "c", "big", NULL, NULL, NULL);
	assert_kind(r, MJ_KIND_BAD_REQUEST);
	assert_non_null(strstr(r->error->message, "exists"));
	free_resp(r);

	r = create(f, "c", "mods", NULL, "socket", NULL);
	assert_kind(r, MJ_KIND_BAD_REQUEST);
	free_resp(r);

	mj_limits_default(&l);
	l.memory = 0;
	r = create(f, "c", "zero", &l, NULL, NULL);
	assert_kind(r, MJ_KIND_BAD_REQUEST);
	free_resp(r);

	r = simple(f, "c", NULL, MOONJAIL__V1__REQUEST__OP_STATS);
	assert_ok(r);
	assert_int_equal(r->stats->engines, 1);
	free_resp(r);
}

static void
test_create_modules_and_prelude(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;

	r = create(f, "p", "js", NULL, "json", "function double(x) return 2 * x end");
	assert_ok(r);
	assert_true(r->engine_created);
	free_resp(r);
	expect_int(f, "p", "js", "return double(21)", 42);
	r = eval(f, "p", "js", "return require('json').encode({1, 2})");
	assert_ok(r);
	assert_int_equal(r->values[0]->kind_case, MOONJAIL__V1__VALUE__KIND_STRING);
	assert_memory_equal(r->values[0]->string.data, "[1,2]", 5);
	free_resp(r);
	/* Engines made on first use get no modules. */
	r = eval(f, "p", "plain", "return require('json')");
	assert_kind(r, MJ_KIND_RUNTIME);
	free_resp(r);

	r = create(f, "p", "broken", NULL, NULL, "x = 1\nerror('nope')");
	assert_kind(r, MJ_KIND_RUNTIME);
	assert_int_equal(r->error->line, 2);
	assert_false(r->engine_created);
	free_resp(r);
	r = eval(f, "p", "broken", "return x");
	assert_ok(r);
	assert_true(r->engine_created);
	assert_true(is_nil(r, 0));
	free_resp(r);
}

static void
test_namespaces(void **state)
{
	fx *f = *state;
	Moonjail__V1__SetNamespace set = MOONJAIL__V1__SET_NAMESPACE__INIT;
	Moonjail__V1__UnsetNamespace unset = MOONJAIL__V1__UNSET_NAMESPACE__INIT;
	Moonjail__V1__Response *r;
	mj_value v;
	mj_pvalue *pv;

	assert_int_equal(mj_value_map(&v, 1), MJ_OK);
	assert_int_equal(mj_value_string(&v.u.m.keys[0], "total", 5), MJ_OK);
	mj_value_int(&v.u.m.vals[0], 5);
	assert_int_equal(mj_proto_from_value(&v, &pv), MJ_OK);
	mj_value_free(&v);
	set.name = "Order";
	set.value = pv;
	r = call(f, "n", NULL, MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE, &set);
	assert_ok(r);
	assert_true(r->engine_created);
	free_resp(r);
	expect_int(f, "n", NULL, "return Order.total * 2", 10);
	r = eval(f, "n", NULL, "Order.total = 1");
	assert_kind(r, MJ_KIND_RUNTIME);
	free_resp(r);

	set.name = "not a name";
	r = call(f, "n", NULL, MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE, &set);
	assert_kind(r, MJ_KIND_BAD_REQUEST);
	free_resp(r);
	mj_proto_pvalue_free(pv);

	unset.name = "Order";
	r = call(f, "n", NULL, MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE, &unset);
	assert_ok(r);
	free_resp(r);
	r = eval(f, "n", NULL, "return Order");
	assert_ok(r);
	assert_true(is_nil(r, 0));
	free_resp(r);
	r = call(f, "n", NULL, MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE, &unset);
	assert_kind(r, MJ_KIND_BAD_REQUEST);
	free_resp(r);
}

static void
test_reset_and_destroy(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;

	expect_int(f, "r", NULL, "x = 1 return x", 1);
	r = simple(f, "r", NULL, MOONJAIL__V1__REQUEST__OP_RESET);
	assert_ok(r);
	assert_true(r->engine_reset);
	free_resp(r);
	r = eval(f, "r", NULL, "return x");
	assert_ok(r);
	assert_false(r->engine_created);
	assert_true(is_nil(r, 0));
	free_resp(r);

	expect_int(f, "r", NULL, "x = 2 return x", 2);
	r = simple(f, "r", NULL, MOONJAIL__V1__REQUEST__OP_DESTROY);
	assert_ok(r);
	free_resp(r);
	r = simple(f, "r", NULL, MOONJAIL__V1__REQUEST__OP_STATS);
	assert_ok(r);
	assert_int_equal(r->stats->engines, 0);
	free_resp(r);
	/* Destroying what does not exist is not an error: the outcome is the same. */
	r = simple(f, "r", NULL, MOONJAIL__V1__REQUEST__OP_DESTROY);
	assert_ok(r);
	free_resp(r);
	r = eval(f, "r", NULL, "return x");
	assert_ok(r);
	assert_true(r->engine_created);
	assert_true(is_nil(r, 0));
	free_resp(r);
}

static void
test_stats_and_ping(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;

	r = simple(f, "s", NULL, MOONJAIL__V1__REQUEST__OP_PING);
	assert_ok(r);
	free_resp(r);
	r = simple(f, "s", NULL, MOONJAIL__V1__REQUEST__OP_STATS);
	assert_ok(r);
	assert_int_equal(r->stats->engines, 0);
	assert_int_equal(r->stats->memory_current, 0);
	free_resp(r);
	expect_int(f, "s", "e1", "big = string.rep('x', 100000) return #big", 100000);
	expect_int(f, "s", "e2", "return 1", 1);
	r = simple(f, "s", "e1", MOONJAIL__V1__REQUEST__OP_STATS);
	assert_ok(r);
	assert_int_equal(r->stats->engines, 2);
	assert_true(r->stats->memory_current > 100000);
	assert_int_equal(r->stats->memory_limit, 16u << 20);
	free_resp(r);
}

static void
expect_bad(fx *f, const void *buf, size_t len, uint64_t id)
{
	Moonjail__V1__Response *r = raw(f, buf, len);

	assert_kind(r, MJ_KIND_BAD_REQUEST);
	assert_int_equal(r->id, id);
	free_resp(r);
}

static void
bad_envelope(fx *f, uint32_t version, const char *tenant, const char *engine, bool op)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Ping ping = MOONJAIL__V1__PING__INIT;
	uint8_t *inner, *buf;
	size_t innerlen, len;

	req.version = version;
	req.id = 77;
	req.tenant = (char *)tenant;
	req.engine = (char *)engine;
	if (op) {
		req.op_case = MOONJAIL__V1__REQUEST__OP_PING;
		req.ping = &ping;
	}
	assert_int_equal(mj_proto_pack(&req.base, &inner, &innerlen), MJ_OK);
	wrap_request(inner, innerlen, &buf, &len);
	expect_bad(f, buf, len, 77);
	mj_free(inner);
	mj_free(buf);
}

static void
test_bad_requests(void **state)
{
	fx *f = *state;
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
	char long_name[200];
	uint8_t *buf, *inner;
	size_t len, innerlen;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;

	expect_bad(f, junk, sizeof(junk), 0);
	expect_bad(f, "", 0, 0);

	ev.source.data = (uint8_t *)"return 1";
	ev.source.len = 8;
	pack_call(f, "ok", NULL, MOONJAIL__V1__REQUEST__OP_EVAL, &ev, &buf, &len);
	expect_bad(f, buf, len / 2, 0);
	mj_free(buf);

	/* A well-formed envelope around garbage. */
	wrap_request(junk, sizeof(junk), &buf, &len);
	expect_bad(f, buf, len, 0);
	mj_free(buf);

	bad_envelope(f, 2, "ok", "", true);
	bad_envelope(f, 0, "ok", "", true);
	bad_envelope(f, 1, "", "", true);
	bad_envelope(f, 1, "a/b", "", true);
	bad_envelope(f, 1, "a b", "", true);
	bad_envelope(f, 1, "ok", "../x", true);
	bad_envelope(f, 1, "ok", "", false);
	memset(long_name, 'a', 129);
	long_name[129] = '\0';
	bad_envelope(f, 1, long_name, "", true);
	bad_envelope(f, 1, "ok", long_name, true);
	long_name[128] = '\0';
	expect_int(f, long_name, long_name, "return 128", 128);

	/* A nonsensical policy from the supervisor is refused too, not trusted. */
	P.defaults.memory = 0;
	pack_call(f, "ok", NULL, MOONJAIL__V1__REQUEST__OP_EVAL, &ev, &buf, &len);
	expect_bad(f, buf, len, f->next_id - 1);
	mj_free(buf);
	pol_reset();

	/* A namespace value nested 5000 levels deep: protobuf-c alone would overflow its stack. */
	{
		size_t cap = 200000, n = 0, i;
		uint8_t *deep = malloc(cap);
		assert_non_null(deep);
		for (i = 0; i < 5000; i++) {
			wrap(deep, &n, 1); /* Array.items */
			wrap(deep, &n, 6); /* Value.array */
			assert_true(n + 16 < cap);
		}
		wrap(deep, &n, 2);  /* SetNamespace.value */
		wrap(deep, &n, 15); /* Request.set_namespace */
		memmove(deep + 6, deep, n);
		memcpy(deep, "\x08\x01\x1a\x02ok", 6); /* version 1, tenant "ok" */
		n += 6;
		wrap_request(deep, n, &inner, &innerlen);
		expect_bad(f, inner, innerlen, 0);
		mj_free(inner);
		free(deep);
	}

	assert_true(child_alive(f));
	expect_int(f, "ok", NULL, "return 3", 3);
}

static void
test_oversized_message(void **state)
{
	fx *f = *state;
	size_t len = (17u << 20) + 1;
	uint8_t *big = calloc(1, len);
	nng_aio *aio;
	nng_ctx ctx;
	nng_msg *msg;
	int rv;

	assert_non_null(big);
	expect_int(f, "o", NULL, "return 1", 1);
	assert_int_equal(nng_ctx_open(&ctx, f->sock), 0);
	assert_int_equal(nng_aio_alloc(&aio, NULL, NULL), 0);
	assert_int_equal(nng_msg_alloc(&msg, 0), 0);
	assert_int_equal(nng_msg_append(msg, big, len), 0);
	free(big);
	nng_aio_set_msg(aio, msg);
	nng_ctx_send(ctx, aio);
	/* nng drops a message over the receiver's limit and the connection with it. A confined
	 * worker cannot redial (socket(2) is forbidden): it exits cleanly with status 1 for the
	 * supervisor to replace, rather than dying on a seccomp kill. Waited for without nng: a
	 * send cut off mid-message can leave nng's aio pending until it is cancelled. */
	{
		int st = 0, i;
		pid_t got = 0;
		for (i = 0; i < 1000 && got == 0; i++) {
			got = waitpid(f->pid, &st, WNOHANG);
			if (got == 0)
				usleep(10000);
		}
		assert_int_equal(got, f->pid);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 1);
		f->pid = 0;
	}
	nng_aio_cancel(aio);
	nng_aio_wait(aio);
	if (nng_aio_result(aio) != 0)
		nng_msg_free(nng_aio_get_msg(aio));
	/* Nothing answered it as if it were valid. */
	nng_ctx_recv(ctx, aio);
	usleep(200000);
	nng_aio_cancel(aio);
	nng_aio_wait(aio);
	rv = nng_aio_result(aio);
	if (rv == 0)
		nng_msg_free(nng_aio_get_msg(aio));
	assert_int_not_equal(rv, 0);
	nng_aio_free(aio);
	nng_ctx_close(ctx);
}

/* Runs the worker with argv (after the program name), stdout and stderr to /dev/null, and
 * returns its exit status, or -1 when it did not exit by itself within 5 s. */
static int
worker_exit_status(const char *const *args)
{
	const char *argv[16];
	int st, i, n = 0;
	pid_t pid;

	argv[n++] = MOONJAIL_WORKER_BIN;
	for (i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < 500; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* Bad command lines are usage errors (exit 2) before anything starts; the confinement flags
 * are checked as strictly as the rest, and root is never a target user. */
static void
test_usage_errors(void **state)
{
	static const char *const cases[][8] = {
	    {"--id", "1", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "x", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "1", "--contexts", "0", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "1", "--user", "0:0", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "1", "--user", "65534", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "1", "--user", "65534:", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "1", "--user", "a:b", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "1", "--user",
	     "99999999999999999999:1", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "1", "--chroot", NULL},
	    {"--connect", "ipc:///nonexistent/x.sock", "--id", "1", "--bogus", NULL},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = worker_exit_status(cases[i]);
		if (st != 2)
			fail_msg("case %zu (%s %s ...): exit %d, want 2", i, cases[i][0],
			         cases[i][1] ? cases[i][1] : "", st);
	}
}

static void
test_lru_eviction(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;
	const char *fill = "big = string.rep('x', 600000) return #big";

	expect_int(f, "l", "e1", fill, 600000);
	expect_int(f, "l", "e2", fill, 600000);
	/* e1 is the least recently used idle engine once e3 takes the total past 1500K. */
	expect_int(f, "l", "e3", fill, 600000);
	r = eval(f, "l", "e1", "return big == nil");
	assert_ok(r);
	assert_true(r->engine_created);
	assert_int_equal(r->values[0]->kind_case, MOONJAIL__V1__VALUE__KIND_BOOLEAN);
	assert_true(r->values[0]->boolean);
	free_resp(r);
	r = eval(f, "l", "e3", "return #big");
	assert_ok(r);
	assert_false(r->engine_created);
	assert_int_equal(int_value(r, 0), 600000);
	free_resp(r);
}

static void
test_quotas(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;

	P.max_engines = 2;
	expect_int(f, "q", "e1", "return 1", 1);
	expect_int(f, "q", "e2", "return 2", 2);
	r = eval(f, "q", "e3", "return 3");
	assert_kind(r, MJ_KIND_QUOTA);
	free_resp(r);
	/* Another tenant has its own quota. */
	expect_int(f, "q2", "e3", "return 3", 3);
	r = simple(f, "q", "e2", MOONJAIL__V1__REQUEST__OP_DESTROY);
	assert_ok(r);
	free_resp(r);
	expect_int(f, "q", "e3", "return 3", 3);

	pol_reset();
	P.max_memory = 500000;
	expect_int(f, "m", "e1", "big = string.rep('x', 600000) return #big", 600000);
	r = eval(f, "m", "e1", "return 1");
	assert_kind(r, MJ_KIND_QUOTA);
	free_resp(r);
	r = eval(f, "m", "e2", "return 1");
	assert_kind(r, MJ_KIND_QUOTA);
	free_resp(r);
	r = simple(f, "m", "e1", MOONJAIL__V1__REQUEST__OP_RESET);
	assert_ok(r);
	free_resp(r);
	expect_int(f, "m", "e1", "return 1", 1);
}

/* An asynchronous call on its own REQ context. */
typedef struct acall {
	nng_ctx ctx;
	nng_aio *aio;
} acall;

static void
acall_start(fx *f, acall *a, const char *tenant, const char *src)
{
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;
	nng_msg *msg;
	uint8_t *buf;
	size_t len;

	assert_int_equal(nng_ctx_open(&a->ctx, f->sock), 0);
	assert_int_equal(nng_aio_alloc(&a->aio, NULL, NULL), 0);
	nng_aio_set_timeout(a->aio, RECV_TIMEOUT_MS);
	ev.source.data = (uint8_t *)src;
	ev.source.len = strlen(src);
	pack_call(f, tenant, NULL, MOONJAIL__V1__REQUEST__OP_EVAL, &ev, &buf, &len);
	assert_int_equal(nng_msg_alloc(&msg, 0), 0);
	assert_int_equal(nng_msg_append(msg, buf, len), 0);
	mj_free(buf);
	nng_aio_set_msg(a->aio, msg);
	nng_ctx_send(a->ctx, a->aio);
	nng_aio_wait(a->aio);
	assert_int_equal(nng_aio_result(a->aio), 0);
	nng_ctx_recv(a->ctx, a->aio);
}

static Moonjail__V1__Response *
acall_finish(acall *a)
{
	Moonjail__V1__Response *r;
	nng_msg *msg;

	nng_aio_wait(a->aio);
	if (nng_aio_result(a->aio) != 0)
		fail_msg("no reply: %s", nng_strerror(nng_aio_result(a->aio)));
	msg = nng_aio_get_msg(a->aio);
	r = decode(nng_msg_body(msg), nng_msg_len(msg));
	nng_msg_free(msg);
	nng_aio_free(a->aio);
	nng_ctx_close(a->ctx);
	return r;
}

static void
test_cpu_burner_does_not_stall_others(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;
	acall burner, b;
	uint64_t start, t0, worst = 0, took;
	unsigned calls = 0;

	expect_int(f, "B", NULL, "return 0", 0);
	P.defaults.instructions = 0;
	P.defaults.timeout_ms = 1500;
	P.max = P.defaults;
	start = now_ms();
	acall_start(f, &burner, "A", "while true do end");
	pol_reset();
	sleep_ms(100);
	while (now_ms() - start < 1200 && calls < 100000) {
		t0 = now_ms();
		acall_start(f, &b, "B", "return 1 + 1");
		r = acall_finish(&b);
		took = now_ms() - t0;
		assert_ok(r);
		assert_int_equal(int_value(r, 0), 2);
		free_resp(r);
		worst = took > worst ? took : worst;
		calls++;
	}
	r = acall_finish(&burner);
	assert_kind(r, MJ_KIND_TIMEOUT);
	free_resp(r);
	print_message("tenant B: %u calls while A burned CPU, worst latency %llu ms\n", calls,
	              (unsigned long long)worst);
	assert_true(calls >= 5);
	/* A behaviour check, not a benchmark: B must not wait for A's 1500 ms timeout. */
	assert_true(worst < 500);
}

static void
test_engine_requests_run_in_order(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;
	acall a[4];
	int i;

	/* os.clock is CPU time: on a loaded machine 0.3 s of it takes longer than 1000 ms. */
	P.defaults.timeout_ms = 5000;
	P.max = P.defaults;
	acall_start(f, &a[0], "fifo",
	            "local t = os.clock() while os.clock() - t < 0.3 do end n = 1 return n");
	for (i = 1; i < 4; i++) {
		sleep_ms(30);
		acall_start(f, &a[i], "fifo", "n = n + 1 return n");
	}
	for (i = 0; i < 4; i++) {
		r = acall_finish(&a[i]);
		assert_ok(r);
		assert_int_equal(int_value(r, 0), i + 1);
		free_resp(r);
	}
}

static void
test_sigterm_finishes_running_call(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;
	acall a;
	int st = 0, i;
	pid_t got = 0;

	P.defaults.timeout_ms = 5000;
	P.max = P.defaults;
	/* Some state to tear down: a clean exit frees it all (LeakSanitizer checks in ASan builds).
	 */
	expect_int(f, "z", NULL, "return 1", 1);
	expect_int(f, "z", "two", "t = {} for i = 1, 1000 do t[i] = {i} end return #t", 1000);
	expect_int(f, "y", NULL, "s = string.rep('y', 100000) return #s", 100000);
	acall_start(f, &a, "z", "local t = os.clock() while os.clock() - t < 0.4 do end return 7");
	sleep_ms(100);
	assert_int_equal(kill(f->pid, SIGTERM), 0);
	r = acall_finish(&a);
	assert_ok(r);
	assert_int_equal(int_value(r, 0), 7);
	free_resp(r);
	for (i = 0; i < 200 && got == 0; i++) {
		got = waitpid(f->pid, &st, WNOHANG);
		if (got == 0)
			sleep_ms(50);
	}
	assert_int_equal(got, f->pid);
	f->pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_eval_values_output_stats, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_run_and_state_persists, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tenants_and_engines_isolated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_kinds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_create_clamps_and_validates, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_create_modules_and_prelude, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_namespaces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_and_destroy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stats_and_ping, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_message, setup, teardown),
	    cmocka_unit_test(test_usage_errors),
	    cmocka_unit_test_setup_teardown(test_lru_eviction, setup_small_budget, teardown),
	    cmocka_unit_test_setup_teardown(test_quotas, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cpu_burner_does_not_stall_others,
	                                    setup_two_executors, teardown),
	    cmocka_unit_test_setup_teardown(test_engine_requests_run_in_order, setup_two_executors,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_sigterm_finishes_running_call, setup, teardown),
	};

	/* A dead worker must fail a test, not kill the test program. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
