/* moonjail-worker: the process that runs tenants' engines for the supervisor, one REP socket. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mj/text.h"
#include "worker.h"

#include <nng/protocol/reqrep0/rep.h>

/* How long a synchronous dial keeps retrying while the supervisor's listener comes up. */
#define DIAL_ATTEMPTS 100
#define DIAL_PAUSE_MS 50
/* SIGTERM lets running calls finish for at most this long. */
#define DRAIN_MS 10000

static const char usage[] =
    "usage: moonjail-worker --connect URL --id N [options]\n"
    "Runs tenants' Lua engines for moonjaild. Started only by the supervisor (fork + exec): it\n"
    "dials the supervisor's private socket, answers WorkerRequests (internal.proto) with\n"
    "Responses, and holds no configuration: each request carries its tenant's policy.\n"
    "\n"
    "options:\n"
    "  --connect URL         the supervisor's address for this worker (for example ipc://...)\n"
    "  --id N                this worker's number, shown in logs\n"
    "  --executors K         threads that run engines (default: number of CPUs, at least 2)\n"
    "  --contexts M          requests received at once (default 32)\n"
    "  --memory-budget SIZE  Lua heap of all engines before idle ones are evicted, least\n"
    "                        recently used first (default 1G; suffixes K M G KiB MiB GiB)\n"
    "  -h, --help            this text\n"
    "\n"
    "Logs go to stderr, one line per event. SIGTERM or SIGINT: stop receiving, let running\n"
    "calls finish, exit 0.\n";

static unsigned log_id;

void
wk_log_set_id(unsigned id)
{
	log_id = id;
}

void
wk_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n, m;

	n = snprintf(line, sizeof(line), "moonjail-worker[%u]: ", log_id);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m < sizeof(line) - (size_t)n - 1 ? m : (int)(sizeof(line) - (size_t)n - 2);
	line[n++] = '\n';
	/* One write per line keeps lines from different threads whole. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static int
die_usage(const char *msg, const char *arg)
{
	fprintf(stderr, "moonjail-worker: %s%s%s\n%s", msg, arg ? ": " : "", arg ? arg : "", usage);
	return 2;
}

static bool
parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	uint64_t v;

	if (s == NULL || mj_parse_u64(s, &v) != MJ_OK || v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

/* The confinement slot. Issue 4 applies the seccomp filter, rlimits and the privilege drop here:
 * after the socket is connected (no more socket(2)/connect(2) needed), after every thread exists
 * (the executors, nng's and the engine watchdog; TSYNC covers them and no thread may start
 * later), and before the first request is received. */
static int
worker_confine(void)
{
	return 0;
}

static int
dial(nng_socket sock, const char *url)
{
	struct timespec pause = {0, DIAL_PAUSE_MS * 1000000L};
	int rv = 0, i;

	for (i = 0; i < DIAL_ATTEMPTS; i++) {
		/* Synchronous, so the first connection exists before confinement; after it the
		 * dialer reconnects by itself. */
		if ((rv = nng_dial(sock, url, NULL, 0)) == 0)
			return 0;
		if (rv != NNG_ECONNREFUSED && rv != NNG_ENOENT)
			break;
		nanosleep(&pause, NULL);
	}
	return rv;
}

