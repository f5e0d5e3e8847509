/* The integration tests' harness: starts the real moonjaild (with the real moonjail-worker)
 * from the build tree and calls it over real nng sockets. Each tests/supervisor/ *_test.c is one
 * executable that includes this once. */
#ifndef MJ_TESTS_SUPERVISOR_HARNESS_H
#define MJ_TESTS_SUPERVISOR_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "mj/proto.h"
#include "mj/text.h"

extern char **environ;

typedef struct svc {
	pid_t pid;
	char dir[64];
	char url[128];
	char log[128];
} svc;

/* A command that svc_start runs moonjaild under (it must exec it in the same process, as
 * prlimit(1) does), or NULL. */
static const char *const *svc_wrap;

/* Every service started, so a failed test (which longjmps out) leaves no process behind. */
static pid_t started[32];
static size_t nstarted;

static inline uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void
sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* One synchronous call on a fresh REQ socket; returns the nng error or 0 with *out set. */
static inline int
call_raw(const char *url, const void *buf, size_t len, mj_response **out, unsigned timeout_ms)
{
	ProtobufCMessage *m = NULL;
	nng_socket s;
	nng_msg *msg;
	int rv;

	if ((rv = nng_req0_open(&s)) != 0)
		return rv;
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	if ((rv = nng_dial(s, url, NULL, 0)) != 0)
		goto done;
	if ((rv = nng_msg_alloc(&msg, 0)) != 0)
		goto done;
	nng_msg_append(msg, buf, len);
	if ((rv = nng_sendmsg(s, msg, 0)) != 0) {
		nng_msg_free(msg);
		goto done;
	}
	if ((rv = nng_recvmsg(s, &msg, 0)) != 0)
		goto done;
	if (mj_proto_unpack(&moonjail__v1__response__descriptor, nng_msg_body(msg),
	                    nng_msg_len(msg), NULL, &m, NULL, 0) != MJ_OK)
		rv = NNG_EPROTO;
	nng_msg_free(msg);
	*out = (mj_response *)m;
done:
	nng_close(s);
	return rv;
}

static uint64_t next_id = 1;

static inline int
call_op(const char *url, const char *tenant, const char *engine, int op, const char *src,
        mj_response **out, unsigned timeout_ms)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;
	Moonjail__V1__Ping ping = MOONJAIL__V1__PING__INIT;
	Moonjail__V1__Reset reset = MOONJAIL__V1__RESET__INIT;
	uint8_t *buf;
	size_t len;
	int rv;

	req.version = MJ_PROTO_VERSION;
	req.id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
	req.tenant = (char *)tenant;
	req.engine = (char *)(engine ? engine : "");
	req.op_case = (Moonjail__V1__Request__OpCase)op;
	if (op == MOONJAIL__V1__REQUEST__OP_EVAL) {
		ev.source.data = (uint8_t *)src;
		ev.source.len = strlen(src);
		req.eval = &ev;
	} else if (op == MOONJAIL__V1__REQUEST__OP_PING) {
		req.ping = &ping;
	} else if (op == MOONJAIL__V1__REQUEST__OP_RESET) {
		req.reset = &reset;
	}
	assert_int_equal(mj_proto_pack(&req.base, &buf, &len), MJ_OK);
	rv = call_raw(url, buf, len, out, timeout_ms);
	mj_free(buf);
	if (rv == 0)
		assert_int_equal((*out)->id, req.id);
	return rv;
}

static inline mj_response *
eval_waiting(const svc *s, const char *tenant, const char *src, unsigned timeout_ms)
{
	mj_response *r = NULL;

	assert_int_equal(
	    call_op(s->url, tenant, NULL, MOONJAIL__V1__REQUEST__OP_EVAL, src, &r, timeout_ms), 0);
	return r;
}

/* eval with a 10 s wait. */
static inline mj_response *
eval(const svc *s, const char *tenant, const char *src)
{
	return eval_waiting(s, tenant, src, 10000);
}

