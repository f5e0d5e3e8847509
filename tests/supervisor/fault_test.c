/* Fault injection under load: moonjail-bench drives the real service while this test SIGKILLs
 * and SIGSTOPs its workers at random. Every request must get exactly one answer (success,
 * engine-lost or timeout; never a dropped or mismatched reply), and afterwards the service
 * serves every tenant again with no errors. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#if defined(MOONJAILD_BIN) && defined(MOONJAIL_WORKER_BIN) && defined(MOONJAIL_BIN) &&             \
    defined(MOONJAIL_BENCH_BIN)

#include "supervisor/harness.h"

#define NWORKERS 2
#define TENANTS "40"
#define FAULTS 12 /* at most this many signals per run */

typedef struct bench_out {
	uint64_t requests;
	uint64_t ok;
	uint64_t errors;      /* every error counted, of any kind */
	uint64_t engine_lost; /* of which */
	uint64_t timeout;     /* of which */
	double throughput;
} bench_out;

/* The number after "key": in a JSON text, or fails the test. */
static double
json_number(const char *text, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((p = strstr(text, pat)) == NULL)
		fail_msg("moonjail-bench --json: no %s in %s", key, text);
	return strtod(p + strlen(pat), NULL);
}

/* Reads moonjail-bench's --json line: every "name":N in its "errors" object adds to errors. */
static void
parse_bench(const char *path, bench_out *o)
{
	char text[4096], *p, *end;
	size_t n;
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	memset(o, 0, sizeof(*o));
	o->requests = (uint64_t)json_number(text, "requests");
	o->ok = (uint64_t)json_number(text, "ok");
	o->throughput = json_number(text, "throughput");
	o->engine_lost = (uint64_t)json_number(text, "engine-lost");
	o->timeout = (uint64_t)json_number(text, "timeout");
	p = strstr(text, "\"errors\":{");
	assert_non_null(p);
	end = strchr(p, '}');
	assert_non_null(end);
	for (p = strchr(p, ':') + 1; p != NULL && p < end; p = strchr(p, ',')) {
		if ((p = strchr(p, ':')) == NULL || p > end)
			break;
		o->errors += strtoull(p + 1, NULL, 10);
	}
}

/* Starts moonjail-bench against s with its stdout in path; returns its pid. */
static pid_t
bench_spawn(const svc *s, const char *requests, const char *path)
{
	const char *argv[] = {MOONJAIL_BENCH_BIN,
	                      "--url",
	                      s->url,
	                      "--json",
	                      "--concurrency",
	                      "16",
	                      "--tenants",
	                      TENANTS,
	                      "--warmup",
	                      "0",
	                      "--requests",
	                      requests,
	                      "--timeout-ms",
	                      "20000",
	                      "-e",
	                      "n = (n or 0) + 1 return n",
	                      NULL};
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(posix_spawn(&pid, MOONJAIL_BENCH_BIN, &fa, NULL, (char **)argv, environ),
	                 0);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

/* Waits for moonjail-bench; returns its exit status (0 all ok, 1 some errors). */
static int
bench_wait(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void
test_faults_under_load(void **state)
{
	static const char *const extra[] = {
	    "--workers", "2", "--timeout-ms", "1000", "--deadline-margin-ms", "500", NULL};
	char out[128];
	bench_out before, during, after;
	int kills = 0, stops = 0, i, w, status;
	bool reaped = false;
	unsigned seed = (unsigned)time(NULL);
	pid_t bench, pid = 0;
	svc s;

	(void)state;
	print_message("fault injection seed %u\n", seed);
	srand(seed);
	svc_start(&s, extra);
	snprintf(out, sizeof(out), "%s/bench.json", s.dir);

	/* Before: no faults, no errors. */
	assert_int_equal(bench_wait(bench_spawn(&s, "2000", out)), 0);
	parse_bench(out, &before);
	assert_int_equal(before.ok, 2000);

	/* During: signals at random moments, to random workers, until the run ends. */
	bench = bench_spawn(&s, "30000", out);
	for (i = 0; i < FAULTS; i++) {
		sleep_ms(100 + (unsigned)(rand() % 300));
		if (waitpid(bench, &status, WNOHANG) == bench) {
			reaped = true;
			break;
		}
		w = rand() % NWORKERS;
		pid = worker_pid(&s, w);
		if (pid <= 0)
			continue;
		if (rand() % 3 == 0) {
			if (kill(pid, SIGSTOP) == 0)
				stops++;
		} else if (kill(pid, SIGKILL) == 0) {
			kills++;
		}
	}
	if (!reaped)
		(void)bench_wait(bench);
	parse_bench(out, &during);
	print_message("faults: %d SIGKILL, %d SIGSTOP; %" PRIu64 " ok, %" PRIu64
	              " engine-lost, %" PRIu64 " timeout, %" PRIu64 " errors in all\n",
	              kills, stops, during.ok, during.engine_lost, during.timeout, during.errors);
	assert_true(kills + stops > 0);
	/* Exactly one answer per request: a dropped request would be a connection error and a
	 * mismatched reply a malformed one; both count among the errors. */
	assert_int_equal(during.ok + during.errors, during.requests);
	assert_int_equal(during.engine_lost + during.timeout, during.errors);
	assert_true(during.engine_lost + during.timeout > 0);

	/* After: a worker still stopped is found out by the next call to it, which the hard
	 * deadline answers with timeout; poll each slot through a tenant of its own until a
	 * call succeeds. Then every slot has a running worker, and every tenant is served with
	 * no errors. */
	for (w = 0; w < NWORKERS; w++) {
		char probe[32];
		mj_response *r;
		uint64_t t0;
		bool ok = false;

		tenant_on(w, NWORKERS, "probe", probe, sizeof(probe));
		for (t0 = now_ms(); !ok && now_ms() - t0 < 10000;) {
			r = NULL;
			if (call_op(s.url, probe, NULL, MOONJAIL__V1__REQUEST__OP_EVAL, "return 1",
			            &r, 5000) == 0) {
				ok = r->status == MOONJAIL__V1__STATUS__STATUS_OK;
				mj_proto_free(&r->base);
			}
		}
		if (!ok)
			fail_msg("worker %d did not serve again within 10 s (log: %s)", w, s.log);
		pid = worker_pid(&s, w);
		if (pid <= 0 || kill(pid, 0) != 0 || stopped(pid))
			fail_msg("worker %d has no running process (log: %s)", w, s.log);
	}
	assert_int_equal(bench_wait(bench_spawn(&s, "2000", out)), 0);
	parse_bench(out, &after);
	assert_int_equal(after.ok, 2000);
	assert_int_equal(after.errors, 0);
	print_message("throughput before %.0f/s, after %.0f/s (ratio %.2f; informative)\n",
	              before.throughput, after.throughput,
	              before.throughput > 0 ? after.throughput / before.throughput : 0.0);
	assert_int_equal(svc_stop(&s), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_faults_under_load),
	};

	return SVC_RUN_TESTS(tests);
}

#else

int
main(void)
{
	/* Built before the service programs exist: nothing to run yet. */
	fprintf(stderr, "moonjaild, moonjail-worker or moonjail-bench is not built\n");
	return 1;
}

#endif
