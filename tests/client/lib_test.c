/* libmoonjail against an in-test REP server: encoding, decoding, broken peers and timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "fake_server.h"
#include "mj/client.h"

typedef struct fixture {
	fake_server srv;
	mj_client *c;
} fixture;

static int
setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	mj_client_options o = {.recv_timeout_ms = 10000, .send_timeout_ms = 10000};

	if (f == NULL || fs_start(&f->srv) != 0)
		return -1;
	if (mj_client_open(&f->c, f->srv.url, &o) != MJ_OK)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fixture *f = *state;

	mj_client_close(f->c);
	fs_stop(&f->srv);
	free(f);
	return 0;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
assert_string_value(const mj_value *v, const char *s)
{
	assert_int_equal(v->type, MJ_VSTRING);
	assert_int_equal(v->u.s.len, strlen(s));
	assert_memory_equal(v->u.s.ptr, s, strlen(s));
}

static void
test_eval_roundtrip(void **state)
{
	fixture *f = *state;
	const char *src = "print('hi') return 1, 'x', {a=true}";
	mj_client_result *r = NULL;
	mj_request *req;

	assert_int_equal(mj_client_eval(f->c, "acme", NULL, src, strlen(src), &r), MJ_OK);
	assert_non_null(r);
	assert_int_equal(r->kind, MJ_KIND_NONE);
	assert_string_equal(r->message, "");
	assert_string_equal(r->traceback, "");
	assert_int_equal(r->output_len, 3);
	assert_string_equal(r->output, "hi\n");
	assert_int_equal(r->n_values, 3);
	assert_int_equal(r->values[0].type, MJ_VINT);
	assert_int_equal(r->values[0].u.i, 1);
	assert_string_value(&r->values[1], "x");
	assert_int_equal(r->values[2].type, MJ_VMAP);
	assert_int_equal(r->values[2].u.m.len, 1);
	assert_string_value(&r->values[2].u.m.keys[0], "a");
	assert_int_equal(r->values[2].u.m.vals[0].type, MJ_VBOOL);
	assert_true(r->values[2].u.m.vals[0].u.b);
	assert_true(r->has_stats);
	assert_int_equal(r->stats.instructions, 42);
	assert_int_equal(r->stats.instruction_limit, 100000000);
	assert_int_equal(r->stats.memory_current, 1000);
	assert_int_equal(r->stats.memory_peak, 2000);
	assert_int_equal(r->stats.memory_limit, 16777216);
	assert_int_equal(r->stats.wall_us, 7);
	assert_int_equal(r->stats.timeout_ms, 1000);
	assert_int_equal(r->stats.output_limit, 1048576);
	assert_false(r->engine_created);
	assert_false(r->engine_reset);

	req = fs_last(&f->srv);
	assert_non_null(req);
	assert_int_equal(req->version, 1);
	assert_int_equal(req->id, r->id);
	assert_string_equal(req->tenant, "acme");
	assert_string_equal(req->engine, "default");
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_EVAL);
	assert_int_equal(req->eval->source.len, strlen(src));
	assert_memory_equal(req->eval->source.data, src, strlen(src));
	mj_proto_free(&req->base);
	mj_client_result_free(r);
}

static void
test_values(void **state)
{
	fixture *f = *state;
	const char *src = "return nil, 2.5, {1,2}";
	mj_client_result *r = NULL;

	assert_int_equal(mj_client_eval(f->c, "acme", "e1", src, strlen(src), &r), MJ_OK);
	assert_int_equal(r->n_values, 3);
	assert_int_equal(r->values[0].type, MJ_VNIL);
	assert_int_equal(r->values[1].type, MJ_VFLOAT);
	assert_true(r->values[1].u.f == 2.5);
	assert_int_equal(r->values[2].type, MJ_VARRAY);
	assert_int_equal(r->values[2].u.a.len, 2);
	assert_int_equal(r->values[2].u.a.items[1].u.i, 2);
	mj_client_result_free(r);

	/* A string with a NUL in it travels as bytes. */
	assert_int_equal(mj_client_eval(f->c, "acme", "e1", "a\0b", 3, &r), MJ_OK);
	assert_int_equal(r->n_values, 1);
	assert_int_equal(r->values[0].u.s.len, 3);
	assert_memory_equal(r->values[0].u.s.ptr, "a\0b", 3);
	mj_client_result_free(r);
}