int
main(int argc, char **argv)
{
	wk_worker w;
	const char *url = NULL;
	bool have_id = false;
	sigset_t sigs;
	size_t nengines;
	long ncpu;
	int rv, sig, a, rc = 1;

	memset(&w, 0, sizeof(w));
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	w.nexec = ncpu < 2 ? 2 : ncpu > 256 ? 256 : (unsigned)ncpu;
	w.nctx = 32;
	w.budget = (size_t)1 << 30;
	for (a = 1; a < argc; a++) {
		const char *o = argv[a];
		const char *v = a + 1 < argc ? argv[a + 1] : NULL;
		if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			fputs(usage, stdout);
			return 0;
		} else if (strcmp(o, "--connect") == 0 && v) {
			url = v, a++;
		} else if (strcmp(o, "--id") == 0 && v) {
			if (!parse_uint(v, 0, 1000000, &w.id))
				return die_usage("bad worker id", v);
			have_id = true, a++;
		} else if (strcmp(o, "--executors") == 0 && v) {
			if (!parse_uint(v, 1, 256, &w.nexec))
				return die_usage("bad executor count (1-256)", v);
			a++;
		} else if (strcmp(o, "--contexts") == 0 && v) {
			/* Bounded: nng 1.5 degrades with thousands of contexts. */
			if (!parse_uint(v, 1, 1024, &w.nctx))
				return die_usage("bad context count (1-1024)", v);
			a++;
		} else if (strcmp(o, "--memory-budget") == 0 && v) {
			if (mj_parse_size(v, &w.budget) != MJ_OK || w.budget == 0)
				return die_usage("bad size", v);
			a++;
		} else {
			return die_usage("unknown or incomplete option", o);
		}
	}
	if (url == NULL || !have_id)
		return die_usage("--connect and --id are required", NULL);
	wk_log_set_id(w.id);

	/* Blocked before any thread starts, so every thread inherits the mask and main alone
	 * takes the signals with sigwait. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (pthread_mutex_init(&w.mu, NULL) != 0)
		return 1;
	if (pthread_cond_init(&w.work_cv, NULL) != 0)
		goto fail_work_cv;
	if (pthread_cond_init(&w.idle_cv, NULL) != 0)
		goto fail_idle_cv;
	if (wk_table_init(&w) != MJ_OK)
		goto fail_table;
	if (mj_engine_global_init() != MJ_OK) {
		wk_log("event=error what=engine_global_init");
		goto fail_engine;
	}
	if ((rv = nng_rep0_open(&w.sock)) != 0) {
		wk_log("event=error what=nng_rep0_open error=\"%s\"", nng_strerror(rv));
		goto fail_engine;
	}
	if ((rv = nng_socket_set_size(w.sock, NNG_OPT_RECVMAXSZ, WK_RECV_MAX)) != 0) {
		wk_log("event=error what=recvmaxsz error=\"%s\"", nng_strerror(rv));
		goto fail_socket;
	}
	if ((rv = dial(w.sock, url)) != 0) {
		wk_log("event=error what=connect url=%s error=\"%s\"", url, nng_strerror(rv));
		goto fail_socket;
	}
	wk_log("event=connect url=%s", url);
	if (wk_serve_init(&w) != MJ_OK)
		goto fail_socket;
	if (worker_confine() != 0) {
		wk_log("event=error what=confine");
		goto fail_serve;
	}
	wk_serve_start(&w);
	wk_log("event=start pid=%ld executors=%u contexts=%u memory_budget=%zu", (long)getpid(),
	       w.nexec, w.nctx, w.budget);

	for (;;) {
		if (sigwait(&sigs, &sig) == 0)
			break;
	}
	pthread_mutex_lock(&w.mu);
	nengines = w.nengines;
	pthread_mutex_unlock(&w.mu);
	wk_log("event=shutdown signal=%d engines=%zu", sig, nengines);
	if (!wk_serve_stop(&w, DRAIN_MS)) {
		/* A call is stuck past its limits; the process exit is what ends it. */
		wk_log("event=shutdown_forced reason=calls_still_running");
		_exit(1);
	}
	rc = 0;
	wk_log("event=exit status=0");

fail_serve:
	if (rc != 0)
		wk_serve_stop(&w, 0);
	wk_serve_fini(&w);
fail_socket:
	nng_close(w.sock);
fail_engine:
	wk_table_fini(&w);
fail_table:
	pthread_cond_destroy(&w.idle_cv);
fail_idle_cv:
	pthread_cond_destroy(&w.work_cv);
fail_work_cv:
	pthread_mutex_destroy(&w.mu);
	nng_fini();
	return rc;
}
