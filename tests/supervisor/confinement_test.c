/* Integration tests of confinement through the real service: forbidden syscalls kill the worker
 * (observed by moonjaild), the hard deadline kills a worker stuck in C, quarantine moves a tenant
 * that keeps killing workers off the shared ones. Needs a build with MJ_TEST_HOOKS=ON, whose
 * workers give scripts test_syscall(name). */
#include <dirent.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdio.h>

#if defined(MOONJAILD_BIN) && defined(MOONJAIL_WORKER_BIN) && defined(MOONJAIL_BIN)

#include "supervisor/harness.h"

/* Tests that need test_syscall skip themselves in builds without it. */
#ifdef MJ_TEST_HOOKS
#define NEED_TEST_HOOKS() ((void)0)
#else
#define NEED_TEST_HOOKS() skip()
#endif

/* Waits up to 2 s for worker w to have a pid other than old; returns the new one. */
static pid_t
new_worker_pid(const svc *s, int w, pid_t old)
{
	uint64_t t0;
	pid_t pid;

	for (t0 = now_ms(); now_ms() - t0 < 2000; sleep_ms(10))
		if ((pid = worker_pid(s, w)) != old && pid > 0)
			return pid;
	fail_msg("worker %d was not replaced within 2 s (log: %s)", w, s->log);
	return 0;
}

static const char *
error_kind_name(const mj_response *r)
{
	const ProtobufCEnumValue *v;

	if (r->error == NULL)
		return "(none)";
	v = protobuf_c_enum_descriptor_get_value(&moonjail__v1__error_kind__descriptor,
	                                         (int)r->error->kind);
	return v != NULL ? v->name : "?";
}

/* Each forbidden syscall, attempted by a script on worker 0, kills that worker with SIGSYS: the
 * caller gets engine-lost, moonjaild logs the signal, the spare takes its place, and a tenant on
 * worker 1 keeps its state throughout. openat is refused with EPERM instead (glibc probes files;
 * see docs/SECURITY.md) and the worker lives. */
static void
test_forbidden_syscalls_kill_the_worker(void **state)
{
	static const char *const extra[] = {"--workers", "2", "--quarantine-workers", "0", NULL};
	static const char *const killed[] = {"execve", "socket", "connect",   "bind",
	                                     "ptrace", "fork",   "clone",     "kill",
	                                     "mount",  "unlink", "mmap_exec", NULL};
	char victim[32], bystander[32], pidkey[32], src[96];
	mj_response *r;
	pid_t pid;
	size_t i;
	svc s;

	(void)state;
	NEED_TEST_HOOKS();
	svc_start(&s, extra);
	tenant_on(0, 2, "victim", victim, sizeof(victim));
	tenant_on(1, 2, "bystander", bystander, sizeof(bystander));
	assert_int_equal(eval_int(&s, bystander, "kept = 41 return kept"), 41);

	pid = worker_pid(&s, 0);
	r = eval(&s, victim, "return test_syscall('openat')");
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_OK);
	assert_int_equal(r->n_values, 1);
	assert_int_equal(r->values[0]->kind_case, MOONJAIL__V1__VALUE__KIND_STRING);
	assert_memory_equal(r->values[0]->string.data, "errno EPERM", 11);
	mj_proto_free(&r->base);
	assert_int_equal(worker_pid(&s, 0), pid);

	for (i = 0; killed[i] != NULL; i++) {
		const char *died[] = {"event=worker-died", "worker=0", pidkey, "signal=31", NULL};

		pid = worker_pid(&s, 0);
		snprintf(pidkey, sizeof(pidkey), "pid=%d ", (int)pid);
		snprintf(src, sizeof(src), "state = 1 return test_syscall('%s')", killed[i]);
		r = eval(&s, victim, src);
		if (r->status != MOONJAIL__V1__STATUS__STATUS_ERROR ||
		    r->error->kind != MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST)
			fail_msg("%s: want engine-lost, got status %d kind %s", killed[i],
			         (int)r->status, error_kind_name(r));
		mj_proto_free(&r->base);
		if (!log_wait(&s, died))
			fail_msg("%s: no 'worker-died ... signal=31' for pid %d in %s", killed[i],
			         (int)pid, s.log);
		new_worker_pid(&s, 0, pid);
		/* The victim is served again, by a worker that never saw its state. */
		assert_int_equal(eval_int(&s, victim, "return state == nil and 7 or 8"), 7);
		assert_int_equal(eval_int(&s, bystander, "return kept"), 41);
	}
	/* The spare took over at least once (it is restarted in the background after each). */
	{
		const char *promoted[] = {"event=worker-started", "spare=promoted", NULL};
		assert_true(log_count(&s, promoted) >= 1);
	}
	assert_int_equal(svc_stop(&s), 0);
}