static void
test_errors(void **state)
{
	fixture *f = *state;
	mj_client_result *r = NULL;

	assert_int_equal(mj_client_eval(f->c, "acme", NULL, "error('boom')", 13, &r), MJ_OK);
	assert_int_equal(r->kind, MJ_KIND_RUNTIME);
	assert_string_equal(r->message, "script:3: boom");
	assert_int_equal(r->line, 3);
	assert_string_equal(r->traceback, "stack traceback:\n\t[C]: in function 'error'");
	assert_string_equal(r->output, "before\n");
	assert_int_equal(r->n_values, 0);
	mj_client_result_free(r);

	assert_int_equal(mj_client_eval(f->c, "acme", NULL, "while true do end", 17, &r), MJ_OK);
	assert_int_equal(r->kind, MJ_KIND_INSTRUCTIONS);
	assert_int_equal(r->line, 0);
	assert_true(r->engine_reset);
	mj_client_result_free(r);

	assert_int_equal(mj_client_run(f->c, "acme", NULL, "return 1 +", 10, &r), MJ_OK);
	assert_int_equal(r->kind, MJ_KIND_SYNTAX);
	assert_int_equal(r->line, 1);
	mj_client_result_free(r);
}

static void
test_encodings(void **state)
{
	fixture *f = *state;
	mj_client_result *r = NULL;
	mj_request *req;
	const char *mods[] = {"json", "other"};
	mj_client_create_options co = {0};
	mj_value ns, back;

	assert_int_equal(mj_client_run(f->c, "t1", "e2", "x = 1", 5, &r), MJ_OK);
	assert_int_equal(r->n_values, 0);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_RUN);
	assert_string_equal(req->engine, "e2");
	assert_memory_equal(req->run->source.data, "x = 1", 5);
	mj_proto_free(&req->base);

	assert_int_equal(mj_client_reset(f->c, "t1", "e2", &r), MJ_OK);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_RESET);
	assert_string_equal(req->tenant, "t1");
	mj_proto_free(&req->base);

	assert_int_equal(mj_client_destroy(f->c, "t1", NULL, &r), MJ_OK);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_DESTROY);
	assert_string_equal(req->engine, "default");
	mj_proto_free(&req->base);

	assert_int_equal(mj_client_stats(f->c, "t1", NULL, &r), MJ_OK);
	assert_true(r->has_stats);
	assert_int_equal(r->stats.engines, 2);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_STATS);
	mj_proto_free(&req->base);

	assert_int_equal(mj_client_ping(f->c, NULL, &r), MJ_OK);
	assert_int_equal(r->kind, MJ_KIND_NONE);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_PING);
	mj_proto_free(&req->base);

	co.limits.memory = 1 << 20;
	co.limits.timeout_ms = 250;
	co.limits.instructions = 0; /* not set: must not travel */
	co.set = MJ_CLIENT_LIMIT_MEMORY | MJ_CLIENT_LIMIT_TIMEOUT;
	co.modules = mods;
	co.n_modules = 2;
	co.prelude = "function f() end";
	co.prelude_len = strlen(co.prelude);
	assert_int_equal(mj_client_create(f->c, "t1", "e3", &co, &r), MJ_OK);
	assert_true(r->engine_created);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_CREATE);
	assert_non_null(req->create->limits);
	assert_non_null(req->create->limits->memory);
	assert_int_equal(req->create->limits->memory->value, 1 << 20);
	assert_non_null(req->create->limits->timeout_ms);
	assert_int_equal(req->create->limits->timeout_ms->value, 250);
	assert_null(req->create->limits->instructions);
	assert_null(req->create->limits->output);
	assert_int_equal(req->create->n_modules, 2);
	assert_string_equal(req->create->modules[1], "other");
	assert_memory_equal(req->create->prelude.data, "function f() end", co.prelude_len);
	mj_proto_free(&req->base);

	/* Without options no limits message travels at all. */
	assert_int_equal(mj_client_create(f->c, "t1", "e4", NULL, &r), MJ_OK);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_null(req->create->limits);
	assert_int_equal(req->create->n_modules, 0);
	mj_proto_free(&req->base);

	assert_int_equal(mj_value_map(&ns, 2), MJ_OK);
	mj_value_string(&ns.u.m.keys[0], "total", 5);
	mj_value_float(&ns.u.m.vals[0], 12.5);
	mj_value_string(&ns.u.m.keys[1], "items", 5);
	mj_value_array(&ns.u.m.vals[1], 1);
	mj_value_int(&ns.u.m.vals[1].u.a.items[0], -7);
	assert_int_equal(mj_client_set_namespace(f->c, "t1", NULL, "Order", &ns, &r), MJ_OK);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE);
	assert_string_equal(req->set_namespace->name, "Order");
	assert_int_equal(mj_proto_to_value(req->set_namespace->value, &back, NULL, 0), MJ_OK);
	assert_true(mj_value_equal(&ns, &back));
	mj_value_free(&back);
	mj_value_free(&ns);
	mj_proto_free(&req->base);

	assert_int_equal(mj_client_unset_namespace(f->c, "t1", NULL, "Order", &r), MJ_OK);
	mj_client_result_free(r);
	req = fs_last(&f->srv);
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE);
	assert_string_equal(req->unset_namespace->name, "Order");
	mj_proto_free(&req->base);
}

