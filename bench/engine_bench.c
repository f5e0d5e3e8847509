/* Benchmarks the engine against raw Lua measured in the same run and prints median ratios. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "mj/engine.h"

/* Odd, so the median is a measured round rather than an average of two. */
#define ROUNDS 15
/* Each round alternates this many baseline and subject batches of a few milliseconds each. */
#define SLICES 8

#define CREATE_ITERS 1200u
#define EVAL_ITERS 30000u
#define LOOP_ITERS 8u

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A batch runs its operation n times and returns nanoseconds per operation, or a negative
 * number after printing why it could not. */
typedef double (*batch_fn)(void *ctx, unsigned n);

typedef struct figure {
	const char *name;
	double base_ns; /* median per-op time of the baseline */
	double subj_ns; /* median per-op time of the subject */
	double ratio;   /* median of the per-round subject/baseline ratios */
	double lo, hi;  /* spread of the per-round ratios, to show how noisy the run was */
	bool ok;
} figure;

typedef struct raw_ctx {
	lua_State *L;
	const char *const *chunks;
	size_t nchunks;
} raw_ctx;

typedef struct engine_ctx {
	mj_engine *e;
	const mj_engine_config *cfg;
	const char *const *chunks;
	size_t nchunks;
	bool values; /* eval (convert the returned values) rather than run */
} engine_ctx;

/* Small chunks that each exercise a different part of the compiler and the value conversion. */
#define CHUNK_ADD "local a = 1 + 2 return a"
#define CHUNK_LEN "local t = {1, 2, 3} return #t"
#define CHUNK_CAT "local s = 'ab' .. 'cd' return s"
#define CHUNK_CALL "local function f(x) return x * 2 end return f(21)"
#define CHUNK_LOOP "local s=0 for i=1,1e6 do s=s+i end return s"

static const char *const small_chunks[] = {CHUNK_ADD, CHUNK_LEN, CHUNK_CAT, CHUNK_CALL};
static const char *const loop_chunk[] = {CHUNK_LOOP};

/* Keeps the compiler from discarding work whose result nothing else reads. */
static volatile long long sink;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The allocator lua.c uses, so the baseline pays nothing for accounting. */
static void *
plain_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	(void)osize;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	return realloc(ptr, nsize);
}

/* Counts the raw state's heap the way the engine's allocator counts its own. */
static void *
counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	size_t *used = ud;
	size_t old = ptr != NULL ? osize : 0;
	void *p;

	if (nsize == 0) {
		free(ptr);
		*used -= old;
		return NULL;
	}
	if ((p = realloc(ptr, nsize)) == NULL)
		return NULL;
	*used = *used - old + nsize;
	return p;
}

static lua_State *
raw_state(void)
{
	lua_State *L;

	if ((L = lua_newstate(plain_alloc, NULL)) == NULL)
		return NULL;
	luaL_openlibs(L);
	return L;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
median(const double *v, size_t n)
{
	double tmp[ROUNDS];

	memcpy(tmp, v, n * sizeof(*v));
	qsort(tmp, n, sizeof(*tmp), cmp_double);
	return tmp[n / 2];
}

static double
raw_create_batch(void *ctx, unsigned n)
{
	uint64_t t0;
	unsigned i;

	(void)ctx;
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		lua_State *L = raw_state();

		if (L == NULL) {
			printf("  raw lua_newstate failed\n");
			return -1;
		}
		lua_close(L);
	}
	return (double)(now_ns() - t0) / n;
}

static double
engine_create_batch(void *ctx, unsigned n)
{
	engine_ctx *c = ctx;
	mj_engine *e;
	uint64_t t0;
	unsigned i;
	mj_err err;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		if ((err = mj_engine_new(&e, c->cfg)) != MJ_OK) {
			printf("  mj_engine_new failed: %s\n", mj_err_str(err));
			return -1;
		}
		mj_engine_free(e);
	}
	return (double)(now_ns() - t0) / n;
}