typedef struct call_arg {
	const svc *s;
	const char *tenant;
	const char *src;
	mj_response *r;
	int rv;
} call_arg;

static void *
call_thread(void *p)
{
	call_arg *a = p;

	a->rv = call_op(a->s->url, a->tenant, NULL, MOONJAIL__V1__REQUEST__OP_EVAL, a->src, &a->r,
	                20000);
	return NULL;
}

/* A call stuck in C (no Lua hook can end it) is ended by the supervisor's hard deadline: the
 * culprit gets timeout, a call of another tenant queued behind it on the same worker gets
 * engine-lost, and a replacement serves both tenants. */
static void
test_hard_deadline_kills_a_worker_stuck_in_c(void **state)
{
	static const char *const extra[] = {"--workers",
	                                    "1",
	                                    "--executors",
	                                    "1",
	                                    "--timeout-ms",
	                                    "300",
	                                    "--deadline-margin-ms",
	                                    "300",
	                                    "--instruction-limit",
	                                    "0",
	                                    "--quarantine-workers",
	                                    "0",
	                                    NULL};
	call_arg culprit = {.tenant = "culprit", .src = "return test_syscall('hang')"};
	call_arg other = {.tenant = "other", .src = "return 1"};
	pthread_t a, b;
	uint64_t t0, took;
	pid_t pid;
	svc s;

	(void)state;
	NEED_TEST_HOOKS();
	svc_start(&s, extra);
	culprit.s = other.s = &s;
	pid = worker_pid(&s, 0);
	t0 = now_ms();
	assert_int_equal(pthread_create(&a, NULL, call_thread, &culprit), 0);
	/* The other call goes out only once the culprit's is running (its engine exists). */
	{
		const char *running[] = {"event=engine_created tenant=culprit ", NULL};
		assert_true(log_wait(&s, running));
		sleep_ms(50);
	}
	assert_int_equal(pthread_create(&b, NULL, call_thread, &other), 0);
	pthread_join(a, NULL);
	took = now_ms() - t0;
	pthread_join(b, NULL);
	assert_int_equal(culprit.rv, 0);
	assert_int_equal(other.rv, 0);
	assert_int_equal(culprit.r->status, MOONJAIL__V1__STATUS__STATUS_ERROR);
	assert_int_equal(culprit.r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_TIMEOUT);
	/* Killed at 600 ms, not after the minute the hook sleeps. */
	assert_true(took < 10000);
	/* With one executor the other call waited behind the culprit, in flight when the worker
	 * was killed. */
	assert_int_equal(other.r->status, MOONJAIL__V1__STATUS__STATUS_ERROR);
	if (other.r->error->kind != MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST)
		fail_msg("other tenant: want engine-lost, got %s", error_kind_name(other.r));
	mj_proto_free(&culprit.r->base);
	mj_proto_free(&other.r->base);
	{
		const char *kill_line[] = {"event=worker-kill", "worker=0", "reason=", NULL};
		assert_true(log_wait(&s, kill_line));
	}
	new_worker_pid(&s, 0, pid);
	assert_int_equal(eval_int(&s, "culprit", "return 3"), 3);
	assert_int_equal(eval_int(&s, "other", "return 4"), 4);
	assert_int_equal(svc_stop(&s), 0);
}

/* Calls queued behind each other on one engine each get the whole hard deadline once they
 * start, not from when they were sent: two calls on one engine that each wait for the clock's
 * second to turn twice (1-2 s of wall time, whatever the load) take over 3 s together, more
 * than the 2.6 s hard deadline, and both succeed while the worker lives. */