static void
test_ids_unique(void **state)
{
	fixture *f = *state;
	mj_client_result *a = NULL, *b = NULL;

	assert_int_equal(mj_client_ping(f->c, "t", &a), MJ_OK);
	assert_int_equal(mj_client_ping(f->c, "t", &b), MJ_OK);
	assert_true(a->id != 0);
	assert_true(b->id > a->id);
	mj_client_result_free(a);
	mj_client_result_free(b);
}

static void
test_bad_arguments(void **state)
{
	fixture *f = *state;
	mj_client_result *r = NULL;
	unsigned before = f->srv.n_requests;
	char longname[200];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(mj_client_eval(f->c, NULL, NULL, "1", 1, &r), MJ_EINVAL);
	assert_non_null(strstr(mj_client_errmsg(f->c), "tenant"));
	assert_int_equal(mj_client_eval(f->c, "", NULL, "1", 1, &r), MJ_EINVAL);
	assert_int_equal(mj_client_eval(f->c, "a b", NULL, "1", 1, &r), MJ_EINVAL);
	assert_int_equal(mj_client_eval(f->c, longname, NULL, "1", 1, &r), MJ_EINVAL);
	assert_int_equal(mj_client_eval(f->c, "ok", "bad/engine", "1", 1, &r), MJ_EINVAL);
	assert_non_null(strstr(mj_client_errmsg(f->c), "engine"));
	assert_int_equal(mj_client_eval(f->c, "ok", NULL, NULL, 1, &r), MJ_EINVAL);
	assert_int_equal(mj_client_eval(f->c, "ok", NULL, "1", 1, NULL), MJ_EINVAL);
	assert_int_equal(mj_client_unset_namespace(f->c, "ok", NULL, NULL, &r), MJ_EINVAL);
	assert_int_equal(mj_client_set_namespace(f->c, "ok", NULL, "N", NULL, &r), MJ_EINVAL);
	assert_null(r);
	assert_int_equal(f->srv.n_requests, before);
}

static void
expect_malformed(fixture *f, fs_mode mode, const char *needle)
{
	mj_client_result *r = NULL;

	atomic_store(&f->srv.mode, mode);
	assert_int_equal(mj_client_eval(f->c, "acme", NULL, "return 1", 8, &r), MJ_EINVAL);
	assert_null(r);
	assert_non_null(strstr(mj_client_errmsg(f->c), "malformed"));
	if (needle != NULL && strstr(mj_client_errmsg(f->c), needle) == NULL)
		fail_msg("errmsg '%s' lacks '%s'", mj_client_errmsg(f->c), needle);
	atomic_store(&f->srv.mode, FS_NORMAL);
	/* The client still works afterwards. */
	assert_int_equal(mj_client_eval(f->c, "acme", NULL, "return 1", 8, &r), MJ_OK);
	mj_client_result_free(r);
}

