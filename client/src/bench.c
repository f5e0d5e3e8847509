/* moonjail-bench: a load generator for moonjaild, with a raw nng REQ/REP echo as its baseline. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "mj/common.h"
#include "mj/proto.h"
#include "mj/text.h"

#define MAX_CONCURRENCY 1024
#define MAX_TENANTS 100000
#define EXIT_ERRORS 1
#define EXIT_USAGE 2
/* Counted apart from the script error kinds. */
#define N_KINDS (MJ_KIND_INTERNAL + 1)

static const char usage_text[] =
    "usage: moonjail-bench [options]\n"
    "       moonjail-bench --echo [options]\n"
    "       moonjail-bench --echo-server URL [--concurrency C]\n"
    "\n"
    "Sends eval requests to moonjaild from C concurrent nng REQ contexts and prints the\n"
    "throughput, latency percentiles and CPU time per request (this process's, and with\n"
    "--echo the echo server's).\n"
    "\n"
    "options:\n"
    "  --url URL           service address (default: $MOONJAIL_URL, else\n"
    "                      ipc:///run/moonjail/moonjail.sock)\n"
    "  --concurrency C     requests in flight at once (default 1, at most 1024)\n"
    "  --requests N        measured requests (default 10000)\n"
    "  --warmup N          requests sent first and not measured (default 1000)\n"
    "  --tenants T         spread requests over T tenants bench-0 .. bench-(T-1) (default 1)\n"
    "  -e CODE             the script to eval (default: return 1)\n"
    "  --timeout-ms N      per-request send and receive timeout (default 30000)\n"
    "  --json              print the results as one JSON object\n"
    "  --echo              baseline: start a raw nng REP echo server (this program with\n"
    "                      --echo-server, as a separate process) on a private ipc path, and\n"
    "                      send the same request bytes to it\n"
    "  --echo-thread       the same, with the echo server on a thread of this process\n"
    "  --raw               do not decode responses (for --url pointing at an echo server)\n"
    "  --echo-server URL   only serve a raw echo at URL until interrupted\n"
    "  -h, --help          this text\n"
    "\n"
    "exit status: 0 every request succeeded; 1 some failed; 2 usage or setup error.\n";

typedef struct bench bench;

/* CPU time used during the measured phase, in microseconds: this process (the client, and
 * with --echo-thread its echo server too) and the --echo server child; -1 when unknown. */
typedef struct cpu_use {
	double self_us;
	double server_us;
} cpu_use;

typedef struct worker {
	bench *b;
	nng_ctx ctx;
	nng_aio *aio;
	bool receiving;
	uint64_t id;
	struct timespec start;
} worker;

struct bench {
	nng_socket sock;
	worker *workers;
	size_t concurrency;
	uint32_t timeout_ms;
	bool raw;
	const char *code;
	size_t tenants;
	char **tenant_names;

	pthread_mutex_t mu;
	pthread_cond_t done_cv;
	uint64_t next_id;
	size_t to_issue; /* requests of the current phase not yet started */
	size_t in_flight;
	bool recording;
	uint64_t *lat_ns;
	size_t n_lat;
	uint64_t kinds[N_KINDS];
	uint64_t transport; /* send/receive failures and timeouts */
	uint64_t malformed; /* undecodable or mismatched responses */
};

static uint64_t
elapsed_ns(const struct timespec *a, const struct timespec *b)
{
	return (uint64_t)(b->tv_sec - a->tv_sec) * 1000000000u + (uint64_t)b->tv_nsec -
	       (uint64_t)a->tv_nsec;
}

/* Starts the worker's next request, or retires the worker when the phase is issued. b->mu is
 * held only to claim the request: packing and sending happen outside it, so the client's
 * threads do not queue behind one another's sends. */