static void
test_queued_calls_on_one_engine_keep_their_deadline(void **state)
{
	static const char *const extra[] = {"--workers",
	                                    "1",
	                                    "--timeout-ms",
	                                    "2500",
	                                    "--deadline-margin-ms",
	                                    "100",
	                                    "--instruction-limit",
	                                    "0",
	                                    NULL};
	static const char burn[] =
	    "local t = os.time() repeat until os.time() >= t + 2 n = (n or 0) + 1 return n";
	call_arg first = {.tenant = "queued", .src = burn};
	call_arg second = {.tenant = "queued", .src = burn};
	pthread_t a, b;
	pid_t pid;
	svc s;

	(void)state;
	svc_start(&s, extra);
	first.s = second.s = &s;
	pid = worker_pid(&s, 0);
	assert_int_equal(pthread_create(&a, NULL, call_thread, &first), 0);
	{
		const char *running[] = {"event=engine_created tenant=queued ", NULL};
		assert_true(log_wait(&s, running));
	}
	assert_int_equal(pthread_create(&b, NULL, call_thread, &second), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	assert_int_equal(first.rv, 0);
	assert_int_equal(second.rv, 0);
	if (first.r->status != MOONJAIL__V1__STATUS__STATUS_OK ||
	    second.r->status != MOONJAIL__V1__STATUS__STATUS_OK)
		fail_msg("queued calls: %s, %s", error_kind_name(first.r),
		         error_kind_name(second.r));
	mj_proto_free(&first.r->base);
	mj_proto_free(&second.r->base);
	assert_int_equal(worker_pid(&s, 0), pid);
	assert_int_equal(eval_int(&s, "queued", "return n"), 2);
	assert_int_equal(svc_stop(&s), 0);
}

/* Runs src as tenant on worker slot 0 and checks that moonjaild kills that worker for reason
 * (a log fragment such as "reason=stream-ended"): the call gets engine-lost within 5 s (not at
 * a hard deadline), a new process takes the slot, and the tenant is served again. */
static void
expect_worker_replaced(svc *s, const char *tenant, const char *src, const char *reason)
{
	const char *kill_line[] = {"event=worker-kill", reason, NULL};
	pid_t pid = worker_pid(s, 0);
	uint64_t t0 = now_ms();
	mj_response *r;

	r = eval(s, tenant, src);
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_ERROR);
	if (r->error->kind != MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST)
		fail_msg("%s: want engine-lost, got %s", src, error_kind_name(r));
	assert_true(now_ms() - t0 < 5000);
	mj_proto_free(&r->base);
	assert_true(log_wait(s, kill_line));
	new_worker_pid(s, 0, pid);
	assert_int_equal(eval_int(s, tenant, "return 8"), 8);
}

/* A worker that ends its side of the stream but stays alive is killed and replaced: its calls
 * are answered engine-lost at once (not at the hard deadline of the minute-long hook), and the
 * slot serves again. */
static void
test_worker_that_stops_answering_is_replaced(void **state)
{
	static const char *const extra[] = {"--workers", "1", "--quarantine-workers", "0", NULL};
	svc s;

	(void)state;
	NEED_TEST_HOOKS();
	svc_start(&s, extra);
	expect_worker_replaced(&s, "mute", "return test_syscall('half_close')",
	                       "reason=stream-ended");
	assert_int_equal(svc_stop(&s), 0);
}

/* A worker that sends a reply nobody asked for (an unknown tag, or the tag of an earlier use
 * of the running call's slot), one announced over the limit, or one to the call it runs that
 * is no Response, is killed and replaced: the call in flight on it gets
 * engine-lost and the slot serves again. */
static void
test_forged_replies_kill_the_worker(void **state)
{
	static const char *const extra[] = {"--workers", "1", "--quarantine-workers", "0", NULL};
	svc s;

	(void)state;
	NEED_TEST_HOOKS();
	svc_start(&s, extra);
	expect_worker_replaced(&s, "forger",
	                       "test_syscall('forge_reply') return test_syscall('hang')",
	                       "reason=unexpected-reply");
	expect_worker_replaced(&s, "forger",
	                       "test_syscall('oversized_reply') return test_syscall('hang')",
	                       "reason=oversized-reply");
	expect_worker_replaced(&s, "forger",
	                       "test_syscall('malformed_reply') return test_syscall('hang')",
	                       "reason=malformed-reply");
	expect_worker_replaced(&s, "forger",
	                       "test_syscall('stale_reply') return test_syscall('hang')",
	                       "reason=unexpected-reply");
	assert_int_equal(svc_stop(&s), 0);
}

/* A slow worker that writes its reply one byte at a time (8 ms apart, about half a second in
 * all) is neither killed nor stalls anyone: moonjaild reassembles the frame from dozens of
 * reads, the call gets its real answer, and meanwhile a tenant on the other worker is served
 * again and again. */
