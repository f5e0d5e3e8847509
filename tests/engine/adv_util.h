/* Harness for the adversarial engine tests: hostile scripts run in forked children, checked. */
#ifndef MJ_ADV_UTIL_H
#define MJ_ADV_UTIL_H

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mj/engine.h"

/*
 * Every hostile script runs in its own forked child, so a crash, an ASan report or a hang
 * in one script is reported under that script's name and the others still run. The parent
 * never touches an engine (the watchdog thread must start in the child that uses it).
 * Environment knobs for debugging: ADV_ONLY=<case name> runs one case, ADV_NOFORK=1 runs
 * cases in-process (for gdb), ADV_VERBOSE=1 prints every case's outcome, ADV_SKIP_BUGS=1 skips
 * the cases marked as known engine bugs, ADV_JOBS=N sets how many children run at once.
 */

/* Wall-clock bound of one hostile call unless a case says otherwise. */
#define ADV_MAX_MS 2000u
/* Extra time the parent grants a child (follow-up checks, LSan) before calling it hung. */
#define ADV_GRACE_MS 1500u

/* Case flags. */
#define ADV_OUTPUT_FULL 0x1u /* output_truncated and output_len == limits.output */

typedef struct adv_case {
	const char *name;
	const char *src;
	mj_kind kind;            /* the kind the call must end with */
	mj_kind alt;             /* a second acceptable kind; MJ_KIND_NONE for none */
	const char *needle;      /* the message must contain this, or NULL */
	const char *values;      /* rendering of the returned values (see adv_render), or NULL */
	const char *bug;         /* non-NULL: a known engine bug, kept failing until it is fixed */
	size_t len;              /* source length when it holds NUL bytes; 0: strlen(src) */
	const mj_limits *limits; /* NULL: the table's limits */
	unsigned max_ms;         /* wall-clock bound of the call; 0: ADV_MAX_MS */
	unsigned flags;
} adv_case;

static int adv_nfail; /* failed checks in this (child) process */

static inline void __attribute__((format(printf, 2, 3)))
adv_fail(const char *name, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	/* One write per line: several children share stderr. */
	n = snprintf(line, sizeof(line), "[  ADV   ] %s: FAIL: ", name);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
	adv_nfail++;
}

static inline uint64_t
adv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline bool
adv_env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static inline bool
adv_is_limit_kind(mj_kind k)
{
	return k == MJ_KIND_INSTRUCTIONS || k == MJ_KIND_TIMEOUT || k == MJ_KIND_MEMORY ||
	       k == MJ_KIND_OUTPUT;
}

/* Limits small enough to keep hostile scripts fast: 4 MiB heap, 4 KiB-ish results. */
static inline mj_limits
adv_limits(size_t memory, uint64_t instructions, uint32_t timeout_ms)
{
	mj_limits l;

	mj_limits_default(&l);
	l.memory = memory;
	l.instructions = instructions;
	l.timeout_ms = timeout_ms;
	return l;
}

static inline mj_engine *
adv_engine(const char *name, const mj_limits *limits)
{
	mj_engine_config cfg;
	mj_engine *e = NULL;
	mj_err err;

	mj_engine_config_default(&cfg);
	if (limits != NULL)
		cfg.limits = *limits;
	if ((err = mj_engine_new(&e, &cfg)) != MJ_OK) {
		adv_fail(name, "mj_engine_new: %s", mj_err_str(err));
		return NULL;
	}
	return e;
}

/* ---- rendering values, for compact expectations ---- */

typedef struct adv_buf {
	char *p;
	size_t len, cap;
} adv_buf;

static inline void __attribute__((format(printf, 2, 3)))
adv_bprintf(adv_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->len += (size_t)n < b->cap - b->len ? (size_t)n : b->cap - b->len - 1;
}