static inline int64_t
eval_int_waiting(const svc *s, const char *tenant, const char *src, unsigned timeout_ms)
{
	mj_response *r = eval_waiting(s, tenant, src, timeout_ms);
	int64_t v;

	if (r->status != MOONJAIL__V1__STATUS__STATUS_OK)
		fail_msg("%s: %s", src, r->error ? r->error->message : "?");
	assert_int_equal(r->n_values, 1);
	assert_int_equal(r->values[0]->kind_case, MOONJAIL__V1__VALUE__KIND_INTEGER);
	v = r->values[0]->integer;
	mj_proto_free(&r->base);
	return v;
}

static inline int64_t
eval_int(const svc *s, const char *tenant, const char *src)
{
	return eval_int_waiting(s, tenant, src, 10000);
}

/* Runs argv (found on PATH) with stderr to errlog and waits up to 10 s for it to exit; returns
 * its wait status. One still running then is killed and fails the test with what. */
static inline int
run_to_exit(const char *const *argv, const char *errlog, const char *what)
{
	posix_spawn_file_actions_t fa;
	uint64_t t0;
	int status;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(posix_spawnp(&pid, argv[0], &fa, NULL, (char **)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	for (t0 = now_ms(); waitpid(pid, &status, WNOHANG) == 0; sleep_ms(20)) {
		if (now_ms() - t0 > 10000) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("%s", what);
		}
	}
	return status;
}

static inline void
svc_start(svc *s, const char *const *extra)
{
	const char *argv[40];
	posix_spawn_file_actions_t fa;
	mj_response *r;
	uint64_t t0;
	int n = 0;

	strcpy(s->dir, "/tmp/mj-svc-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->url, sizeof(s->url), "ipc://%s/s.sock", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/moonjaild.log", s->dir);
	for (n = 0; svc_wrap != NULL && svc_wrap[n] != NULL && n < 8; n++)
		argv[n] = svc_wrap[n];
	argv[n++] = MOONJAILD_BIN;
	argv[n++] = "--runtime-dir";
	argv[n++] = s->dir;
	argv[n++] = "--listen";
	argv[n++] = s->url;
	argv[n++] = "--worker-bin";
	argv[n++] = MOONJAIL_WORKER_BIN;
	while (extra != NULL && *extra != NULL && n < 38)
		argv[n++] = *extra++;
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(posix_spawnp(&s->pid, argv[0], &fa, NULL, (char **)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	if (nstarted < sizeof(started) / sizeof(started[0]))
		started[nstarted++] = s->pid;
	/* Ready when a ping is answered. */
	for (t0 = now_ms(); now_ms() - t0 < 10000; sleep_ms(20)) {
		r = NULL;
		if (call_op(s->url, "probe", NULL, MOONJAIL__V1__REQUEST__OP_PING, NULL, &r, 500) ==
		    0) {
			mj_proto_free(&r->base);
			return;
		}
	}
	fail_msg("moonjaild did not answer within 10 s (log: %s)", s->log);
}

static inline int
svc_stop(svc *s)
{
	int status = -1, i;

	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	for (i = 0; i < 1000; i++) {
		if (waitpid(s->pid, &status, WNOHANG) == s->pid)
			break;
		sleep_ms(10);
	}
	if (i == 1000) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, &status, 0);
	}
	for (i = 0; i < (int)nstarted; i++)
		if (started[i] == s->pid)
			started[i] = 0;
	s->pid = 0;
	if (status != 0) {
		/* An unclean stop (a sanitizer report, a crash): show the end of the log, which
		 * lives in a directory CI does not keep. */
		char line[1024];
		long keep = 0;
		FILE *f = fopen(s->log, "r");

		fprintf(stderr, "moonjaild stopped with status %d; the end of %s:\n", status,
		        s->log);
		if (f != NULL) {
			if (fseek(f, 0, SEEK_END) == 0 && (keep = ftell(f)) > 16384)
				fseek(f, keep - 16384, SEEK_SET);
			else
				fseek(f, 0, SEEK_SET);
			while (fgets(line, sizeof(line), f) != NULL)
				if (strstr(line, "was not suspended") == NULL)
					fputs(line, stderr);
			fclose(f);
		}
	}
	return status;
}

/* The newest pid the log reports for worker index w. */
static inline pid_t
worker_pid(const svc *s, int w)
{
	char line[512], key[32];
	pid_t pid = 0;
	FILE *f = fopen(s->log, "r");
	const char *p;

	snprintf(key, sizeof(key), "worker=%d pid=", w);
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, "event=worker-started") != NULL && (p = strstr(line, key)) != NULL)
			pid = (pid_t)atoi(p + strlen(key));
	fclose(f);
	return pid;
}