static void
test_trickled_reply_is_reassembled(void **state)
{
	static const char *const extra[] = {"--workers", "2", "--quarantine-workers", "0", NULL};
	static const char want[] = "every byte of this reply came on its own";
	const char *kill_line[] = {"event=worker-kill", NULL};
	char slow_tenant[32], other[32];
	call_arg slow = {.src = "test_syscall('trickle_reply') "
	                        "return 'every byte of this reply came on its own'"};
	pid_t pid0, pid1;
	pthread_t t;
	uint64_t t0;
	int served = 0;
	svc s;

	(void)state;
	NEED_TEST_HOOKS();
	svc_start(&s, extra);
	tenant_on(0, 2, "slow", slow_tenant, sizeof(slow_tenant));
	tenant_on(1, 2, "other", other, sizeof(other));
	slow.s = &s;
	slow.tenant = slow_tenant;
	pid0 = worker_pid(&s, 0);
	pid1 = worker_pid(&s, 1);
	assert_int_equal(eval_int(&s, other, "return 1"), 1);
	t0 = now_ms();
	assert_int_equal(pthread_create(&t, NULL, call_thread, &slow), 0);
	{
		const char *running[] = {"event=engine_created tenant=", slow_tenant, NULL};
		assert_true(log_wait(&s, running));
	}
	/* The reply takes over 50 bytes x 8 ms; trivial calls on the other worker go through
	 * meanwhile (bounded, whatever the machine's speed). */
	while (served < 2000 && pthread_tryjoin_np(t, NULL) == EBUSY) {
		assert_int_equal(eval_int(&s, other, "return 2"), 2);
		served++;
	}
	if (served == 2000)
		pthread_join(t, NULL);
	/* It did trickle: over 50 bytes at 8 ms each. */
	assert_true(now_ms() - t0 >= 400);
	assert_true(served >= 3);
	assert_int_equal(slow.rv, 0);
	assert_int_equal(slow.r->status, MOONJAIL__V1__STATUS__STATUS_OK);
	assert_int_equal(slow.r->n_values, 1);
	assert_int_equal(slow.r->values[0]->kind_case, MOONJAIL__V1__VALUE__KIND_STRING);
	assert_int_equal(slow.r->values[0]->string.len, sizeof(want) - 1);
	assert_memory_equal(slow.r->values[0]->string.data, want, sizeof(want) - 1);
	mj_proto_free(&slow.r->base);
	/* Neither worker was replaced, and the slow one still serves. */
	assert_int_equal(log_count(&s, kill_line), 0);
	assert_int_equal(worker_pid(&s, 0), pid0);
	assert_int_equal(worker_pid(&s, 1), pid1);
	assert_int_equal(eval_int(&s, slow_tenant, "return 3"), 3);
	assert_int_equal(svc_stop(&s), 0);
}

/* A tenant whose calls kill workers twice within the window is quarantined: later replies say
 * so, its calls run on the quarantine pool, and when it kills that worker a bystander on its
 * old worker keeps its state and its worker. */
static void
test_quarantine(void **state)
{
	static const char *const extra[] = {"--workers",
	                                    "2",
	                                    "--quarantine-workers",
	                                    "1",
	                                    "--quarantine-strikes",
	                                    "2",
	                                    "--quarantine-window-ms",
	                                    "60000",
	                                    "--quarantine-ms",
	                                    "60000",
	                                    NULL};
	char culprit[32], bystander[32], line[64];
	const char *quarantined[] = {"event=tenant-quarantined", line, NULL};
	mj_response *r;
	pid_t pid, pool;
	int i;
	svc s;

	(void)state;
	NEED_TEST_HOOKS();
	svc_start(&s, extra);
	tenant_on(0, 2, "culprit", culprit, sizeof(culprit));
	tenant_on(0, 2, "bystander", bystander, sizeof(bystander));
	snprintf(line, sizeof(line), "tenant=%s ", culprit);
	pool = worker_pid(&s, 2);
	assert_true(pool > 0);
	for (i = 0; i < 2; i++) {
		pid = worker_pid(&s, 0);
		r = eval(&s, culprit, "return test_syscall('socket')");
		assert_int_equal(r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST);
		mj_proto_free(&r->base);
		new_worker_pid(&s, 0, pid);
	}
	assert_true(log_wait(&s, quarantined));
	/* From now on every reply to the culprit says it is quarantined. */
	r = eval(&s, culprit, "return 1");
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_OK);
	assert_true(r->quarantined);
	mj_proto_free(&r->base);
	/* Others are not. */
	r = eval(&s, bystander, "kept = 12 return kept");
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_OK);
	assert_false(r->quarantined);
	mj_proto_free(&r->base);
	/* The culprit's next kill takes down the pool's worker, not the bystander's. */
	pid = worker_pid(&s, 0);
	r = eval(&s, culprit, "return test_syscall('socket')");
	assert_int_equal(r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST);
	assert_true(r->quarantined);
	mj_proto_free(&r->base);
	new_worker_pid(&s, 2, pool);
	assert_int_equal(worker_pid(&s, 0), pid);
	assert_int_equal(eval_int(&s, bystander, "return kept"), 12);
	assert_int_equal(svc_stop(&s), 0);
}