static inline void
adv_render_value(adv_buf *b, const mj_value *v, int depth)
{
	size_t i;

	if (depth > 40) {
		adv_bprintf(b, "...");
		return;
	}
	switch (v->type) {
	case MJ_VNIL:
		adv_bprintf(b, "nil");
		break;
	case MJ_VBOOL:
		adv_bprintf(b, "%s", v->u.b ? "true" : "false");
		break;
	case MJ_VINT:
		adv_bprintf(b, "%lld", (long long)v->u.i);
		break;
	case MJ_VFLOAT:
		adv_bprintf(b, "%gf", v->u.f);
		break;
	case MJ_VSTRING:
		adv_bprintf(b, "\"");
		for (i = 0; i < v->u.s.len && i < 64; i++) {
			unsigned char c = (unsigned char)v->u.s.ptr[i];
			if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
				adv_bprintf(b, "%c", c);
			else
				adv_bprintf(b, "\\%u", c);
		}
		adv_bprintf(b, "%s\"", v->u.s.len > 64 ? "..." : "");
		break;
	case MJ_VARRAY:
		adv_bprintf(b, "[");
		for (i = 0; i < v->u.a.len; i++) {
			adv_bprintf(b, "%s", i ? "," : "");
			adv_render_value(b, &v->u.a.items[i], depth + 1);
		}
		adv_bprintf(b, "]");
		break;
	case MJ_VMAP:
		adv_bprintf(b, "{");
		for (i = 0; i < v->u.m.len; i++) {
			adv_bprintf(b, "%s", i ? "," : "");
			adv_render_value(b, &v->u.m.keys[i], depth + 1);
			adv_bprintf(b, "=");
			adv_render_value(b, &v->u.m.vals[i], depth + 1);
		}
		adv_bprintf(b, "}");
		break;
	case MJ_VOPAQUE:
		adv_bprintf(b, "<%s>", v->u.s.ptr);
		break;
	}
}

/* Renders every returned value, separated by ", ": 1, "s", [1,2], {"a"=1}, <function>. */
static inline void
adv_render(const mj_result *r, char *out, size_t cap)
{
	adv_buf b = {out, 0, cap};
	size_t i;

	out[0] = '\0';
	for (i = 0; i < r->nvalues; i++) {
		adv_bprintf(&b, "%s", i ? ", " : "");
		adv_render_value(&b, &r->values[i], 0);
	}
}

/* ---- health checks ---- */

/* Evaluates src on e; the call must succeed and render as want. Returns false on failure. */
static inline bool
adv_expect_values(const char *name, mj_engine *e, const char *src, const char *want)
{
	char got[512];
	mj_result r;
	mj_err err;
	bool ok = true;

	if ((err = mj_engine_eval(e, src, strlen(src), "adv-check", &r)) != MJ_OK) {
		adv_fail(name, "%s: mj_engine_eval: %s", src, mj_err_str(err));
		return false;
	}
	adv_render(&r, got, sizeof(got));
	if (r.kind != MJ_KIND_NONE) {
		adv_fail(name, "%s: %s: %s", src, mj_kind_name(r.kind), r.message);
		ok = false;
	} else if (strcmp(got, want) != 0) {
		adv_fail(name, "%s: returned %s, want %s", src, got, want);
		ok = false;
	}
	mj_result_free(&r);
	return ok;
}

/* The engine still runs plain code, and so does a brand new one. */
static inline void
adv_check_healthy(const char *name, mj_engine *e)
{
	mj_engine *fresh;

	adv_expect_values(name, e, "return 1+1", "2");
	adv_expect_values(name, e,
	                  "local t = {} for i = 1, 100 do t[i] = tostring(i) end "
	                  "return #table.concat(t), select('#', pcall(error, 'x'))",
	                  "192, 2");
	if ((fresh = adv_engine(name, NULL)) != NULL) {
		adv_expect_values(name, fresh, "return 1+1", "2");
		mj_engine_free(fresh);
	}
}

static inline const mj_limits *
adv_case_limits(const adv_case *c, const mj_limits *table)
{
	return c->limits != NULL ? c->limits : table;
}