static void
issue(worker *w)
{
	bench *b = w->b;
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;
	nng_msg *msg;
	size_t n;

	for (;;) {
		pthread_mutex_lock(&b->mu);
		if (b->to_issue == 0) {
			if (--b->in_flight == 0)
				pthread_cond_signal(&b->done_cv);
			pthread_mutex_unlock(&b->mu);
			return;
		}
		b->to_issue--;
		w->id = b->next_id++;
		pthread_mutex_unlock(&b->mu);
		req.version = MJ_PROTO_VERSION;
		req.id = w->id;
		req.tenant = b->tenant_names[w->id % b->tenants];
		req.engine = "default";
		ev.source.data = (uint8_t *)b->code;
		ev.source.len = strlen(b->code);
		req.op_case = MOONJAIL__V1__REQUEST__OP_EVAL;
		req.eval = &ev;
		n = protobuf_c_message_get_packed_size(&req.base);
		if (nng_msg_alloc(&msg, n) != 0) {
			pthread_mutex_lock(&b->mu);
			b->transport++;
			pthread_mutex_unlock(&b->mu);
			continue;
		}
		protobuf_c_message_pack(&req.base, nng_msg_body(msg));
		w->receiving = false;
		clock_gettime(CLOCK_MONOTONIC, &w->start);
		nng_aio_set_msg(w->aio, msg);
		nng_aio_set_timeout(w->aio, (nng_duration)b->timeout_ms);
		nng_ctx_send(w->ctx, w->aio);
		return;
	}
}

/* What a response says: a kind, or -1 when it is undecodable or answers another request.
 * Runs without b->mu, so the client threads decode in parallel. */
static int
classify(const bench *b, uint64_t id, nng_msg *msg)
{
	ProtobufCMessage *m;
	mj_response *resp;
	mj_proto_caps caps;
	int kind;

	if (b->raw)
		return MJ_KIND_NONE;
	mj_proto_caps_default(&caps);
	if (mj_proto_unpack(&moonjail__v1__response__descriptor, nng_msg_body(msg),
	                    nng_msg_len(msg), &caps, &m, NULL, 0) != MJ_OK)
		return -1;
	resp = (mj_response *)m;
	if (resp->id != id)
		kind = -1;
	else if (resp->status == MOONJAIL__V1__STATUS__STATUS_OK)
		kind = MJ_KIND_NONE;
	else
		kind = resp->error != NULL ? (int)mj_proto_kind_from(resp->error->kind)
		                           : MJ_KIND_INTERNAL;
	mj_proto_free(m);
	return kind;
}

static void
worker_cb(void *arg)
{
	worker *w = arg;
	bench *b = w->b;
	struct timespec now;
	nng_msg *msg;
	int rv = nng_aio_result(w->aio), kind;

	if (!w->receiving) {
		if (rv == 0) {
			w->receiving = true;
			nng_ctx_recv(w->ctx, w->aio);
			return;
		}
		nng_msg_free(nng_aio_get_msg(w->aio));
		pthread_mutex_lock(&b->mu);
		b->transport++;
		pthread_mutex_unlock(&b->mu);
		issue(w);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	msg = rv == 0 ? nng_aio_get_msg(w->aio) : NULL;
	kind = msg != NULL ? classify(b, w->id, msg) : -1;
	pthread_mutex_lock(&b->mu);
	if (rv != 0) {
		b->transport++;
	} else {
		if (kind < 0)
			b->malformed++;
		else
			b->kinds[kind]++;
		if (b->recording)
			b->lat_ns[b->n_lat++] = elapsed_ns(&w->start, &now);
	}
	pthread_mutex_unlock(&b->mu);
	if (msg != NULL)
		nng_msg_free(msg);
	issue(w);
}

/* Runs one phase of n requests and waits until every one has ended (each is bounded by the
 * aio timeouts). */
static void
run_phase(bench *b, size_t n, bool record)
{
	size_t i;

	pthread_mutex_lock(&b->mu);
	b->to_issue = n;
	b->recording = record;
	b->in_flight = b->concurrency;
	pthread_mutex_unlock(&b->mu);
	for (i = 0; i < b->concurrency; i++)
		issue(&b->workers[i]);
	pthread_mutex_lock(&b->mu);
	while (b->in_flight > 0)
		pthread_cond_wait(&b->done_cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double
pct_us(const uint64_t *sorted, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)n);
	if (i >= n)
		i = n - 1;
	return (double)sorted[i] / 1000.0;
}

/* The echo server: C REP contexts, each receiving a request and sending it straight back. */
typedef struct echo_ctx {
	nng_ctx ctx;
	nng_aio *aio;
	bool sending;
} echo_ctx;

typedef struct echo_server {
	nng_socket sock;
	echo_ctx *ctxs;
	size_t n;
	char dir[64];
	char url[128];
} echo_server;

static void
echo_cb(void *arg)
{
	echo_ctx *e = arg;
	int rv = nng_aio_result(e->aio);

	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	if (!e->sending && rv == 0) {
		e->sending = true;
		nng_aio_set_msg(e->aio, nng_aio_get_msg(e->aio));
		nng_ctx_send(e->ctx, e->aio);
		return;
	}
	if (e->sending && rv != 0)
		nng_msg_free(nng_aio_get_msg(e->aio));
	e->sending = false;
	nng_ctx_recv(e->ctx, e->aio);
}

static int
echo_start(echo_server *s, const char *url, size_t n)
{
	size_t i;
	int rv;

	memset(s, 0, sizeof(*s));
	if (url == NULL) {
		snprintf(s->dir, sizeof(s->dir), "/tmp/mj-echo.XXXXXX");
		if (mkdtemp(s->dir) == NULL) {
			fprintf(stderr, "moonjail-bench: mkdtemp: %s\n", strerror(errno));
			return -1;
		}
		snprintf(s->url, sizeof(s->url), "ipc://%s/echo.sock", s->dir);
	} else {
		snprintf(s->url, sizeof(s->url), "%s", url);
	}
	if ((s->ctxs = calloc(n, sizeof(*s->ctxs))) == NULL)
		return -1;
	if ((rv = nng_rep0_open(&s->sock)) != 0 ||
	    (rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, 16u << 20)) != 0 ||
	    (rv = nng_listen(s->sock, s->url, NULL, 0)) != 0) {
		fprintf(stderr, "moonjail-bench: echo server at %s: %s\n", s->url,
		        nng_strerror(rv));
		return -1;
	}
	for (i = 0; i < n; i++) {
		if ((rv = nng_aio_alloc(&s->ctxs[i].aio, echo_cb, &s->ctxs[i])) != 0 ||
		    (rv = nng_ctx_open(&s->ctxs[i].ctx, s->sock)) != 0) {
			fprintf(stderr, "moonjail-bench: echo context: %s\n", nng_strerror(rv));
			return -1;
		}
		s->n = i + 1;
		nng_ctx_recv(s->ctxs[i].ctx, s->ctxs[i].aio);
	}
	return 0;
}