static double
raw_call_batch(void *ctx, unsigned n)
{
	raw_ctx *c = ctx;
	const char *src;
	uint64_t t0;
	unsigned i;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		src = c->chunks[i % c->nchunks];
		/* The same chunk name as the engine's default, so error paths would match too. */
		if (luaL_loadbuffer(c->L, src, strlen(src), "=script") != LUA_OK ||
		    lua_pcall(c->L, 0, LUA_MULTRET, 0) != LUA_OK) {
			printf("  raw chunk failed: %s\n", lua_tostring(c->L, -1));
			lua_settop(c->L, 0);
			return -1;
		}
		sink += lua_gettop(c->L);
		lua_settop(c->L, 0);
	}
	return (double)(now_ns() - t0) / n;
}

static double
engine_call_batch(void *ctx, unsigned n)
{
	engine_ctx *c = ctx;
	const char *src;
	mj_result res;
	uint64_t t0;
	unsigned i;
	mj_err err;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		src = c->chunks[i % c->nchunks];
		err = c->values ? mj_engine_eval(c->e, src, strlen(src), NULL, &res)
		                : mj_engine_run(c->e, src, strlen(src), NULL, &res);
		if (err != MJ_OK) {
			printf("  engine call failed: %s\n", mj_err_str(err));
			return -1;
		}
		if (res.kind != MJ_KIND_NONE) {
			printf("  engine call failed: %s: %s\n", mj_kind_name(res.kind),
			       res.message != NULL ? res.message : "");
			mj_result_free(&res);
			return -1;
		}
		sink += (long long)res.nvalues;
		mj_result_free(&res);
	}
	return (double)(now_ns() - t0) / n;
}

/* Interleaves baseline and subject in short slices, alternating which goes first, so load from
 * other tenants of the machine lands on both sides; each round yields one ratio and the median
 * is reported. */
static void
measure(figure *f, const char *name, batch_fn base, void *bctx, batch_fn subj, void *sctx,
        unsigned n)
{
	double b[ROUNDS], s[ROUNDS], r[ROUNDS], bt, st, x, y;
	unsigned slices = n < SLICES ? n : SLICES;
	unsigned per = n / slices, k;
	int i;

	memset(f, 0, sizeof(*f));
	f->name = name;
	/* Untimed: faults in code and heap, and starts the watchdog thread. */
	if (base(bctx, n / 10 + 1) < 0 || subj(sctx, n / 10 + 1) < 0)
		return;
	for (i = 0; i < ROUNDS; i++) {
		bt = st = 0;
		for (k = 0; k < slices; k++) {
			if ((i + k) % 2 == 0) {
				x = base(bctx, per);
				y = subj(sctx, per);
			} else {
				y = subj(sctx, per);
				x = base(bctx, per);
			}
			if (x <= 0 || y < 0)
				return;
			bt += x;
			st += y;
		}
		b[i] = bt / slices;
		s[i] = st / slices;
		r[i] = s[i] / b[i];
	}
	f->base_ns = median(b, ROUNDS);
	f->subj_ns = median(s, ROUNDS);
	f->ratio = median(r, ROUNDS);
	f->lo = f->hi = r[0];
	for (i = 1; i < ROUNDS; i++) {
		if (r[i] < f->lo)
			f->lo = r[i];
		if (r[i] > f->hi)
			f->hi = r[i];
	}
	f->ok = true;
	printf("  %-12s raw %10.3f µs/op   engine %10.3f µs/op   %5.2fx  (rounds %.2f-%.2f)\n",
	       name, f->base_ns / 1000, f->subj_ns / 1000, f->ratio, f->lo, f->hi);
	fflush(stdout);
}

static void
bench_create(figure *plain, figure *json, unsigned iters)
{
	static const char *const json_mod[] = {"json"};
	mj_engine_config cfg, cfg_json;
	engine_ctx c, cj;

	mj_engine_config_default(&cfg);
	mj_engine_config_default(&cfg_json);
	cfg_json.modules = json_mod;
	cfg_json.nmodules = ARRAY_LEN(json_mod);
	memset(&c, 0, sizeof(c));
	c.cfg = &cfg;
	cj = c;
	cj.cfg = &cfg_json;
	printf("create: mj_engine_new+free vs lua_newstate+luaL_openlibs+lua_close, %u per round\n",
	       iters);
	measure(plain, "create", raw_create_batch, NULL, engine_create_batch, &c, iters);
	measure(json, "create+json", raw_create_batch, NULL, engine_create_batch, &cj, iters);
}