/* Creates tenant's default engine with a timeout of timeout_ms (within its ceiling). */
static void
create_with_timeout(const svc *s, const char *tenant, uint64_t timeout_ms)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Create cr = MOONJAIL__V1__CREATE__INIT;
	Moonjail__V1__Limits lim = MOONJAIL__V1__LIMITS__INIT;
	Moonjail__V1__Limit t = MOONJAIL__V1__LIMIT__INIT;
	mj_response *r = NULL;
	uint8_t *buf;
	size_t len;

	t.value = timeout_ms;
	lim.timeout_ms = &t;
	cr.limits = &lim;
	req.version = MJ_PROTO_VERSION;
	req.id = 1;
	req.tenant = (char *)tenant;
	req.engine = (char *)"";
	req.op_case = MOONJAIL__V1__REQUEST__OP_CREATE;
	req.create = &cr;
	assert_int_equal(mj_proto_pack(&req.base, &buf, &len), MJ_OK);
	assert_int_equal(call_raw(s->url, buf, len, &r, 10000), 0);
	mj_free(buf);
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_OK);
	assert_true(r->engine_created);
	mj_proto_free(&r->base);
}

/* The hard-deadline strike goes to the tenant stuck on the worker, not to one that merely
 * waited behind it with a shorter timeout and so reached its deadline first. */
static void
test_deadline_strike_goes_to_the_stuck_tenant(void **state)
{
	char conf[96];
	const char *extra[] = {"--workers",
	                       "1",
	                       "--executors",
	                       "1",
	                       "--deadline-margin-ms",
	                       "300",
	                       "--quarantine-strikes",
	                       "1",
	                       "--config",
	                       conf,
	                       NULL};
	const char *stuck_q[] = {"event=tenant-quarantined tenant=stuck ", NULL};
	const char *short_q[] = {"event=tenant-quarantined tenant=short ", NULL};
	/* forge_log writes a line to the log: the sign that the stuck call is running. */
	call_arg stuck = {.tenant = "stuck",
	                  .src = "test_syscall('forge_log') return test_syscall('hang')"};
	const char *running[] = {"tenant=forged", NULL};
	call_arg shorter = {.tenant = "short", .src = "return 1"};
	pthread_t a, b;
	svc s;

	(void)state;
	NEED_TEST_HOOKS();
	snprintf(conf, sizeof(conf), "/tmp/mj-deadline-%d.ini", (int)getpid());
	{
		FILE *f = fopen(conf, "w");
		assert_non_null(f);
		fputs("[defaults]\ntimeout_ms = 200\n[tenant:stuck]\ntimeout_ms = 3000\n", f);
		fclose(f);
	}
	svc_start(&s, extra);
	stuck.s = shorter.s = &s;
	create_with_timeout(&s, "stuck", 3000);
	assert_int_equal(pthread_create(&a, NULL, call_thread, &stuck), 0);
	assert_true(log_wait(&s, running));
	assert_int_equal(pthread_create(&b, NULL, call_thread, &shorter), 0);
	pthread_join(b, NULL);
	pthread_join(a, NULL);
	assert_int_equal(stuck.rv, 0);
	assert_int_equal(shorter.rv, 0);
	/* The short call's deadline (200 + 300 ms) came first and ended the worker. */
	assert_int_equal(shorter.r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_TIMEOUT);
	assert_int_equal(stuck.r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST);
	mj_proto_free(&stuck.r->base);
	mj_proto_free(&shorter.r->base);
	assert_true(log_wait(&s, stuck_q));
	assert_int_equal(log_count(&s, short_q), 0);
	assert_int_equal(svc_stop(&s), 0);
	unlink(conf);
}

/* A worker killed from outside (an operator, the OOM killer) is no tenant's doing: the tenants
 * with calls in flight get engine-lost but no strike, however often it happens. */
static void
test_external_kill_strikes_no_one(void **state)
{
	static const char *const extra[] = {"--workers",
	                                    "1",
	                                    "--quarantine-strikes",
	                                    "1",
	                                    "--timeout-ms",
	                                    "20000",
	                                    "--instruction-limit",
	                                    "0",
	                                    NULL};
	const char *strike[] = {"event=tenant-strike", NULL};
	call_arg busy = {.tenant = "innocent",
	                 .src = "local t = os.clock() while os.clock() - t < 10 do end return 1"};
	mj_response *r;
	pthread_t th;
	pid_t pid;
	int i;
	svc s;

	(void)state;
	svc_start(&s, extra);
	busy.s = &s;
	for (i = 0; i < 3; i++) {
		pid = worker_pid(&s, 0);
		assert_int_equal(pthread_create(&th, NULL, call_thread, &busy), 0);
		sleep_ms(300); /* the call is running */
		assert_int_equal(kill(pid, SIGKILL), 0);
		pthread_join(th, NULL);
		assert_int_equal(busy.rv, 0);
		assert_int_equal(busy.r->error->kind,
		                 MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST);
		mj_proto_free(&busy.r->base);
		new_worker_pid(&s, 0, pid);
	}
	r = eval(&s, "innocent", "return 1");
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_OK);
	assert_false(r->quarantined);
	mj_proto_free(&r->base);
	assert_int_equal(log_count(&s, strike), 0);
	assert_int_equal(svc_stop(&s), 0);
}