static void
echo_stop(echo_server *s)
{
	size_t i;

	/* Stop every aio before closing, so no callback runs on freed memory. */
	for (i = 0; i < s->n; i++)
		nng_aio_stop(s->ctxs[i].aio);
	nng_close(s->sock);
	for (i = 0; i < s->n; i++)
		nng_aio_free(s->ctxs[i].aio);
	free(s->ctxs);
	if (s->dir[0] != '\0') {
		char path[160];
		snprintf(path, sizeof(path), "%s/echo.sock", s->dir);
		unlink(path);
		rmdir(s->dir);
	}
}

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int
serve_echo(const char *url, size_t n)
{
	echo_server s;

	if (echo_start(&s, url, n) != 0)
		return EXIT_USAGE;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("echo server on %s with %zu contexts; Ctrl-C stops it\n", s.url, n);
	fflush(stdout);
	/* nng's threads may take the signal, so poll the flag rather than pause(). */
	while (!interrupted)
		usleep(50000);
	echo_stop(&s);
	return 0;
}

extern char **environ;

/* Starts `<this program> --echo-server URL` on a private ipc path and waits (at most 5 s) for
 * its socket to appear. The child is the fair baseline: the service is another process too. */
static int
echo_spawn(echo_server *s, size_t n, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	char count[32], path[160];
	char *argv[6];
	struct stat st;
	int i, rv;

	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/mj-echo.XXXXXX");
	if (mkdtemp(s->dir) == NULL) {
		fprintf(stderr, "moonjail-bench: mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(s->url, sizeof(s->url), "ipc://%s/echo.sock", s->dir);
	snprintf(path, sizeof(path), "%s/echo.sock", s->dir);
	snprintf(count, sizeof(count), "%zu", n);
	argv[0] = "moonjail-bench";
	argv[1] = "--echo-server";
	argv[2] = s->url;
	argv[3] = "--concurrency";
	argv[4] = count;
	argv[5] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	rv = posix_spawn(pid, "/proc/self/exe", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rv != 0) {
		fprintf(stderr, "moonjail-bench: cannot start the echo server: %s\n", strerror(rv));
		rmdir(s->dir);
		return -1;
	}
	for (i = 0; i < 500 && stat(path, &st) != 0; i++)
		usleep(10000);
	return 0;
}

/* Stops the child with SIGTERM (SIGKILL after 5 s) and removes its directory. */
static void
echo_reap(echo_server *s, pid_t pid)
{
	char path[160];
	int i, wst;

	kill(pid, SIGTERM);
	for (i = 0; i < 500 && waitpid(pid, &wst, WNOHANG) == 0; i++)
		usleep(10000);
	if (i == 500) {
		kill(pid, SIGKILL);
		waitpid(pid, &wst, 0);
	}
	snprintf(path, sizeof(path), "%s/echo.sock", s->dir);
	unlink(path);
	rmdir(s->dir);
}

static int
usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "moonjail-bench: %s%s%s\nTry 'moonjail-bench --help'.\n", what,
	        arg ? ": " : "", arg ? arg : "");
	return EXIT_USAGE;
}