/* The engine runs with its default limits: an instruction budget and a timeout, as in service. */
static void
bench_calls(figure *eval, figure *run, figure *loop, figure *loop_nohook, unsigned eval_iters,
            unsigned loop_iters)
{
	mj_engine_config cfg, cfg_free;
	mj_engine *e = NULL, *e_free = NULL;
	engine_ctx c;
	raw_ctx rc;
	mj_err err;

	memset(eval, 0, sizeof(*eval));
	memset(run, 0, sizeof(*run));
	memset(loop, 0, sizeof(*loop));
	memset(loop_nohook, 0, sizeof(*loop_nohook));
	eval->name = "eval";
	run->name = "run";
	loop->name = "loop";
	loop_nohook->name = "loop-nohook";
	mj_engine_config_default(&cfg);
	cfg_free = cfg;
	/* With neither budget the engine sets no hook, which isolates the hook's share. */
	cfg_free.limits.instructions = 0;
	cfg_free.limits.timeout_ms = 0;
	if ((rc.L = raw_state()) == NULL) {
		printf("  raw lua_newstate failed\n");
		return;
	}
	if ((err = mj_engine_new(&e, &cfg)) != MJ_OK ||
	    (err = mj_engine_new(&e_free, &cfg_free)) != MJ_OK) {
		printf("  mj_engine_new failed: %s\n", mj_err_str(err));
		goto out;
	}

	memset(&c, 0, sizeof(c));
	c.e = e;
	c.chunks = rc.chunks = small_chunks;
	c.nchunks = rc.nchunks = ARRAY_LEN(small_chunks);
	printf("eval/run: %zu small chunks in turn on one engine vs luaL_loadbuffer+lua_pcall, "
	       "%u per round\n",
	       ARRAY_LEN(small_chunks), eval_iters);
	c.values = true;
	measure(eval, "eval", raw_call_batch, &rc, engine_call_batch, &c, eval_iters);
	c.values = false;
	measure(run, "run", raw_call_batch, &rc, engine_call_batch, &c, eval_iters);

	c.chunks = rc.chunks = loop_chunk;
	c.nchunks = rc.nchunks = ARRAY_LEN(loop_chunk);
	c.values = true;
	printf("loop: \"%s\" through eval vs raw pcall, %u per round\n", loop_chunk[0], loop_iters);
	measure(loop, "loop", raw_call_batch, &rc, engine_call_batch, &c, loop_iters);
	c.e = e_free;
	measure(loop_nohook, "loop-nohook", raw_call_batch, &rc, engine_call_batch, &c, loop_iters);

out:
	mj_engine_free(e_free);
	mj_engine_free(e);
	lua_close(rc.L);
}