/* Checks that every thread of process pid has exactly want in the capability sets named by
 * prefixes ("CapPrm:" ...); returns how many threads it checked. */
static int
check_thread_caps(pid_t pid, const char *const *prefixes, uint64_t want)
{
	char path[320], line[256];
	struct dirent *d;
	int threads = 0, i;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	assert_non_null(dir = opendir(path));
	while ((d = readdir(dir)) != NULL) {
		FILE *f;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, d->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue; /* the thread has just ended */
		while (fgets(line, sizeof(line), f) != NULL) {
			for (i = 0; prefixes[i] != NULL; i++)
				if (strncmp(line, prefixes[i], 7) == 0 &&
				    strtoull(line + 7, NULL, 16) != want)
					fail_msg("pid %d thread %s: %s", (int)pid, d->d_name, line);
		}
		fclose(f);
		threads++;
	}
	closedir(dir);
	return threads;
}

/* Run as root, every thread of moonjaild (nng's included, which handle client bytes) holds
 * only CAP_SYS_ADMIN and CAP_KILL, with the workers' CAP_SETUID, CAP_SETGID and CAP_SYS_CHROOT
 * left in the bounding set; every thread of a confined worker holds none. */
static void
test_threads_keep_few_capabilities(void **state)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	static const char *const held[] = {"CapPrm:", "CapEff:", NULL};
	static const char *const bounding[] = {"CapBnd:", NULL};
	const uint64_t want = 1ull << CAP_SYS_ADMIN | 1ull << CAP_KILL;
	const uint64_t bound =
	    want | 1ull << CAP_SETUID | 1ull << CAP_SETGID | 1ull << CAP_SYS_CHROOT;
	svc s;

	(void)state;
	if (geteuid() != 0)
		skip(); /* nothing to drop */
	svc_start(&s, extra);
	assert_true(check_thread_caps(s.pid, held, want) > 2); /* the main thread and nng's */
	assert_true(check_thread_caps(s.pid, bounding, bound) > 2);
	/* Confined before its first request. */
	assert_int_equal(eval_int(&s, "t", "return 1"), 1);
	assert_true(check_thread_caps(worker_pid(&s, 0), held, 0) > 2);
	assert_int_equal(svc_stop(&s), 0);
}

/* Under no_new_privs (systemd's NoNewPrivileges=, Docker's no-new-privileges, Kubernetes'
 * allowPrivilegeEscalation: false), a worker exec'd as root gets no more than moonjaild's
 * permitted set: moonjaild keeps CAP_SETUID, CAP_SETGID and CAP_SYS_CHROOT permitted but not
 * effective, so that workers still chroot and switch to their user, and says so in its log. */
static int
unwrap(void **state)
{
	(void)state;
	svc_wrap = NULL; /* also after a failure, which leaves the test early */
	return 0;
}

static void
test_root_under_no_new_privs(void **state)
{
	static const char *const wrap[] = {"setpriv", "--no-new-privs", "--", NULL};
	static const char *const extra[] = {"--workers", "1", NULL};
	static const char *const eff[] = {"CapEff:", NULL};
	static const char *const prm[] = {"CapPrm:", NULL};
	static const char *const held[] = {"CapPrm:", "CapEff:", NULL};
	static const char *const logged[] = {
	    "event=capabilities held=kill,sys_admin permitted_also=setuid,setgid,sys_chroot "
	    "no_new_privs=1",
	    NULL};
	static const char *const chrooted[] = {"event=confined", "chroot=yes", NULL};
	const uint64_t want = 1ull << CAP_SYS_ADMIN | 1ull << CAP_KILL;
	const uint64_t also = 1ull << CAP_SETUID | 1ull << CAP_SETGID | 1ull << CAP_SYS_CHROOT;
	char path[64];
	struct stat st;
	svc s;

	(void)state;
	if (geteuid() != 0)
		skip(); /* workers keep moonjaild's uid: nothing to switch */
	svc_wrap = wrap;
	svc_start(&s, extra);
	svc_wrap = NULL;
	assert_int_equal(eval_int(&s, "t", "return 6 * 7"), 42);
	assert_true(log_wait(&s, logged));
	assert_true(log_wait(&s, chrooted));
	assert_true(check_thread_caps(s.pid, eff, want) > 2);
	assert_true(check_thread_caps(s.pid, prm, want | also) > 2);
	/* The worker switched to its user and holds nothing. */
	snprintf(path, sizeof(path), "/proc/%d", (int)worker_pid(&s, 0));
	assert_int_equal(stat(path, &st), 0);
	assert_int_not_equal(st.st_uid, 0);
	assert_true(check_thread_caps(worker_pid(&s, 0), held, 0) > 2);
	assert_int_equal(svc_stop(&s), 0);
}