static bool
parse_count(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	return v != NULL && mj_parse_u64(v, out) == MJ_OK && *out >= min && *out <= max;
}

/* This process's user + system CPU time, in microseconds. */
static double
self_cpu_us(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Another process's user + system CPU time from /proc, in microseconds; -1 if unreadable. */
static double
proc_cpu_us(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	long tck = sysconf(_SC_CLK_TCK);
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (pid <= 0 || tck <= 0 || (f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: the fields follow its last ')'.
	 * utime and stime are fields 14 and 15; after the name come field 3 onwards. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1e6 / (double)tck;
}

static void
print_results(const bench *b, const char *target, const char *url, uint64_t requests,
              uint64_t warmup, double seconds, const cpu_use *cpu, bool json)
{
	double per = b->n_lat > 0 ? (double)b->n_lat : 1;
	double thr = seconds > 0 ? (double)b->n_lat / seconds : 0;
	uint64_t errors = b->transport + b->malformed;
	double mean = 0;
	size_t i;
	mj_buf o = {0};

	for (i = 1; i < N_KINDS; i++)
		errors += b->kinds[i];
	for (i = 0; i < b->n_lat; i++)
		mean += (double)b->lat_ns[i] / 1000.0;
	if (b->n_lat > 0)
		mean /= (double)b->n_lat;
	if (json) {
		mj_buf_printf(&o, "{\"target\":\"%s\",\"url\":", target);
		mj_buf_json_string(&o, url, strlen(url));
		mj_buf_printf(&o,
		              ",\"concurrency\":%zu,\"requests\":%" PRIu64 ",\"warmup\":%" PRIu64
		              ",\"tenants\":%zu,\"seconds\":%.6f,\"throughput\":%.1f,"
		              "\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p99.9\":%.1f,"
		              "\"max\":%.1f,\"mean\":%.1f},\"ok\":%" PRIu64 ",\"errors\":{",
		              b->concurrency, requests, warmup, b->tenants, seconds, thr,
		              pct_us(b->lat_ns, b->n_lat, 50), pct_us(b->lat_ns, b->n_lat, 99),
		              pct_us(b->lat_ns, b->n_lat, 99.9),
		              b->n_lat ? (double)b->lat_ns[b->n_lat - 1] / 1000.0 : 0.0, mean,
		              b->kinds[MJ_KIND_NONE]);
		mj_buf_printf(&o, "\"connection\":%" PRIu64 ",\"malformed\":%" PRIu64, b->transport,
		              b->malformed);
		for (i = 1; i < N_KINDS; i++)
			mj_buf_printf(&o, ",\"%s\":%" PRIu64, mj_kind_name((mj_kind)i),
			              b->kinds[i]);
		mj_buf_printf(&o, "},\"cpu_us_per_request\":{\"client\":");
		if (cpu->self_us >= 0)
			mj_buf_printf(&o, "%.2f", cpu->self_us / per);
		else
			mj_buf_printf(&o, "null");
		if (cpu->server_us >= 0)
			mj_buf_printf(&o, ",\"echo_server\":%.2f", cpu->server_us / per);
		mj_buf_printf(&o, "}}\n");
	} else {
		mj_buf_printf(&o, "target: %s at %s\n", target, url);
		mj_buf_printf(&o,
		              "concurrency %zu, requests %" PRIu64 " (+%" PRIu64
		              " warmup), tenants %zu\n",
		              b->concurrency, requests, warmup, b->tenants);
		mj_buf_printf(&o, "throughput: %.1f req/s (%.3f s)\n", thr, seconds);
		mj_buf_printf(&o,
		              "latency (us): p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
		              pct_us(b->lat_ns, b->n_lat, 50), pct_us(b->lat_ns, b->n_lat, 99),
		              pct_us(b->lat_ns, b->n_lat, 99.9),
		              b->n_lat ? (double)b->lat_ns[b->n_lat - 1] / 1000.0 : 0.0, mean);
		mj_buf_printf(&o, "errors:");
		if (errors == 0)
			mj_buf_printf(&o, " none");
		if (b->transport)
			mj_buf_printf(&o, " connection=%" PRIu64, b->transport);
		if (b->malformed)
			mj_buf_printf(&o, " malformed=%" PRIu64, b->malformed);
		for (i = 1; i < N_KINDS; i++)
			if (b->kinds[i])
				mj_buf_printf(&o, " %s=%" PRIu64, mj_kind_name((mj_kind)i),
				              b->kinds[i]);
		mj_buf_printf(&o, "\n");
		if (cpu->self_us >= 0) {
			mj_buf_printf(&o, "cpu (us/request): client %.2f", cpu->self_us / per);
			if (cpu->server_us >= 0)
				mj_buf_printf(&o, "  echo server %.2f", cpu->server_us / per);
			mj_buf_printf(&o, "\n");
		}
	}
	if (!o.failed)
		fwrite(o.ptr, 1, o.len, stdout);
	mj_buf_free(&o);
}

int
main(int argc, char **argv)
{
	const char *url = NULL, *echo_server_url = NULL, *env;
	uint64_t concurrency = 1, requests = 10000, warmup = 1000, tenants = 1, timeout = 30000;
	bool json = false, echo = false, echo_thread = false;
	pid_t echo_pid = -1;
	struct timespec t0, t1;
	cpu_use cpu0, cpu;
	echo_server es;
	bench b;
	uint64_t errors;
	size_t i;
	int rv, rc = EXIT_USAGE;

	memset(&b, 0, sizeof(b));
	b.code = "return 1";
	for (i = 1; i < (size_t)argc; i++) {
		const char *o = argv[i], *v = i + 1 < (size_t)argc ? argv[i + 1] : NULL;
		if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else if (strcmp(o, "--json") == 0) {
			json = true;
			continue;
		} else if (strcmp(o, "--echo") == 0) {
			echo = true;
			continue;
		} else if (strcmp(o, "--echo-thread") == 0) {
			echo = echo_thread = true;
			continue;
		} else if (strcmp(o, "--raw") == 0) {
			b.raw = true;
			continue;
		}
		if (v == NULL)
			return usage_error("unknown or incomplete option", o);
		i++;
		if (strcmp(o, "--url") == 0)
			url = v;
		else if (strcmp(o, "--echo-server") == 0)
			echo_server_url = v;
		else if (strcmp(o, "-e") == 0)
			b.code = v;
		else if (strcmp(o, "--concurrency") == 0) {
			if (!parse_count(v, 1, MAX_CONCURRENCY, &concurrency))
				return usage_error("--concurrency takes 1 to 1024", v);
		} else if (strcmp(o, "--requests") == 0) {
			if (!parse_count(v, 1, 100000000, &requests))
				return usage_error("--requests takes 1 to 100000000", v);
		} else if (strcmp(o, "--warmup") == 0) {
			if (!parse_count(v, 0, 100000000, &warmup))
				return usage_error("--warmup takes 0 to 100000000", v);
		} else if (strcmp(o, "--tenants") == 0) {
			if (!parse_count(v, 1, MAX_TENANTS, &tenants))
				return usage_error("--tenants takes 1 to 100000", v);
		} else if (strcmp(o, "--timeout-ms") == 0) {
			if (!parse_count(v, 1, UINT32_MAX, &timeout))
				return usage_error("bad --timeout-ms", v);
		} else
			return usage_error("unknown option", o);
	}
	if (echo_server_url != NULL)
		return serve_echo(echo_server_url, concurrency < 64 ? 64 : (size_t)concurrency);
	if (echo && url != NULL)
		return usage_error("give --echo or --url, not both", NULL);
	if (echo) {
		if (echo_thread ? echo_start(&es, NULL, (size_t)concurrency) != 0
		                : echo_spawn(&es, (size_t)concurrency, &echo_pid) != 0)
			return EXIT_USAGE;
		url = es.url;
		b.raw = true;
	} else if (url == NULL) {
		url = (env = getenv("MOONJAIL_URL")) != NULL && env[0]
		          ? env
		          : "ipc:///run/moonjail/moonjail.sock";
	}

	b.concurrency = (size_t)concurrency;
	b.timeout_ms = (uint32_t)timeout;
	b.tenants = (size_t)tenants;
	b.next_id = 1;
	{
		/* Held for a few counters at a time by nng's threads: spinning briefly beats a
		 * futex sleep and wake-up. */
		pthread_mutexattr_t ma;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
		pthread_mutex_init(&b.mu, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	pthread_cond_init(&b.done_cv, NULL);
	b.lat_ns = calloc((size_t)requests, sizeof(*b.lat_ns));
	b.tenant_names = calloc(b.tenants, sizeof(char *));
	b.workers = calloc(b.concurrency, sizeof(*b.workers));
	if (b.lat_ns == NULL || b.tenant_names == NULL || b.workers == NULL) {
		fprintf(stderr, "moonjail-bench: out of memory\n");
		goto out;
	}
	for (i = 0; i < b.tenants; i++) {
		char name[32];
		snprintf(name, sizeof(name), "bench-%zu", i);
		if ((b.tenant_names[i] = strdup(name)) == NULL)
			goto out;
	}
	if ((rv = nng_req0_open(&b.sock)) != 0 ||
	    (rv = nng_socket_set_ms(b.sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(b.sock, NNG_OPT_RECVMAXSZ, 16u << 20)) != 0) {
		fprintf(stderr, "moonjail-bench: socket: %s\n", nng_strerror(rv));
		goto out;
	}
	if ((rv = nng_dial(b.sock, url, NULL, 0)) != 0) {
		fprintf(stderr, "moonjail-bench: cannot connect to %s: %s\n", url,
		        nng_strerror(rv));
		goto out_sock;
	}
	for (i = 0; i < b.concurrency; i++) {
		worker *w = &b.workers[i];
		w->b = &b;
		if ((rv = nng_aio_alloc(&w->aio, worker_cb, w)) != 0 ||
		    (rv = nng_ctx_open(&w->ctx, b.sock)) != 0) {
			fprintf(stderr, "moonjail-bench: context: %s\n", nng_strerror(rv));
			goto out_sock;
		}
	}
	if (warmup > 0)
		run_phase(&b, (size_t)warmup, false);
	memset(b.kinds, 0, sizeof(b.kinds));
	b.transport = b.malformed = 0;
	cpu0.self_us = self_cpu_us();
	cpu0.server_us = echo_pid > 0 ? proc_cpu_us(echo_pid) : -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	run_phase(&b, (size_t)requests, true);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cpu.self_us = self_cpu_us();
	cpu.server_us = echo_pid > 0 ? proc_cpu_us(echo_pid) : -1;
	cpu.self_us = cpu0.self_us >= 0 && cpu.self_us >= 0 ? cpu.self_us - cpu0.self_us : -1;
	cpu.server_us =
	    cpu0.server_us >= 0 && cpu.server_us >= 0 ? cpu.server_us - cpu0.server_us : -1;
	qsort(b.lat_ns, b.n_lat, sizeof(*b.lat_ns), cmp_u64);
	print_results(&b, echo || b.raw ? "echo" : "moonjail", url, requests, warmup,
	              (double)elapsed_ns(&t0, &t1) / 1e9, &cpu, json);
	errors = b.transport + b.malformed;
	for (i = 1; i < N_KINDS; i++)
		errors += b.kinds[i];
	rc = errors ? EXIT_ERRORS : 0;
out_sock:
	/* Every aio is idle here (each phase waits for its last request), so freeing is safe. */
	for (i = 0; i < b.concurrency; i++)
		if (b.workers[i].aio != NULL)
			nng_aio_stop(b.workers[i].aio);
	nng_close(b.sock);
	for (i = 0; i < b.concurrency; i++)
		if (b.workers[i].aio != NULL)
			nng_aio_free(b.workers[i].aio);
out:
	if (b.tenant_names != NULL)
		for (i = 0; i < b.tenants; i++)
			free(b.tenant_names[i]);
	free(b.tenant_names);
	free(b.workers);
	free(b.lat_ns);
	pthread_cond_destroy(&b.done_cv);
	pthread_mutex_destroy(&b.mu);
	if (echo_thread)
		echo_stop(&es);
	else if (echo)
		echo_reap(&es, echo_pid);
	return rc;
}