static void
test_malformed_responses(void **state)
{
	fixture *f = *state;

	expect_malformed(f, FS_GARBAGE, NULL);
	expect_malformed(f, FS_TRUNCATED, "truncated");
	expect_malformed(f, FS_WRONG_ID, "does not match");
	expect_malformed(f, FS_BAD_VALUE, "NaN");
	expect_malformed(f, FS_BAD_STATUS, "status");
	expect_malformed(f, FS_EMPTY, "does not match");
}

static void
test_bad_request_with_id_zero(void **state)
{
	fixture *f = *state;
	mj_client_result *r = NULL;

	atomic_store(&f->srv.mode, FS_ID_ZERO);
	assert_int_equal(mj_client_eval(f->c, "acme", NULL, "return 1", 8, &r), MJ_OK);
	assert_int_equal(r->kind, MJ_KIND_BAD_REQUEST);
	assert_int_equal(r->id, 0);
	assert_non_null(strstr(r->message, "malformed request"));
	mj_client_result_free(r);
}

static void
test_oversized_response(void **state)
{
	fake_server *s = &((fixture *)*state)->srv;
	mj_client_options o = {
	    .recv_timeout_ms = 3000, .send_timeout_ms = 3000, .max_message = 4096};
	mj_client_result *r = NULL;
	mj_client *c;
	uint64_t t0;
	mj_err err;

	assert_int_equal(mj_client_open(&c, s->url, &o), MJ_OK);
	s->oversize = 100000;
	atomic_store(&s->mode, FS_OVERSIZED);
	t0 = now_ms();
	err = mj_client_eval(c, "acme", NULL, "return 1", 8, &r);
	assert_true(err == MJ_CLIENT_ECONN || err == MJ_CLIENT_ETIMEDOUT);
	assert_null(r);
	assert_true(now_ms() - t0 < 5000);
	/* nng drops the connection; the next call waits for the redial and succeeds. */
	atomic_store(&s->mode, FS_NORMAL);
	assert_int_equal(mj_client_eval(c, "acme", NULL, "return 1", 8, &r), MJ_OK);
	mj_client_result_free(r);

	/* A request larger than max_message is refused before it is sent. */
	{
		char big[5000];
		memset(big, ' ', sizeof(big));
		assert_int_equal(mj_client_eval(c, "acme", NULL, big, sizeof(big), &r), MJ_ELIMIT);
		assert_non_null(strstr(mj_client_errmsg(c), "max_message"));
	}
	mj_client_close(c);
}

static void
test_timeout(void **state)
{
	fake_server *s = &((fixture *)*state)->srv;
	mj_client_options o = {.recv_timeout_ms = 300};
	mj_client_result *r = NULL;
	mj_client *c;
	uint64_t t0, dt;

	assert_int_equal(mj_client_open(&c, s->url, &o), MJ_OK);
	atomic_store(&s->mode, FS_SILENT);
	t0 = now_ms();
	assert_int_equal(mj_client_eval(c, "acme", NULL, "return 1", 8, &r), MJ_CLIENT_ETIMEDOUT);
	dt = now_ms() - t0;
	assert_true(dt >= 250);
	assert_true(dt < 5000);
	assert_non_null(strstr(mj_client_errmsg(c), "no answer"));
	assert_string_equal(mj_client_err_str(MJ_CLIENT_ETIMEDOUT), "timed out");
	atomic_store(&s->mode, FS_NORMAL);
	assert_int_equal(mj_client_eval(c, "acme", NULL, "return 1", 8, &r), MJ_OK);
	mj_client_result_free(r);
	mj_client_close(c);
}