/* Runs one case on e and checks everything the result must say. */
static inline void
adv_check_case(const adv_case *c, mj_engine *e, const mj_limits *l)
{
	size_t len = c->len ? c->len : strlen(c->src);
	unsigned max_ms = c->max_ms ? c->max_ms : ADV_MAX_MS;
	size_t peak_max = l->memory + l->memory / 16 + (64u << 10);
	char got[512];
	uint64_t t0, ms;
	mj_result r;
	mj_err err;
	bool reset_expected;

	t0 = adv_now_ms();
	err = mj_engine_eval(e, c->src, len, "adv", &r);
	ms = adv_now_ms() - t0;
	if (err != MJ_OK) {
		adv_fail(c->name, "mj_engine_eval returned %s", mj_err_str(err));
		return;
	}
	if (adv_env("ADV_VERBOSE"))
		fprintf(stderr, "[  ADV   ] %s: %s in %llu ms: %s\n", c->name, mj_kind_name(r.kind),
		        (unsigned long long)ms, r.message ? r.message : "");
	if (r.kind != c->kind && (c->alt == MJ_KIND_NONE || r.kind != c->alt))
		adv_fail(c->name, "kind %s, want %s%s%s (message: %s)", mj_kind_name(r.kind),
		         mj_kind_name(c->kind), c->alt ? " or " : "",
		         c->alt ? mj_kind_name(c->alt) : "", r.message ? r.message : "(none)");
	else if (c->needle != NULL && (r.message == NULL || strstr(r.message, c->needle) == NULL))
		adv_fail(c->name, "message \"%s\" lacks \"%s\"", r.message ? r.message : "(none)",
		         c->needle);
	if (c->values != NULL && r.kind == MJ_KIND_NONE) {
		adv_render(&r, got, sizeof(got));
		if (strcmp(got, c->values) != 0)
			adv_fail(c->name, "returned %s, want %s", got, c->values);
	}
	if (ms > max_ms)
		adv_fail(c->name, "the call took %llu ms (bound %u ms)", (unsigned long long)ms,
		         max_ms);
	if (r.stats.memory_peak > peak_max)
		adv_fail(c->name, "memory peak %zu above limit + reserve (%zu)",
		         r.stats.memory_peak, peak_max);
	if (r.message != NULL && strlen(r.message) > 8192 + 3)
		adv_fail(c->name, "message of %zu bytes", strlen(r.message));
	if (r.output == NULL || r.output_len > l->output)
		adv_fail(c->name, "output %s of %zu bytes (limit %zu)",
		         r.output ? "present" : "missing", r.output_len, l->output);
	if ((c->flags & ADV_OUTPUT_FULL) && (!r.output_truncated || r.output_len != l->output))
		adv_fail(c->name, "output_truncated %d, output_len %zu, want 1 and %zu",
		         (int)r.output_truncated, r.output_len, l->output);
	reset_expected = adv_is_limit_kind(r.kind);
	if (r.engine_reset != reset_expected)
		adv_fail(c->name, "engine_reset %d after %s", (int)r.engine_reset,
		         mj_kind_name(r.kind));
	mj_result_free(&r);
	/* A sentinel global tells whether the engine really kept or lost its state. */
	adv_expect_values(c->name, e, "return ADV_SENTINEL", reset_expected ? "nil" : "42");
}

static inline void
adv_plant_sentinel(const char *name, mj_engine *e)
{
	static const char src[] = "ADV_SENTINEL = 42";
	mj_result r;

	if (mj_engine_run(e, src, sizeof(src) - 1, "adv-sentinel", &r) != MJ_OK ||
	    r.kind != MJ_KIND_NONE)
		adv_fail(name, "cannot set the sentinel global");
	mj_result_free(&r);
}

/* ---- isolation ---- */

typedef void (*adv_fn)(const void *arg);

/* One unit of work for a child process. */
typedef struct adv_job {
	const char *name;
	const char *bug;
	adv_fn fn;
	unsigned hang_ms;
	const adv_case *c;     /* adv_case_child: the case */
	const adv_case *cases; /* adv_gauntlet_child: cases run in turn on one engine */
	size_t ncases;
	const mj_limits *limits;
	/* Filled in by the pool. */
	pid_t pid;
	uint64_t t0;
} adv_job;

/* Children at once: hostile calls are mostly wall-clock bound, so this overlaps the waits. */
static inline unsigned
adv_jobs(void)
{
	const char *v = getenv("ADV_JOBS");
	long n = v != NULL ? strtol(v, NULL, 10) : 2;

	return n < 1 ? 1u : n > 16 ? 16u : (unsigned)n;
}