/* Memory is deterministic, so one measurement is enough. */
static void
bench_memory(figure *f, size_t *engine_bytes)
{
	static const char *const json_mod[] = {"json"};
	mj_engine_config cfg;
	size_t raw_open = 0, raw_idle, json_bytes;
	mj_engine *e;
	lua_State *L;
	mj_err err;

	memset(f, 0, sizeof(*f));
	f->name = "memory";
	*engine_bytes = 0;
	printf("memory: mj_engine_memory after mj_engine_new vs a counted raw state\n");
	if ((L = lua_newstate(counting_alloc, &raw_open)) == NULL) {
		printf("  raw lua_newstate failed\n");
		return;
	}
	luaL_openlibs(L);
	raw_idle = raw_open;
	printf("  raw after luaL_openlibs      %8zu bytes  %6.1f KiB\n", raw_idle,
	       raw_idle / 1024.0);
	/* The engine collects after building its sandbox; compare like with like. */
	lua_gc(L, LUA_GCCOLLECT);
	raw_idle = raw_open;
	printf("  raw after a full collection  %8zu bytes  %6.1f KiB\n", raw_idle,
	       raw_idle / 1024.0);
	lua_close(L);

	mj_engine_config_default(&cfg);
	if ((err = mj_engine_new(&e, &cfg)) != MJ_OK) {
		printf("  mj_engine_new failed: %s\n", mj_err_str(err));
		return;
	}
	*engine_bytes = mj_engine_memory(e);
	mj_engine_free(e);
	printf("  engine (default config)      %8zu bytes  %6.1f KiB\n", *engine_bytes,
	       *engine_bytes / 1024.0);
	cfg.modules = json_mod;
	cfg.nmodules = ARRAY_LEN(json_mod);
	if ((err = mj_engine_new(&e, &cfg)) == MJ_OK) {
		json_bytes = mj_engine_memory(e);
		mj_engine_free(e);
		printf("  engine (with json)           %8zu bytes  %6.1f KiB\n", json_bytes,
		       json_bytes / 1024.0);
	}
	f->base_ns = (double)raw_idle;
	f->subj_ns = (double)*engine_bytes;
	f->ratio = f->lo = f->hi = raw_idle ? (double)*engine_bytes / (double)raw_idle : 0;
	f->ok = true;
}

static void
summary_line(const figure *f, const char *target, double limit)
{
	const char *verdict = "";

	if (!f->ok) {
		printf("  %-12s   n/a   %-18s FAILED TO RUN\n", f->name, target);
		return;
	}
	if (limit > 0)
		verdict = f->ratio <= limit ? "PASS" : "MISS";
	if (*verdict == '\0')
		printf("  %-12s %5.2fx  %s\n", f->name, f->ratio, target);
	else
		printf("  %-12s %5.2fx  %-18s %s\n", f->name, f->ratio, target, verdict);
}

/* Memory has an absolute target, so its line leads with KiB and keeps the ratio for context. */
static void
summary_memory(const figure *f, size_t bytes)
{
	if (!f->ok) {
		printf("  %-12s   n/a   %-18s FAILED TO RUN\n", f->name, "(target <= 64 KiB)");
		return;
	}
	printf("  %-12s %5.2fx  %-18s %s  (%.1f KiB, raw %.1f KiB)\n", f->name, f->ratio,
	       "(target <= 64 KiB)", bytes <= 64u * 1024 ? "PASS" : "MISS", bytes / 1024.0,
	       f->base_ns / 1024.0);
}

static void
usage(FILE *to)
{
	fprintf(to, "usage: engine_bench [--quick]\n"
	            "  --quick  ten times fewer iterations per round (noisier)\n");
}

int
main(int argc, char **argv)
{
	figure create, create_json, eval, run, loop, loop_nohook, mem;
	size_t engine_bytes;
	unsigned div = 1;
	uint64_t t0;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			div = 10;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	t0 = now_ns();
	printf("engine_bench: %s, %d rounds, baseline and subject interleaved%s\n", LUA_RELEASE,
	       ROUNDS, div > 1 ? ", quick" : "");
	bench_create(&create, &create_json, CREATE_ITERS / div);
	bench_calls(&eval, &run, &loop, &loop_nohook, EVAL_ITERS / div,
	            LOOP_ITERS / div > 0 ? LOOP_ITERS / div : 1);
	bench_memory(&mem, &engine_bytes);

	printf("\nengine_bench: ratios (subject / baseline, median of %d rounds)\n", ROUNDS);
	summary_line(&create, "(target <= 3x)", 3.0);
	summary_line(&create_json, "(target <= 3x)", 3.0);
	summary_line(&eval, "(target <= 1.5x)", 1.5);
	summary_line(&run, "(target <= 1.5x)", 1.5);
	summary_line(&loop, "(hook cost, informational)", 0);
	summary_line(&loop_nohook, "(no limits, informational)", 0);
	summary_memory(&mem, engine_bytes);
	printf("engine_bench: done in %.1f s\n", (double)(now_ns() - t0) / 1e9);
	/* A benchmark reports; it never fails the build. */
	return 0;
}