/* As root without CAP_SETUID in reach of its workers (here out of the bounding set, as a
 * service manager or container may leave it), every worker would die at start: moonjaild
 * refuses to start instead, exit 2 naming the capability, and leaves no worker directory. */
static void
test_root_without_setuid_is_refused(void **state)
{
	char dir[] = "/tmp/mj-nosetuid-XXXXXX", log[96], line[1024];
	const char *argv[] = {
	    "setpriv", "--bounding-set", "-setuid", "--", MOONJAILD_BIN, "--runtime-dir",
	    dir,       "--workers",      "1",       NULL};
	bool said = false;
	struct dirent *d;
	int status;
	DIR *rt;
	FILE *f;

	(void)state;
	if (geteuid() != 0)
		skip(); /* workers keep moonjaild's uid: nothing to switch */
	assert_non_null(mkdtemp(dir));
	snprintf(log, sizeof(log), "%s.err", dir);
	status =
	    run_to_exit(argv, log, "moonjaild started with CAP_SETUID out of its workers' reach");
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
	assert_non_null(f = fopen(log, "r"));
	while (fgets(line, sizeof(line), f) != NULL)
		said = said || strstr(line, "moonjaild's bounding set lacks setuid") != NULL;
	fclose(f);
	unlink(log);
	assert_true(said);
	assert_non_null(rt = opendir(dir));
	while ((d = readdir(rt)) != NULL)
		if (strncmp(d->d_name, "workers-", 8) == 0)
			fail_msg("%s/%s was left behind", dir, d->d_name);
	closedir(rt);
	rmdir(dir);
}

/* Root of a user namespace that maps only itself (`unshare -r`): the workers' account is not
 * mapped there, so no worker could switch to it. moonjaild refuses to start (exit 2, naming
 * the account) instead of starting workers that die one after another. */
static void
test_unmapped_worker_user_is_refused(void **state)
{
	char dir[] = "/tmp/mj-unmapped-XXXXXX", log[96], line[1024];
	const char *argv[] = {"unshare",       "--user", "--map-root-user", "--", MOONJAILD_BIN,
	                      "--runtime-dir", dir,      "--workers",       "1",  NULL};
	const char *probe[] = {"unshare", "--user", "--map-root-user", "--", "true", NULL};
	bool said = false;
	int status;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(log, sizeof(log), "%s.err", dir);
	status = run_to_exit(probe, log, "unshare --user true did not end");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		unlink(log);
		rmdir(dir);
		skip(); /* no user namespaces here */
	}
	status = run_to_exit(argv, log, "moonjaild started with an unmapped worker user");
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
	assert_non_null(f = fopen(log, "r"));
	while (fgets(line, sizeof(line), f) != NULL)
		said = said || strstr(line, "is not mapped in the user namespace") != NULL;
	fclose(f);
	unlink(log);
	rmdir(dir);
	assert_true(said);
}

/* moonjaild as PID 1, as in a container, with workers in its own namespaces: a worker's
 * parent is then 1, which must not pass for its supervisor having died before the worker set
 * its parent-death signal (every worker exited 127, and every call was engine-lost). Under
 * `unshare --pid --fork`, which ignores SIGTERM itself and exits with moonjaild's status: as
 * PID 1, moonjaild still drains and exits 0 on SIGTERM. */
static void
test_supervisor_as_pid_1(void **state)
{
	static const char *const wrap[] = {"unshare", "--pid", "--fork", "--kill-child=SIGTERM",
	                                   "--",      NULL};
	static const char *const extra[] = {"--workers", "1", "--no-namespaces", NULL};
	static const char *const pid1[] = {"event=start ", NULL};
	char path[64];
	int inner = 0;
	FILE *f;
	svc s;

	(void)state;
	if (geteuid() != 0)
		skip(); /* a new PID namespace needs root here */
	svc_wrap = wrap;
	svc_start(&s, extra);
	svc_wrap = NULL;
	assert_true(log_wait(&s, pid1));
	assert_int_equal(eval_int(&s, "t", "return 6 * 7"), 42);
	assert_int_equal(eval_int(&s, "t", "x = 1 return x + 1"), 2);
	/* SIGTERM to moonjaild, unshare's only child; svc_stop then waits for unshare. */
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)s.pid, (int)s.pid);
	assert_non_null(f = fopen(path, "r"));
	assert_int_equal(fscanf(f, "%d", &inner), 1);
	fclose(f);
	assert_true(inner > 0);
	assert_int_equal(kill(inner, SIGTERM), 0);
	assert_int_equal(svc_stop(&s), 0);
}