/* Reports how a finished child ended; returns true when it passed. */
static inline bool
adv_verdict(const adv_job *j, int st)
{
	const char *sep = j->bug ? "; known engine bug: " : "";
	const char *bug = j->bug ? j->bug : "";

	if (WIFSIGNALED(st)) {
		fprintf(stderr, "[  ADV   ] %s: CRASH: child died of signal %d%s%s\n", j->name,
		        WTERMSIG(st), sep, bug);
		return false;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "[  ADV   ] %s: FAILED (exit %d)%s%s\n", j->name,
		        WIFEXITED(st) ? WEXITSTATUS(st) : -1, sep, bug);
		return false;
	}
	return true;
}

static inline bool
adv_selected(const adv_job *j)
{
	const char *only = getenv("ADV_ONLY");

	if (only != NULL && *only != '\0' && strcmp(only, j->name) != 0)
		return false;
	return !(j->bug != NULL && adv_env("ADV_SKIP_BUGS"));
}

/* Runs every job in a forked child, a few at a time, each under its hang bound. Returns the
 * number of jobs that failed, crashed or hung. */
static inline size_t
adv_run_jobs(adv_job *jobs, size_t n)
{
	size_t next = 0, running = 0, failed = 0, i;
	unsigned max = adv_jobs();
	int st;

	if (adv_env("ADV_NOFORK")) {
		for (i = 0; i < n; i++) {
			int before = adv_nfail;
			if (!adv_selected(&jobs[i]))
				continue;
			jobs[i].fn(&jobs[i]);
			failed += adv_nfail != before;
		}
		return failed;
	}
	for (i = 0; i < n; i++)
		jobs[i].pid = 0;
	while (next < n || running > 0) {
		while (next < n && running < max) {
			adv_job *j = &jobs[next++];
			if (!adv_selected(j))
				continue;
			fflush(NULL);
			if ((j->pid = fork()) < 0) {
				fprintf(stderr, "[  ADV   ] %s: fork failed\n", j->name);
				j->pid = 0;
				failed++;
				continue;
			}
			if (j->pid == 0) {
				adv_nfail = 0;
				j->fn(j);
				fflush(NULL);
				/* exit, not _exit: LeakSanitizer checks the child as it exits. */
				exit(adv_nfail ? 1 : 0);
			}
			j->t0 = adv_now_ms();
			running++;
		}
		for (i = 0; i < next; i++) {
			adv_job *j = &jobs[i];
			pid_t w;

			if (j->pid <= 0)
				continue;
			if ((w = waitpid(j->pid, &st, WNOHANG)) == 0) {
				if (adv_now_ms() - j->t0 <= j->hang_ms)
					continue;
				kill(j->pid, SIGKILL);
				waitpid(j->pid, &st, 0);
				fprintf(stderr,
				        "[  ADV   ] %s: HANG: no answer within %u ms, child "
				        "killed%s%s\n",
				        j->name, j->hang_ms, j->bug ? "; known engine bug: " : "",
				        j->bug ? j->bug : "");
				failed++;
			} else if (w < 0 || !adv_verdict(j, st)) {
				failed++;
			}
			j->pid = -1;
			running--;
		}
		usleep(2000);
	}
	return failed;
}

static inline void
adv_case_child(const void *arg)
{
	const adv_job *j = arg;
	const mj_limits *l = adv_case_limits(j->c, j->limits);
	mj_engine *e;

	if ((e = adv_engine(j->c->name, l)) == NULL)
		return;
	adv_plant_sentinel(j->c->name, e);
	adv_check_case(j->c, e, l);
	adv_check_healthy(j->c->name, e);
	mj_engine_free(e);
}

/* One engine and one process take many cases in turn: no kill may leak into the next call. */
static inline void
adv_gauntlet_child(const void *arg)
{
	const adv_job *j = arg;
	mj_engine *e;
	size_t i;

	if ((e = adv_engine(j->name, j->limits)) == NULL)
		return;
	for (i = 0; i < j->ncases; i++) {
		const adv_case *c = &j->cases[i];
		if (c->bug != NULL || c->limits != NULL)
			continue;
		adv_plant_sentinel(c->name, e);
		adv_check_case(c, e, j->limits);
		adv_expect_values(c->name, e, "return 1+1", "2");
	}
	adv_check_healthy(j->name, e);
	mj_engine_free(e);
}