static void
test_connection_refused(void **state)
{
	mj_client_options o = {.send_timeout_ms = 300, .lazy_connect = true};
	mj_client_result *r = NULL;
	mj_client *c = NULL;
	uint64_t t0;

	(void)state;
	assert_int_equal(mj_client_open(&c, "ipc:///nonexistent-mj-dir/none.sock", NULL),
	                 MJ_CLIENT_ECONN);
	assert_null(c);
	assert_non_null(strstr(mj_client_errmsg(NULL), "cannot connect"));
	assert_int_equal(mj_client_open(&c, "tcp://127.0.0.1:1", NULL), MJ_CLIENT_ECONN);
	assert_int_equal(mj_client_open(&c, "bogus://x", NULL), MJ_EINVAL);
	assert_int_equal(mj_client_open(&c, "", NULL), MJ_EINVAL);
	assert_int_equal(mj_client_open(NULL, "ipc:///x", NULL), MJ_EINVAL);

	/* Lazily connected, the call itself reports the missing service, within its timeout. */
	assert_int_equal(mj_client_open(&c, "ipc:///nonexistent-mj-dir/none.sock", &o), MJ_OK);
	t0 = now_ms();
	assert_int_equal(mj_client_ping(c, "t", &r), MJ_CLIENT_ECONN);
	assert_true(now_ms() - t0 < 5000);
	assert_non_null(strstr(mj_client_errmsg(c), "no connection"));
	mj_client_close(c);
	mj_client_close(NULL);
	mj_client_result_free(NULL);
}

typedef struct dying {
	mj_client *c;
	mj_err err;
	char msg[512];
} dying;

static void *
call_thread(void *arg)
{
	dying *d = arg;
	mj_client_result *r = NULL;

	d->err = mj_client_eval(d->c, "acme", NULL, "return 1", 8, &r);
	/* The detail of a failure belongs to the thread that made the call. */
	snprintf(d->msg, sizeof(d->msg), "%s", mj_client_errmsg(d->c));
	mj_client_result_free(r);
	return NULL;
}

/* The service going away mid-call fails the call at once: the client never resends (and so
 * never runs a script twice) and does not sit out its receive timeout. */
static void
test_peer_dies_mid_call(void **state)
{
	fixture *f = *state;
	pthread_t t;
	dying d = {f->c, MJ_OK, ""};
	uint64_t t0;
	unsigned i;

	atomic_store(&f->srv.mode, FS_SILENT);
	t0 = now_ms();
	assert_int_equal(pthread_create(&t, NULL, call_thread, &d), 0);
	for (i = 0; i < 200 && f->srv.n_requests == 0; i++)
		nng_msleep(10);
	fs_stop(&f->srv);
	pthread_join(t, NULL);
	assert_int_equal(d.err, MJ_CLIENT_ECONN);
	assert_true(now_ms() - t0 < 5000); /* the receive timeout is 10 s */
	assert_non_null(strstr(d.msg, "connection dropped"));
	assert_string_equal(mj_client_errmsg(f->c), "no error");
	/* teardown stops the server again: give it a fresh one. */
	assert_int_equal(fs_start(&f->srv), 0);
}

#define THREADS 8
#define CALLS 40

typedef struct worker_arg {
	mj_client *c;
	int n;
	int ok;
} worker_arg;

static void *
worker(void *arg)
{
	worker_arg *w = arg;
	char src[64];
	int i;

	for (i = 0; i < CALLS; i++) {
		mj_client_result *r = NULL;
		snprintf(src, sizeof(src), "return 'thread %d call %d'", w->n, i);
		if (mj_client_eval(w->c, "acme", NULL, src, strlen(src), &r) != MJ_OK)
			continue;
		/* The canned service returns the source: each answer must be this call's. */
		if (r->n_values == 1 && r->values[0].u.s.len == strlen(src) &&
		    memcmp(r->values[0].u.s.ptr, src, strlen(src)) == 0)
			w->ok++;
		mj_client_result_free(r);
	}
	return NULL;
}

static void
test_concurrent_calls(void **state)
{
	fixture *f = *state;
	pthread_t t[THREADS];
	worker_arg w[THREADS];
	int i;

	for (i = 0; i < THREADS; i++) {
		w[i] = (worker_arg){f->c, i, 0};
		assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, CALLS);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_eval_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_encodings, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ids_unique, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_responses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_request_with_id_zero, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_response, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
	    cmocka_unit_test(test_connection_refused),
	    cmocka_unit_test_setup_teardown(test_peer_dies_mid_call, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_calls, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