/* How many lines of the log contain every one of the given strings (NULL-terminated). */
static inline int
log_count(const svc *s, const char *const *needles)
{
	char line[1024];
	FILE *f = fopen(s->log, "r");
	int n = 0, i;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		for (i = 0; needles[i] != NULL && strstr(line, needles[i]) != NULL; i++)
			;
		if (needles[i] == NULL)
			n++;
	}
	fclose(f);
	return n;
}

/* Waits up to 5 s for a log line with every needle; returns whether it came. */
static inline bool
log_wait(const svc *s, const char *const *needles)
{
	uint64_t t0;

	for (t0 = now_ms(); now_ms() - t0 < 5000; sleep_ms(10))
		if (log_count(s, needles) > 0)
			return true;
	return false;
}

/* Whether process pid is stopped (state T in /proc/pid/stat). */
static inline bool
stopped(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && p[2] == 'T';
}

/* A tenant name that the supervisor routes to worker w of n. */
static inline void
tenant_on(int w, int n, const char *prefix, char *out, size_t cap)
{
	int i;

	for (i = 0; i < 10000; i++) {
		snprintf(out, cap, "%s%d", prefix, i);
		if ((int)(mj_fnv1a(MJ_FNV1A_INIT, out) % (uint64_t)n) == w)
			return;
	}
	fail_msg("no tenant for worker %d", w);
}

static inline void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static inline mj_response *
eval_engine(const svc *s, const char *tenant, const char *engine, const char *src)
{
	mj_response *r = NULL;

	assert_int_equal(
	    call_op(s->url, tenant, engine, MOONJAIL__V1__REQUEST__OP_EVAL, src, &r, 10000), 0);
	return r;
}

/* main() of an integration test: runs the group (a CMUnitTest array), then kills whatever
 * service a failed test left running. */
#define SVC_RUN_TESTS(tests)                                                                       \
	(signal(SIGPIPE, SIG_IGN), svc_finish(cmocka_run_group_tests(tests, NULL, NULL)))

/* Runs the real CLI; returns its exit status, with stdout and stderr in the buffers. */
#ifdef MOONJAIL_BIN
static inline int
run_cli(const svc *s, const char *const *args, char *out, size_t outcap, char *err, size_t errcap)
{
	char outp[128], errp[128];
	const char *argv[24];
	posix_spawn_file_actions_t fa;
	int n = 0, status;
	size_t len;
	FILE *f;
	pid_t pid;

	snprintf(outp, sizeof(outp), "%s/cli.out", s->dir);
	snprintf(errp, sizeof(errp), "%s/cli.err", s->dir);
	argv[n++] = MOONJAIL_BIN;
	while (*args != NULL && n < 22)
		argv[n++] = *args++;
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(posix_spawn(&pid, MOONJAIL_BIN, &fa, NULL, (char **)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	f = fopen(outp, "r");
	len = fread(out, 1, outcap - 1, f);
	out[len] = '\0';
	fclose(f);
	f = fopen(errp, "r");
	len = fread(err, 1, errcap - 1, f);
	err[len] = '\0';
	fclose(f);
	return WEXITSTATUS(status);
}
#endif

/* Kills every service a test started and did not stop; for main, after the tests ran. */
static inline void
svc_cleanup(void)
{
	size_t i;

	for (i = 0; i < nstarted; i++) {
		if (started[i] > 0 && kill(started[i], SIGKILL) == 0)
			waitpid(started[i], NULL, 0);
	}
}

static inline int
svc_finish(int rc)
{
	svc_cleanup();
	return rc;
}

#endif