static inline unsigned
adv_hang_ms(const adv_case *c)
{
	return (c->max_ms ? c->max_ms : ADV_MAX_MS) + ADV_GRACE_MS;
}

/* Cases per gauntlet engine; several gauntlets run side by side with the single cases. */
#define ADV_GAUNTLET_CHUNK 12

/* Runs every case of a table in its own child, and the whole table again in a few children
 * that each take a run of cases on one engine. Fails the cmocka test listing what failed. */
static inline void
adv_run_table(const char *table, const adv_case *cases, size_t n, const mj_limits *limits)
{
	static char names[16][64];
	size_t ngaunt = (n + ADV_GAUNTLET_CHUNK - 1) / ADV_GAUNTLET_CHUNK;
	size_t i, k, failed, bugs = 0;
	adv_job *jobs;

	if (ngaunt > 16)
		ngaunt = 16;
	if (getenv("ADV_ONLY") != NULL)
		ngaunt = 0;
	assert_non_null(jobs = calloc(n + ngaunt, sizeof(*jobs)));
	/* Gauntlets first: they are the longest jobs. */
	for (k = 0; k < ngaunt; k++) {
		adv_job *j = &jobs[k];
		size_t first = k * n / ngaunt, last = (k + 1) * n / ngaunt;
		snprintf(names[k], sizeof(names[k]), "gauntlet-%s-%zu", table, k + 1);
		j->name = names[k];
		j->fn = adv_gauntlet_child;
		j->cases = &cases[first];
		j->ncases = last - first;
		j->limits = limits;
		for (i = first; i < last; i++)
			if (cases[i].bug == NULL && cases[i].limits == NULL)
				j->hang_ms += adv_hang_ms(&cases[i]);
		j->hang_ms += ADV_GRACE_MS;
	}
	for (i = 0; i < n; i++) {
		adv_job *j = &jobs[ngaunt + i];
		j->name = cases[i].name;
		j->bug = cases[i].bug;
		j->fn = adv_case_child;
		j->c = &cases[i];
		j->limits = limits;
		j->hang_ms = adv_hang_ms(&cases[i]);
		bugs += cases[i].bug != NULL;
	}
	failed = adv_run_jobs(jobs, n + ngaunt);
	free(jobs);
	if (failed != 0)
		fail_msg(
		    "%s: %zu failures among %zu hostile scripts and %zu gauntlets (%zu scripts "
		    "are marked as known engine bugs); see the [  ADV   ] lines above",
		    table, failed, n, ngaunt, bugs);
}

/* Runs a custom check function in a child; fails the cmocka test if any check failed. */
static inline void
adv_run_custom(const char *name, const char *bug, adv_fn fn, unsigned hang_ms)
{
	adv_job j;

	memset(&j, 0, sizeof(j));
	j.name = name;
	j.bug = bug;
	j.fn = fn;
	j.hang_ms = hang_ms;
	if (adv_run_jobs(&j, 1) != 0)
		fail_msg("%s failed%s%s; see the [  ADV   ] lines above", name,
		         bug ? " (known engine bug: " : "", bug ? bug : "");
}

/* For custom checks: evaluates src and checks its kind; the caller frees *r. */
static inline bool
adv_eval_kind(const char *name, mj_engine *e, const char *src, mj_kind want, mj_result *r)
{
	mj_err err;

	if ((err = mj_engine_eval(e, src, strlen(src), "adv", r)) != MJ_OK) {
		adv_fail(name, "%s: mj_engine_eval: %s", src, mj_err_str(err));
		memset(r, 0, sizeof(*r));
		return false;
	}
	if (r->kind != want) {
		adv_fail(name, "%s: kind %s, want %s (message: %s)", src, mj_kind_name(r->kind),
		         mj_kind_name(want), r->message ? r->message : "(none)");
		return false;
	}
	return true;
}

#endif