/* A worker's log lines cannot pose as moonjaild's: each relayed line keeps a worker prefix and
 * loses its control characters. */
static void
test_worker_cannot_forge_supervisor_log(void **state)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	const char *forged[] = {"event=tenant-quarantined tenant=forged", NULL};
	char line[1024];
	mj_response *r;
	FILE *f;
	int seen = 0;
	svc s;

	(void)state;
	NEED_TEST_HOOKS();
	svc_start(&s, extra);
	r = eval(&s, "t", "return test_syscall('forge_log')");
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_OK);
	mj_proto_free(&r->base);
	assert_true(log_wait(&s, forged));
	assert_int_equal(svc_stop(&s), 0);
	assert_non_null(f = fopen(s.log, "r"));
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "tenant=forged") == NULL && strstr(line, "event=stop\r") == NULL &&
		    strstr(line, "event=stop?") == NULL)
			continue;
		seen++;
		if (strncmp(line, "moonjail-worker[", 16) != 0 || strchr(line, '\r') != NULL)
			fail_msg("a worker's line passed as moonjaild's: %s", line);
	}
	fclose(f);
	assert_int_equal(seen, 2);
}

/* Bad confinement flags are usage errors (exit 2), before anything starts. */
static void
test_bad_confinement_flags(void **state)
{
	static const char *const bad[][3] = {
	    {"--quarantine-workers", "99", NULL}, {"--quarantine-workers", "-1", NULL},
	    {"--quarantine-strikes", "0", NULL},  {"--quarantine-strikes", "17", NULL},
	    {"--quarantine-ms", "x", NULL},       {"--quarantine-window-ms", "", NULL},
	    {"--worker-user", NULL, NULL},
	};
	char dir[] = "/tmp/mj-flags-XXXXXX";
	const char *argv[8];
	int status, i, n;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
		n = 0;
		argv[n++] = MOONJAILD_BIN;
		argv[n++] = "--runtime-dir";
		argv[n++] = dir;
		argv[n++] = bad[i][0];
		if (bad[i][1] != NULL)
			argv[n++] = bad[i][1];
		argv[n] = NULL;
		assert_int_equal(
		    posix_spawn(&pid, MOONJAILD_BIN, NULL, NULL, (char **)argv, environ), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 2)
			fail_msg("moonjaild %s %s: want exit 2, got status %d", bad[i][0],
			         bad[i][1] ? bad[i][1] : "", status);
	}
	/* An account that does not exist: refused as root (elsewhere workers keep our uid). */
	if (geteuid() == 0) {
		argv[3] = "--worker-user";
		argv[4] = "mj-no-such-user";
		argv[5] = NULL;
		assert_int_equal(
		    posix_spawn(&pid, MOONJAILD_BIN, NULL, NULL, (char **)argv, environ), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
	}
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_forbidden_syscalls_kill_the_worker),
	    cmocka_unit_test(test_hard_deadline_kills_a_worker_stuck_in_c),
	    cmocka_unit_test(test_queued_calls_on_one_engine_keep_their_deadline),
	    cmocka_unit_test(test_worker_that_stops_answering_is_replaced),
	    cmocka_unit_test(test_forged_replies_kill_the_worker),
	    cmocka_unit_test(test_trickled_reply_is_reassembled),
	    cmocka_unit_test(test_quarantine),
	    cmocka_unit_test(test_external_kill_strikes_no_one),
	    cmocka_unit_test(test_deadline_strike_goes_to_the_stuck_tenant),
	    cmocka_unit_test(test_threads_keep_few_capabilities),
	    cmocka_unit_test_teardown(test_root_under_no_new_privs, unwrap),
	    cmocka_unit_test(test_root_without_setuid_is_refused),
	    cmocka_unit_test(test_unmapped_worker_user_is_refused),
	    cmocka_unit_test_teardown(test_supervisor_as_pid_1, unwrap),
	    cmocka_unit_test(test_worker_cannot_forge_supervisor_log),
	    cmocka_unit_test(test_bad_confinement_flags),
	};

	return SVC_RUN_TESTS(tests);
}

#else

int
main(void)
{
	/* Built before the service programs exist: nothing to run yet. */
	fprintf(stderr, "moonjaild or moonjail-worker is not built\n");
	return 1;
}

#endif
