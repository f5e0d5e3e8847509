/* Integration tests of moonjail-worker: the real binary, with the test as its supervisor. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mj/frame.h"
#include "mj/proto.h"

#ifndef MOONJAIL_WORKER_BIN
#error "MOONJAIL_WORKER_BIN must name the moonjail-worker binary"
#endif

extern char **environ;

/* Generous for ASan builds; a healthy worker answers in milliseconds. */
#define RECV_TIMEOUT_MS 15000

/* Largest reply the test accepts; the worker's own limit on requests is 16 MiB + 128 KiB. */
#define REPLY_MAX ((size_t)32 << 20)

/* Tags use all eight bytes, so a worker that truncates or reorders them is caught. */
#define TAG_BASE 0x0102030405060700ull

/* Replies that arrived while the test waited for another tag. */
#define STASH 16

typedef struct fx {
	int fd; /* the test's end of the socketpair, non-blocking */
	pid_t pid;
	uint64_t next_id;
	uint64_t next_tag;
	mj_frame_reader rd;
	struct {
		uint64_t tag;
		Moonjail__V1__Response *r;
	} stash[STASH];
	size_t nstash;
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

/* Starts the worker as the supervisor does: one end of a socketpair as its fd 3. */
static int
start_worker(void **state, const char *const *extra)
{
	fx *f = calloc(1, sizeof(*f));
	posix_spawn_file_actions_t fa;
	const char *argv[16];
	size_t n = 0;
	int sv[2], child;

	pol_reset();
	assert_non_null(f);
	f->fd = -1;
	assert_int_equal(mj_frame_reader_init(&f->rd, REPLY_MAX), MJ_OK);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	/* dup2 onto its own number would leave close-on-exec set: move it out of the way. */
	child = sv[1];
	if (child == 3) {
		child = fcntl(sv[1], F_DUPFD_CLOEXEC, 4);
		assert_true(child >= 0);
		close(sv[1]);
	}
	argv[n++] = MOONJAIL_WORKER_BIN;
	argv[n++] = "--fd";
	argv[n++] = "3";
	argv[n++] = "--id";
	argv[n++] = "7";
	for (; extra != NULL && *extra != NULL && n < 15; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	assert_int_equal(posix_spawn_file_actions_adddup2(&fa, child, 3), 0);
	assert_int_equal(
	    posix_spawn(&f->pid, MOONJAIL_WORKER_BIN, &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(child);
	f->fd = sv[0];
	/* Every wait below is a poll with a deadline, so a stuck worker fails the test. */
	assert_int_equal(fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) | O_NONBLOCK), 0);
	f->next_id = 1;
	f->next_tag = TAG_BASE;
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
	static const char *const extra[] = {"--executors", "2", NULL};
	return start_worker(state, extra);
}

static int
setup_one_executor(void **state)
{
	static const char *const extra[] = {"--executors", "1", NULL};
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
	if (f->fd >= 0)
		close(f->fd);
	while (f->nstash > 0)
		moonjail__v1__response__free_unpacked(f->stash[--f->nstash].r, NULL);
	mj_frame_reader_fini(&f->rd);
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

/* pack_call for an eval of src on tenant's default engine. */
static void
pack_eval(fx *f, const char *tenant, const char *src, uint8_t **out, size_t *outlen)
{
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;

	ev.source.data = (uint8_t *)src;
	ev.source.len = strlen(src);
	pack_call(f, tenant, NULL, MOONJAIL__V1__REQUEST__OP_EVAL, &ev, out, outlen);
}

static Moonjail__V1__Response *
decode(void *buf, size_t len)
{
	Moonjail__V1__Response *r = moonjail__v1__response__unpack(NULL, len, buf);

	assert_non_null(r);
	return r;
}

/* Milliseconds left until deadline; fails the test once it has passed. */
static int
left_ms(uint64_t deadline, const char *what)
{
	uint64_t now = now_ms();

	if (now >= deadline)
		fail_msg("timed out after %d ms %s", RECV_TIMEOUT_MS, what);
	return (int)(deadline - now);
}

/* Writes all of buf to the worker, waiting while the socket is full. */
static void
send_all(fx *f, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t deadline = now_ms() + RECV_TIMEOUT_MS;
	struct pollfd pfd = {.fd = f->fd, .events = POLLOUT};
	ssize_t n;

	while (len > 0) {
		n = write(f->fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			deadline = now_ms() + RECV_TIMEOUT_MS;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (poll(&pfd, 1, left_ms(deadline, "writing to the worker")) < 0 &&
			    errno != EINTR)
				fail_msg("poll: %s", strerror(errno));
		} else if (n < 0 && errno != EINTR) {
			fail_msg("writing to the worker: %s", strerror(errno));
		}
	}
}

/* Sends one frame and returns its tag. The header is built here rather than with
 * mj_frame_writev, which blocks: a worker that stopped reading must fail the test, not hang it. */
static uint64_t
send_frame(fx *f, const void *buf, size_t len)
{
	uint8_t hdr[MJ_FRAME_HEADER];
	uint64_t tag = f->next_tag++;

	assert_true(len <= UINT32_MAX);
	mj_frame_header(hdr, (uint32_t)len, tag);
	send_all(f, hdr, sizeof(hdr));
	send_all(f, buf, len);
	return tag;
}

/* Waits for the reply to tag, keeping replies to other tags for their own callers: the worker
 * answers different engines in any order. */
static Moonjail__V1__Response *
await_reply(fx *f, uint64_t want)
{
	uint64_t deadline = now_ms() + RECV_TIMEOUT_MS, tag;
	struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
	Moonjail__V1__Response *r;
	const uint8_t *payload;
	mj_frame_status st;
	size_t i, len;
	ssize_t n;

	for (i = 0; i < f->nstash; i++) {
		if (f->stash[i].tag == want) {
			r = f->stash[i].r;
			f->stash[i] = f->stash[--f->nstash];
			return r;
		}
	}
	for (;;) {
		while ((st = mj_frame_next(&f->rd, &tag, &payload, &len)) != MJ_FRAME_NONE) {
			if (st == MJ_FRAME_TOO_BIG)
				fail_msg("a reply of %zu bytes for tag %#llx", len,
				         (unsigned long long)tag);
			if (tag < TAG_BASE || tag >= f->next_tag)
				fail_msg("a reply for tag %#llx, which was never sent",
				         (unsigned long long)tag);
			r = decode((void *)payload, len);
			if (tag == want)
				return r;
			if (f->nstash == STASH)
				fail_msg("more than %d replies waiting", STASH);
			f->stash[f->nstash].tag = tag;
			f->stash[f->nstash++].r = r;
		}
		if (poll(&pfd, 1, left_ms(deadline, "waiting for a reply")) < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		n = mj_frame_fill(&f->rd, f->fd);
		if (n == 0)
			fail_msg("the worker closed the connection before replying to tag %#llx",
			         (unsigned long long)want);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			fail_msg("reading from the worker: %s", strerror(errno));
	}
}

/* Sends raw bytes as the payload of one frame and returns the decoded reply. */
static Moonjail__V1__Response *
raw(fx *f, const void *buf, size_t len)
{
	return await_reply(f, send_frame(f, buf, len));
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

/* Waits up to ms for the worker to exit by itself and returns its exit status; a worker killed
 * by a signal (seccomp, a crash) fails the test. */
static int
wait_exit(fx *f, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;
	pid_t got = 0;
	int st = 0;

	while ((got = waitpid(f->pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
		sleep_ms(10);
	if (got != f->pid)
		fail_msg("the worker did not exit within %u ms", ms);
	f->pid = 0;
	if (!WIFEXITED(st))
		fail_msg("the worker died of signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
	return WEXITSTATUS(st);
}

static void
test_oversized_message(void **state)
{
	fx *f = *state;
	size_t len = (17u << 20) + 1, chunk = 64u << 10, n;
	uint8_t hdr[MJ_FRAME_HEADER], *zeros = calloc(1, chunk);
	Moonjail__V1__Response *r;
	uint64_t big, next;
	uint8_t *buf;
	size_t buflen;

	assert_non_null(zeros);
	expect_int(f, "o", NULL, "return 1", 1);
	/* The worker discards a frame over its limit as it arrives instead of holding it, and
	 * answers that tag. The reply may come before the last byte is written; the socket keeps
	 * it until the test reads. */
	big = f->next_tag++;
	mj_frame_header(hdr, (uint32_t)len, big);
	send_all(f, hdr, sizeof(hdr));
	for (n = 0; n < len; n += chunk)
		send_all(f, zeros, len - n < chunk ? len - n : chunk);
	free(zeros);
	/* A frame straight after it: the skipped bytes must be counted exactly. */
	pack_eval(f, "o", "return 2", &buf, &buflen);
	next = send_frame(f, buf, buflen);
	mj_free(buf);
	r = await_reply(f, big);
	assert_kind(r, MJ_KIND_BAD_REQUEST);
	assert_int_equal(r->id, 0);
	free_resp(r);
	r = await_reply(f, next);
	assert_ok(r);
	assert_int_equal(int_value(r, 0), 2);
	free_resp(r);
	/* Still serving, and the state from before the big frame is intact. */
	assert_true(child_alive(f));
	expect_int(f, "o", NULL, "x = 3 return x", 3);
	expect_int(f, "o", NULL, "return x", 3);
	/* Nothing else answered the big frame. */
	assert_int_equal(f->nstash, 0);
}

/* The supervisor's end closing means the supervisor is gone: the worker exits 1 for it to be
 * replaced, rather than waiting forever or dying on a seccomp kill. */
static void
test_peer_close_exits(void **state)
{
	fx *f = *state;

	expect_int(f, "e", NULL, "x = 1 return x", 1);
	close(f->fd);
	f->fd = -1;
	assert_int_equal(wait_exit(f, 5000), 1);
}

/* A frame cut off by the end of the stream is never run: the worker exits 1 the same way. */
static void
test_truncated_frame_exits(void **state)
{
	fx *f = *state;
	uint8_t hdr[MJ_FRAME_HEADER], *buf;
	size_t len;

	expect_int(f, "e", NULL, "return 1", 1);
	pack_eval(f, "e", "return 2", &buf, &len);
	mj_frame_header(hdr, (uint32_t)len, f->next_tag++);
	send_all(f, hdr, sizeof(hdr));
	send_all(f, buf, len / 2);
	mj_free(buf);
	sleep_ms(100);
	assert_true(child_alive(f));
	close(f->fd);
	f->fd = -1;
	assert_int_equal(wait_exit(f, 5000), 1);
}

/* The same with the stream ending inside a header. */
static void
test_truncated_header_exits(void **state)
{
	fx *f = *state;
	uint8_t hdr[MJ_FRAME_HEADER];

	expect_int(f, "e", NULL, "return 1", 1);
	mj_frame_header(hdr, 100, f->next_tag++);
	send_all(f, hdr, 5);
	close(f->fd);
	f->fd = -1;
	assert_int_equal(wait_exit(f, 5000), 1);
}

/* Runs the worker with argv (after the program name), stdout, stderr and fd 3 on /dev/null,
 * and returns its exit status, or -1 when it did not exit by itself within 5 s. */
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
		dup2(fd, 3);
		close(9);
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
	    {"--fd", "3", NULL},
	    {"--fd", "3", "--id", "x", NULL},
	    {"--fd", "x", "--id", "1", NULL},
	    {"--fd", "-1", "--id", "1", NULL},
	    {"--fd", "3x", "--id", "1", NULL},
	    {"--fd", "3", "--id", "1", "--contexts", "8", NULL},
	    {"--fd", "3", "--id", "1", "--connect", "ipc:///nonexistent/x.sock", NULL},
	    {"--fd", "3", "--id", "1", "--user", "0:0", NULL},
	    {"--fd", "3", "--id", "1", "--user", "65534", NULL},
	    {"--fd", "3", "--id", "1", "--user", "65534:", NULL},
	    {"--fd", "3", "--id", "1", "--user", "a:b", NULL},
	    {"--fd", "3", "--id", "1", "--user", "99999999999999999999:1", NULL},
	    {"--fd", "3", "--id", "1", "--chroot", NULL},
	    {"--fd", "3", "--id", "1", "--bogus", NULL},
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

/* A well-formed command line whose --fd is not a connected socket: the worker cannot serve, so
 * it exits 1 (not a usage error) without waiting. */
static void
test_fd_not_a_socket(void **state)
{
	static const char *const not_socket[] = {"--fd", "3", "--id", "1", NULL};
	static const char *const closed[] = {"--fd", "9", "--id", "1", NULL};

	(void)state;
	assert_int_equal(worker_exit_status(not_socket), 1);
	assert_int_equal(worker_exit_status(closed), 1);
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

/* An asynchronous call: a frame sent with its own tag, whose reply is collected later. */
typedef struct acall {
	uint64_t tag;
} acall;

static void
acall_start(fx *f, acall *a, const char *tenant, const char *src)
{
	uint8_t *buf;
	size_t len;

	pack_eval(f, tenant, src, &buf, &len);
	a->tag = send_frame(f, buf, len);
	mj_free(buf);
}

static Moonjail__V1__Response *
acall_finish(fx *f, acall *a)
{
	return await_reply(f, a->tag);
}

/* A request frame that arrives one byte at a time, header included, is reassembled and run
 * once, and a whole frame sent right behind it is read from where it starts. */
static void
test_trickled_request_is_reassembled(void **state)
{
	fx *f = *state;
	uint8_t hdr[MJ_FRAME_HEADER], *buf;
	Moonjail__V1__Response *r;
	uint64_t slow;
	size_t len, i;
	acall next;

	expect_int(f, "t", NULL, "n = 0 return n", 0);
	pack_eval(f, "t", "n = n + 1 return 40 + n", &buf, &len);
	slow = f->next_tag++;
	mj_frame_header(hdr, (uint32_t)len, slow);
	for (i = 0; i < sizeof(hdr); i++) {
		send_all(f, hdr + i, 1);
		sleep_ms(1);
	}
	for (i = 0; i < len; i++) {
		send_all(f, buf + i, 1);
		sleep_ms(1);
	}
	mj_free(buf);
	acall_start(f, &next, "t", "return n");
	r = await_reply(f, slow);
	assert_ok(r);
	assert_int_equal(int_value(r, 0), 41);
	free_resp(r);
	/* Run exactly once: the engine counted one increment. */
	r = await_reply(f, next.tag);
	assert_ok(r);
	assert_int_equal(int_value(r, 0), 1);
	free_resp(r);
	assert_true(child_alive(f));
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
		r = acall_finish(f, &b);
		took = now_ms() - t0;
		assert_ok(r);
		assert_int_equal(int_value(r, 0), 2);
		free_resp(r);
		worst = took > worst ? took : worst;
		calls++;
	}
	r = acall_finish(f, &burner);
	assert_kind(r, MJ_KIND_TIMEOUT);
	free_resp(r);
	print_message("tenant B: %u calls while A burned CPU, worst latency %llu ms\n", calls,
	              (unsigned long long)worst);
	assert_true(calls >= 5);
	/* A behaviour check, not a benchmark: B must not wait for A's 1500 ms timeout. */
	assert_true(worst < 500);
}

/* Writes buf until the worker stops taking bytes for stall_ms; returns how many went out. */
static size_t
write_until_stall(fx *f, const uint8_t *buf, size_t len, unsigned stall_ms)
{
	struct pollfd pfd = {.fd = f->fd, .events = POLLOUT};
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write(f->fd, buf + done, len - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			fail_msg("writing to the worker: %s", strerror(errno));
		if (poll(&pfd, 1, (int)stall_ms) == 0)
			break;
	}
	return done;
}

/* Requests waiting behind a busy engine are bounded (64 MiB of payload): past that the worker
 * stops reading and the socket pushes back, instead of the worker decoding everything it is
 * sent. Every request is still answered, in order, once the engine is free. */
static void
test_waiting_requests_are_bounded(void **state)
{
	enum { N = 120 };
	fx *f = *state;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;
	Moonjail__V1__Response *r;
	size_t big = (size_t)1 << 20, len, flen, sent = 0, got, i;
	uint8_t *buf, *frame;
	uint64_t tags[N];
	char *src;
	acall burner;

	P.defaults.timeout_ms = 10000;
	P.defaults.instructions = 0;
	P.max = P.defaults;
	P.max.memory = 64u << 20;
	/* Wall time (3-4 s), not os.clock: that is the process's CPU time, which the worker's
	 * reader adds to while it decodes what is sent here, so under a sanitizer the burner
	 * ended before the bound was reached. */
	acall_start(f, &burner, "hog",
	            "local t = os.time() while os.time() - t < 4 do end return 0");
	src = malloc(big);
	assert_non_null(src);
	memcpy(src, "return 1 --", 11);
	memset(src + 11, 'x', big - 11);
	ev.source.data = (uint8_t *)src;
	ev.source.len = big;
	pack_call(f, "hog", NULL, MOONJAIL__V1__REQUEST__OP_EVAL, &ev, &buf, &len);
	free(src);
	flen = MJ_FRAME_HEADER + len;
	frame = malloc(flen);
	assert_non_null(frame);
	memcpy(frame + MJ_FRAME_HEADER, buf, len);
	mj_free(buf);
	/* While the burner runs, send until the worker stops taking bytes. */
	for (i = 0; i < N; i++) {
		tags[i] = f->next_tag++;
		mj_frame_header(frame, (uint32_t)len, tags[i]);
		got = write_until_stall(f, frame, flen, 500);
		sent += got;
		if (got < flen) {
			/* The rest of this frame goes once the engine is free. */
			print_message(
			    "the worker stopped reading after %zu of %d frames (%zu MiB)\n", i, N,
			    sent >> 20);
			break;
		}
	}
	assert_true(i < N);
	assert_true(sent < (size_t)96 << 20);
	r = acall_finish(f, &burner);
	assert_ok(r);
	free_resp(r);
	send_all(f, frame + got, flen - got);
	for (i++; i < N; i++) {
		tags[i] = f->next_tag++;
		mj_frame_header(frame, (uint32_t)len, tags[i]);
		send_all(f, frame, flen);
	}
	free(frame);
	for (i = 0; i < N; i++) {
		r = await_reply(f, tags[i]);
		assert_ok(r);
		assert_int_equal(int_value(r, 0), 1);
		free_resp(r);
	}
	assert_true(child_alive(f));
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
		r = acall_finish(f, &a[i]);
		assert_ok(r);
		assert_int_equal(int_value(r, 0), i + 1);
		free_resp(r);
	}
}

/* Packs evals (tenant[i], src[i]) as frames into one buffer and sends it with a single write,
 * so the worker reads them in one batch; tag[i] receives each frame's tag. */
static void
send_batch(fx *f, size_t n, const char *const *tenant, const char *const *src, uint64_t *tag)
{
	uint8_t both[2048], *buf;
	size_t len, used = 0, i;

	for (i = 0; i < n; i++) {
		pack_eval(f, tenant[i], src[i], &buf, &len);
		assert_true(used + MJ_FRAME_HEADER + len <= sizeof(both));
		tag[i] = f->next_tag++;
		mj_frame_header(both + used, (uint32_t)len, tag[i]);
		memcpy(both + used + MJ_FRAME_HEADER, buf, len);
		used += MJ_FRAME_HEADER + len;
		mj_free(buf);
	}
	send_all(f, both, used);
}

/* Waits for the reply to tag and checks that it returned the integer want. */
static void
await_int(fx *f, uint64_t tag, int64_t want)
{
	Moonjail__V1__Response *r = await_reply(f, tag);

	assert_ok(r);
	assert_int_equal(int_value(r, 0), want);
	free_resp(r);
}

/* A reply held back to be written with the next job's is not held for that job's whole run: a
 * short call read in the same batch as a long one on another engine is answered long before
 * the long one ends. One executor, so both run on the same thread, one after the other. */
static void
test_reply_not_held_behind_long_job(void **state)
{
	fx *f = *state;
	static const char *const tenant[2] = {"quick", "slow"};
	static const char *const src[2] = {
	    "return 1", "local t = os.clock() while os.clock() - t < 1.5 do end return 2"};
	uint64_t tag[2], t0, took;

	P.defaults.timeout_ms = 10000;
	P.max = P.defaults;
	expect_int(f, "quick", NULL, "return 0", 0);
	expect_int(f, "slow", NULL, "return 0", 0);
	t0 = now_ms();
	send_batch(f, 2, tenant, src, tag);
	await_int(f, tag[0], 1);
	took = now_ms() - t0;
	print_message("the quick call's reply took %llu ms\n", (unsigned long long)took);
	/* A behaviour bound, not a benchmark: the slow call burns 1500 ms of CPU. */
	assert_true(took < 700);
	await_int(f, tag[1], 2);
}

/* The same when the held reply waits behind the next call on its own engine, after a call
 * long enough for the guard to have gone idle: the first reply arrives long before the
 * second call ends. moonjaild's hard deadline counts on it. */
static void
test_reply_not_held_behind_same_engine(void **state)
{
	fx *f = *state;
	static const char *const tenant[2] = {"one", "one"};
	static const char *const src[2] = {
	    "local t = os.clock() while os.clock() - t < 1.3 do end n = 1 return n",
	    "local t = os.clock() while os.clock() - t < 1.3 do end n = n + 1 return n"};
	uint64_t tag[2], first, second;

	P.defaults.timeout_ms = 10000;
	P.max = P.defaults;
	expect_int(f, "one", NULL, "return 0", 0);
	send_batch(f, 2, tenant, src, tag);
	await_int(f, tag[0], 1);
	first = now_ms();
	await_int(f, tag[1], 2);
	second = now_ms();
	print_message("the first reply came %llu ms before the second\n",
	              (unsigned long long)(second - first));
	/* The second call burns 1300 ms of CPU after the first reply was due. */
	assert_true(second - first >= 700);
}

static void
test_sigterm_finishes_running_call(void **state)
{
	fx *f = *state;
	Moonjail__V1__Response *r;
	acall a;

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
	r = acall_finish(f, &a);
	assert_ok(r);
	assert_int_equal(int_value(r, 0), 7);
	free_resp(r);
	assert_int_equal(wait_exit(f, 10000), 0);
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
	    cmocka_unit_test_setup_teardown(test_peer_close_exits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trickled_request_is_reassembled, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_frame_exits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_header_exits, setup, teardown),
	    cmocka_unit_test(test_usage_errors),
	    cmocka_unit_test(test_fd_not_a_socket),
	    cmocka_unit_test_setup_teardown(test_lru_eviction, setup_small_budget, teardown),
	    cmocka_unit_test_setup_teardown(test_quotas, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cpu_burner_does_not_stall_others,
	                                    setup_two_executors, teardown),
	    cmocka_unit_test_setup_teardown(test_waiting_requests_are_bounded, setup_two_executors,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_engine_requests_run_in_order, setup_two_executors,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_reply_not_held_behind_long_job, setup_one_executor,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_reply_not_held_behind_same_engine,
	                                    setup_two_executors, teardown),
	    cmocka_unit_test_setup_teardown(test_sigterm_finishes_running_call, setup, teardown),
	};

	/* A dead worker must fail a test, not kill the test program. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
