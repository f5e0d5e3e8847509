/* Engine lifecycle, the limit-enforcing allocator and hook, and the eval/run call path. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine_impl.h"
#include "internal.h"

#define MSG_MAX 8192
#define TRACEBACK_MAX 4096
#define CHUNKNAME_MAX 48
#define BIG_GROWTH (64u << 10)

/* The engine running on this thread, for the watchdog's signal handler. */
static _Thread_local mj_engine *tls_engine;

static const char *const known_modules[] = {"json", NULL};

void
mj_engine_config_default(mj_engine_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	mj_limits_default(&cfg->limits);
}

const char *const *
mj_engine_known_modules(void)
{
	return known_modules;
}

mj_engine *
mj__engine_of(lua_State *L)
{
	void *ud;

	lua_getallocf(L, &ud);
	return ud;
}

static void engine_hook(lua_State *L, lua_Debug *ar);

/* Lua's allocator contract: osize is a type tag when ptr is NULL, and shrinking must not fail. */
static void *
engine_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	mj_engine *e = ud;
	size_t old = ptr != NULL ? osize : 0;
	size_t limit = e->limits.memory;
	void *p;

	if (nsize == 0) {
		mj_free(ptr);
		e->mem_used -= old;
		return NULL;
	}
	if (nsize > old && e->in_call && nsize - old >= BIG_GROWTH &&
	    (e->killed || atomic_load_explicit(&e->slot.fired, memory_order_relaxed))) {
		/* A C loop the hook cannot reach (a __call chain growing the stack, say) is
		 * stopped at its next large allocation once the call is over time. */
		mj__engine_kill(e, MJ_KIND_TIMEOUT);
		return NULL;
	}
	if (nsize > old && e->mem_used + (nsize - old) > limit) {
		/* Past the limit, an allocation still succeeds within a reserve during a call.
		 * Returning NULL would start an emergency collection in the middle of a table
		 * assignment, which Lua 5.4.4 gets wrong. */
		if (!e->in_call || e->mem_used + (nsize - old) > limit + e->mem_reserve) {
			if (e->in_call)
				mj__engine_kill(e, MJ_KIND_MEMORY);
			return NULL;
		}
	}
	if (nsize > old && e->in_call && !e->mem_pressure && !e->killed &&
	    e->mem_used + (nsize - old) > e->pressure_mark) {
		/* Near the limit: collect at the next safe point (the hook, or the return from a
		 * coroutine or protected call) and kill only if the live heap is over the limit,
		 * so garbage never counts against a script. */
		e->mem_pressure = true;
		if (e->running != NULL)
			lua_sethook(e->running, engine_hook, LUA_MASKCOUNT, 1);
	}
	if ((p = mj_realloc(ptr, nsize)) == NULL) {
		if (nsize > old) {
			if (e->in_call)
				mj__engine_kill(e, MJ_KIND_MEMORY);
			return NULL;
		}
		p = ptr;
	}
	e->mem_used = e->mem_used - old + nsize;
	if (e->mem_used > e->mem_peak)
		e->mem_peak = e->mem_used;
	return p;
}

/* Coroutines count in smaller steps: the hook cannot tell how much of a step a thread used
 * before it yielded, so every resume is charged its whole step (see mj__engine_charge). */
#define CO_STEP 100

static int
next_count(const mj_engine *e, lua_State *L)
{
	uint64_t step = L == e->L ? MJ_INSTRUCTION_STEP : CO_STEP;
	uint64_t left;

	left = e->insn_used < e->limits.instructions ? e->limits.instructions - e->insn_used : 1;
	return (int)(left < step ? left : step);
}

void
mj__engine_charge(mj_engine *e, lua_State *co)
{
	if (e->limits.instructions != 0 && !e->killed && lua_gethook(co) == engine_hook)
		e->insn_used += (uint64_t)lua_gethookcount(co);
}

void
mj__engine_arm(mj_engine *e, lua_State *L)
{
	/* Without an instruction limit no hook runs at all (a count hook slows the VM about
	 * twice); the watchdog sets one asynchronously when the deadline passes. */
	if (e->killed || e->mem_pressure ||
	    atomic_load_explicit(&e->slot.fired, memory_order_relaxed))
		lua_sethook(L, engine_hook, LUA_MASKCOUNT, 1);
	else if (e->limits.instructions != 0)
		lua_sethook(L, engine_hook, LUA_MASKCOUNT, next_count(e, L));
	else
		lua_sethook(L, NULL, 0, 0);
}

void
mj__engine_kill(mj_engine *e, mj_kind kind)
{
	if (!e->in_call)
		return;
	if (e->killed == MJ_KIND_NONE)
		e->killed = kind;
	if (e->running != NULL)
		lua_sethook(e->running, engine_hook, LUA_MASKCOUNT, 1);
}

int
mj__engine_raise_kill(lua_State *L, mj_engine *e)
{
	lua_sethook(L, engine_hook, LUA_MASKCOUNT, 1);
	lua_pushstring(L, mj_kind_name(e->killed));
	return lua_error(L);
}

/* Checks the budgets; returns true when the call must stop. */
static bool
over_budget(mj_engine *e)
{
	if (e->killed)
		return true;
	if (e->limits.instructions != 0 && e->insn_used >= e->limits.instructions) {
		mj__engine_kill(e, MJ_KIND_INSTRUCTIONS);
		return true;
	}
	if (atomic_load_explicit(&e->slot.fired, memory_order_relaxed) ||
	    (e->deadline_ns != 0 && mj_now_ns() >= e->deadline_ns)) {
		mj__engine_kill(e, MJ_KIND_TIMEOUT);
		return true;
	}
	return false;
}

/* The heap size at which a call first asks for a collection. */
static size_t
base_mark(const mj_engine *e)
{
	size_t limit = e->limits.memory;

	return limit > 2 * e->mem_reserve ? limit - e->mem_reserve : limit / 2;
}

/* At a safe point after the heap crossed the limit: collect, and kill only if the live heap is
 * still too big. */
static void
relieve_pressure(lua_State *L, mj_engine *e)
{
	if (!e->mem_pressure || e->killed)
		return;
	lua_gc(L, LUA_GCCOLLECT);
	e->mem_pressure = false;
	if (e->mem_used > e->limits.memory) {
		mj__engine_kill(e, MJ_KIND_MEMORY);
		return;
	}
	/* Collect again only after the heap grows by half a reserve, so a script living close to
	 * its limit is slowed, not stalled, by repeated full collections. */
	e->pressure_mark = e->mem_used + e->mem_reserve / 2;
	if (e->pressure_mark > e->limits.memory)
		e->pressure_mark = e->limits.memory;
	if (e->pressure_mark < base_mark(e))
		e->pressure_mark = base_mark(e);
}

static void
engine_hook(lua_State *L, lua_Debug *ar)
{
	mj_engine *e = mj__engine_of(L);

	if (!e->in_call)
		return;
	if (!e->killed && ar->event == LUA_HOOKCOUNT)
		e->insn_used += (uint64_t)lua_gethookcount(L);
	relieve_pressure(L, e);
	if (over_budget(e)) {
		mj__engine_raise_kill(L, e);
		return;
	}
	mj__engine_arm(e, L);
}

void
mj__engine_check(lua_State *L, mj_engine *e)
{
	if (!e->in_call)
		return;
	relieve_pressure(L, e);
	if (over_budget(e))
		mj__engine_raise_kill(L, e);
}

void
mj__engine_check_cstack(lua_State *L, mj_engine *e)
{
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);

	if (e->cstack_base > here && e->cstack_base - here > MJ__CSTACK_BUDGET)
		luaL_error(L, "C stack overflow");
}

void
mj__engine_tick(lua_State *L, unsigned steps)
{
	mj_engine *e = mj__engine_of(L);

	if (e == NULL || !e->in_call)
		return;
	if (!e->killed)
		e->insn_used += steps;
	if (over_budget(e))
		mj__engine_raise_kill(L, e);
}

void
mj__engine_on_deadline_signal(void)
{
	mj_engine *e = tls_engine;

	/* Like lua.c's SIGINT handler: only set a hook; the hook raises the error. */
	if (e != NULL && e->in_call && atomic_load(&e->slot.fired) && e->running != NULL)
		lua_sethook(e->running, engine_hook, LUA_MASKCOUNT, 1);
}

static void
set_errmsg(mj_engine *e, const char *msg)
{
	snprintf(e->errmsg, sizeof(e->errmsg), "%s", msg);
}

/* Protected body of state creation. */
static int
build_state(lua_State *L)
{
	mj_engine *e = mj__engine_of(L);
	size_t i;

	mj__sandbox_open(L);
	for (i = 0; i < e->nfns; i++)
		mj__sandbox_set_function(L, i);
	for (i = 0; i < e->nns; i++)
		mj__sandbox_push_namespace(L, e->nss[i].name, &e->nss[i].tree);
	return 0;
}

static mj_err
open_state(mj_engine *e)
{
	lua_State *L;
	int status;

	e->mem_used = 0;
	e->mem_peak = 0;
	if ((L = lua_newstate(engine_alloc, e)) == NULL) {
		set_errmsg(e, "not enough memory for a Lua state");
		return MJ_ENOMEM;
	}
	lua_pushcfunction(L, build_state);
	if ((status = lua_pcall(L, 0, 0, 0)) != LUA_OK) {
		set_errmsg(e, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
		                                             : "cannot build the sandbox");
		lua_close(L);
		return status == LUA_ERRMEM ? MJ_ENOMEM : MJ_EINTERNAL;
	}
	/* Collect the garbage of construction so an idle engine is as small as it can be. */
	lua_gc(L, LUA_GCCOLLECT);
	e->L = L;
	return MJ_OK;
}

static void
free_modules(char **mods, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		mj_free(mods[i]);
	mj_free(mods);
}

static mj_err
copy_modules(mj_engine *e, const mj_engine_config *cfg)
{
	size_t i, j;

	if (cfg->nmodules == 0)
		return MJ_OK;
	if (cfg->modules == NULL)
		return MJ_EINVAL;
	for (i = 0; i < cfg->nmodules; i++) {
		for (j = 0; known_modules[j] != NULL; j++)
			if (cfg->modules[i] != NULL &&
			    strcmp(cfg->modules[i], known_modules[j]) == 0)
				break;
		if (known_modules[j] == NULL)
			return MJ_EINVAL;
	}
	if ((e->modules = mj_calloc(cfg->nmodules, sizeof(char *))) == NULL)
		return MJ_ENOMEM;
	for (i = 0; i < cfg->nmodules; i++) {
		if ((e->modules[i] = mj_strndup(cfg->modules[i], strlen(cfg->modules[i]))) ==
		    NULL) {
			free_modules(e->modules, i);
			e->modules = NULL;
			return MJ_ENOMEM;
		}
	}
	e->nmodules = cfg->nmodules;
	return MJ_OK;
}

mj_err
mj_engine_new(mj_engine **out, const mj_engine_config *cfg)
{
	mj_engine *e;
	mj_err err;

	if (out == NULL || cfg == NULL || mj_limits_check(&cfg->limits, NULL) != MJ_OK)
		return MJ_EINVAL;
	if ((e = mj_calloc(1, sizeof(*e))) == NULL)
		return MJ_ENOMEM;
	e->limits = cfg->limits;
	e->mem_reserve = e->limits.memory / 16;
	if (e->mem_reserve < (64u << 10))
		e->mem_reserve = 64u << 10;
	if ((err = copy_modules(e, cfg)) != MJ_OK)
		goto fail_modules;
	if ((err = open_state(e)) != MJ_OK)
		goto fail_state;
	*out = e;
	return MJ_OK;

fail_state:
	free_modules(e->modules, e->nmodules);
fail_modules:
	mj_free(e);
	return err;
}

void
mj_engine_free(mj_engine *e)
{
	size_t i;

	if (e == NULL)
		return;
	if (e->L != NULL)
		lua_close(e->L);
	free_modules(e->modules, e->nmodules);
	for (i = 0; i < e->nfns; i++)
		mj_free(e->fns[i].name);
	mj_free(e->fns);
	for (i = 0; i < e->nns; i++) {
		mj_free(e->nss[i].name);
		mj_value_free(&e->nss[i].tree);
	}
	mj_free(e->nss);
	mj_free(e->out);
	mj_free(e->traceback);
	mj_free(e);
}

mj_err
mj_engine_reset(mj_engine *e)
{
	if (e == NULL)
		return MJ_EINVAL;
	if (e->in_call)
		return MJ_ESTATE;
	if (e->L != NULL) {
		lua_close(e->L);
		e->L = NULL;
	}
	return open_state(e);
}

const char *
mj_engine_errmsg(const mj_engine *e)
{
	return e != NULL ? e->errmsg : "no engine";
}

size_t
mj_engine_memory(const mj_engine *e)
{
	return e != NULL ? e->mem_used : 0;
}

/* ---- the call path ---- */

/* Finds the line of the innermost Lua function on the stack, without allocating. */
static uint32_t
current_line(lua_State *L)
{
	lua_Debug ar;
	int level;

	for (level = 0; level < 50 && lua_getstack(L, level, &ar); level++) {
		if (lua_getinfo(L, "l", &ar) && ar.currentline > 0)
			return (uint32_t)ar.currentline;
	}
	return 0;
}

static int
traceback_body(lua_State *L)
{
	luaL_traceback(L, L, NULL, 2);
	return 1;
}

/* Message handler: record line and traceback, return the error object untouched. */
static int
msgh(lua_State *L)
{
	mj_engine *e = mj__engine_of(L);
	const char *tb;
	size_t len;

	e->err_line = current_line(L);
	if (e->killed || e->traceback != NULL)
		return 1;
	/* The traceback allocates; a failure there must not replace the script's error. */
	lua_pushcfunction(L, traceback_body);
	if (lua_pcall(L, 0, 1, 0) == LUA_OK && (tb = lua_tolstring(L, -1, &len)) != NULL) {
		if (len > TRACEBACK_MAX)
			len = TRACEBACK_MAX;
		e->traceback = mj_strndup(tb, len);
	}
	lua_pop(L, 1);
	return 1;
}

/* Parses "<chunkid>:<line>:" at the start of msg. */
static uint32_t
line_from_message(const char *msg, const char *chunkid)
{
	size_t n = strlen(chunkid);
	uint32_t line = 0;
	const char *p;

	if (strncmp(msg, chunkid, n) != 0 || msg[n] != ':')
		return 0;
	for (p = msg + n + 1; *p >= '0' && *p <= '9' && line < 100000000u; p++)
		line = line * 10 + (uint32_t)(*p - '0');
	return (*p == ':' && p > msg + n + 1) ? line : 0;
}

static char *
describe_error_object(lua_State *L, int idx)
{
	char buf[128];
	const char *s;
	size_t len;

	switch (lua_type(L, idx)) {
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &len);
		if (len > MSG_MAX) {
			char *m = mj_malloc(MSG_MAX + 4);
			if (m != NULL) {
				memcpy(m, s, MSG_MAX);
				memcpy(m + MSG_MAX, "...", 4);
			}
			return m;
		}
		return mj_strndup(s, len);
	case LUA_TNUMBER:
		/* lua_tolstring would convert in place and allocate; format it ourselves. */
		if (lua_isinteger(L, idx))
			snprintf(buf, sizeof(buf), "%lld", (long long)lua_tointeger(L, idx));
		else
			snprintf(buf, sizeof(buf), "%.14g", (double)lua_tonumber(L, idx));
		break;
	default:
		snprintf(buf, sizeof(buf), "(error object is a %s value)",
		         lua_typename(L, lua_type(L, idx)));
		break;
	}
	return mj_strndup(buf, strlen(buf));
}

static char *
kill_message(const mj_engine *e)
{
	char buf[160];

	switch (e->killed) {
	case MJ_KIND_MEMORY:
		snprintf(buf, sizeof(buf), "memory limit exceeded (limit %zu bytes)",
		         e->limits.memory);
		break;
	case MJ_KIND_INSTRUCTIONS:
		snprintf(buf, sizeof(buf), "instruction limit exceeded (limit %" PRIu64 ")",
		         e->limits.instructions);
		break;
	case MJ_KIND_TIMEOUT:
		snprintf(buf, sizeof(buf), "timeout: the call ran longer than %" PRIu32 " ms",
		         e->limits.timeout_ms);
		break;
	case MJ_KIND_OUTPUT:
		snprintf(buf, sizeof(buf), "output limit exceeded (limit %zu bytes)",
		         e->limits.output);
		break;
	default:
		snprintf(buf, sizeof(buf), "%s", mj_kind_name(e->killed));
		break;
	}
	return mj_strndup(buf, strlen(buf));
}

static mj_err
set_message(mj_result *res, mj_kind kind, const char *msg)
{
	res->kind = kind;
	if ((res->message = mj_strndup(msg, strlen(msg))) == NULL)
		return MJ_ENOMEM;
	return MJ_OK;
}

static mj_err
collect_values(mj_engine *e, int base, int nres, mj_result *res)
{
	char why[200];
	mj__caps caps;
	mj_err err;
	int i;

	if (nres == 0)
		return MJ_OK;
	memset(&caps, 0, sizeof(caps));
	caps.max_bytes = e->limits.result_bytes;
	caps.max_depth = e->limits.result_depth;
	caps.max_items = e->limits.result_items;
	if ((size_t)nres > caps.max_items) {
		snprintf(why, sizeof(why), "result too large: %d values (limit %zu)", nres,
		         caps.max_items);
		return set_message(res, MJ_KIND_OUTPUT, why);
	}
	if ((res->values = mj_calloc((size_t)nres, sizeof(mj_value))) == NULL)
		return MJ_ENOMEM;
	for (i = 0; i < nres; i++) {
		err = mj__to_value(e->L, base + i, &caps, &res->values[i], why, sizeof(why));
		if (err == MJ_OK)
			continue;
		while (i-- > 0)
			mj_value_free(&res->values[i]);
		mj_free(res->values);
		res->values = NULL;
		if (err == MJ_ENOMEM)
			return err;
		return set_message(res, err == MJ_ELIMIT ? MJ_KIND_OUTPUT : MJ_KIND_RUNTIME, why);
	}
	res->nvalues = (size_t)nres;
	return MJ_OK;
}

static void
make_chunkname(char *dst, size_t cap, const char *name)
{
	size_t n;

	if (name == NULL || *name == '\0')
		name = "script";
	n = strnlen(name, CHUNKNAME_MAX);
	if (n + 2 > cap)
		n = cap - 2;
	dst[0] = '=';
	memcpy(dst + 1, name, n);
	dst[n + 1] = '\0';
}

static void
begin_call(mj_engine *e)
{
	e->in_call = true;
	e->killed = MJ_KIND_NONE;
	e->running = e->L;
	e->insn_used = 0;
	e->close_depth = 0;
	e->out_len = 0;
	e->out_truncated = false;
	e->err_line = 0;
	e->mem_pressure = false;
	e->pressure_mark = base_mark(e);
	e->mem_peak = e->mem_used;
	e->cstack_base = (uintptr_t)__builtin_frame_address(0);
	/* A host function may call into another engine on this thread; put the caller back
	 * afterwards so its deadline signal still finds it. */
	e->tls_prev = tls_engine;
	tls_engine = e;
}

static void
end_call(mj_engine *e)
{
	mj__wd_disarm(&e->slot);
	tls_engine = e->tls_prev;
	e->tls_prev = NULL;
	e->in_call = false;
	e->running = NULL;
	lua_sethook(e->L, NULL, 0, 0);
}

static mj_err
take_output(mj_engine *e, mj_result *res)
{
	if (e->out == NULL) {
		if ((res->output = mj_strndup("", 0)) == NULL)
			return MJ_ENOMEM;
		return MJ_OK;
	}
	e->out[e->out_len] = '\0';
	res->output = e->out;
	res->output_len = e->out_len;
	res->output_truncated = e->out_truncated;
	e->out = NULL;
	e->out_cap = 0;
	e->out_len = 0;
	return MJ_OK;
}

static mj_err
engine_call(mj_engine *e, const char *src, size_t len, const char *chunkname, bool want_values,
            mj_result *res)
{
	char name[CHUNKNAME_MAX + 2];
	uint64_t t0;
	lua_State *L;
	int base, status, nres;
	mj_err err = MJ_OK;

	if (e == NULL || res == NULL || (src == NULL && len > 0))
		return MJ_EINVAL;
	if (e->in_call || e->L == NULL)
		return MJ_ESTATE;
	memset(res, 0, sizeof(*res));
	L = e->L;
	make_chunkname(name, sizeof(name), chunkname);
	begin_call(e);
	t0 = mj_now_ns();
	e->deadline_ns = e->limits.timeout_ms ? t0 + (uint64_t)e->limits.timeout_ms * 1000000u : 0;
	if (e->deadline_ns != 0 && (err = mj__wd_arm(&e->slot, e->deadline_ns)) != MJ_OK) {
		end_call(e);
		return err;
	}
	mj__engine_arm(e, L);

	base = lua_gettop(L);
	if (len > e->limits.source) {
		char why[128];
		snprintf(why, sizeof(why), "source too large: %zu bytes (limit %zu)", len,
		         e->limits.source);
		err = set_message(res, MJ_KIND_BAD_REQUEST, why);
		goto done;
	}
	lua_pushcfunction(L, msgh);
	status = luaL_loadbufferx(L, len ? src : "", len, name, "t");
	/* Whatever stops the compiler (including its own C-stack limit) is a syntax error,
	 * except running out of memory. */
	if (status != LUA_OK && status != LUA_ERRMEM)
		status = LUA_ERRSYNTAX;
	if (status == LUA_OK)
		status = lua_pcall(L, 0, want_values ? LUA_MULTRET : 0, base + 1);
	nres = lua_gettop(L) - (base + 1);

	if (e->killed) {
		res->kind = e->killed;
		if ((res->message = kill_message(e)) == NULL)
			err = MJ_ENOMEM;
		res->line = e->err_line;
	} else if (status != LUA_OK) {
		res->kind = status == LUA_ERRSYNTAX ? MJ_KIND_SYNTAX
		            : status == LUA_ERRMEM  ? MJ_KIND_MEMORY
		                                    : MJ_KIND_RUNTIME;
		if ((res->message = describe_error_object(L, -1)) == NULL) {
			err = MJ_ENOMEM;
		} else {
			res->line = line_from_message(res->message, name + 1);
			if (res->line == 0 && res->kind == MJ_KIND_RUNTIME)
				res->line = e->err_line;
		}
		if (res->kind == MJ_KIND_RUNTIME) {
			res->traceback = e->traceback;
			e->traceback = NULL;
		}
	} else if (want_values) {
		err = collect_values(e, base + 2, nres, res);
	}
	lua_settop(L, base);

done:
	mj_free(e->traceback);
	e->traceback = NULL;
	if (err == MJ_OK)
		err = take_output(e, res);
	res->stats.instructions = e->insn_used;
	res->stats.instruction_limit = e->limits.instructions;
	res->stats.memory_peak = e->mem_peak;
	res->stats.memory_limit = e->limits.memory;
	res->stats.timeout_ms = e->limits.timeout_ms;
	res->stats.output_limit = e->limits.output;
	res->stats.output_bytes = res->output_len;
	end_call(e);
	if (res->kind == MJ_KIND_INSTRUCTIONS || res->kind == MJ_KIND_TIMEOUT ||
	    res->kind == MJ_KIND_MEMORY || res->kind == MJ_KIND_OUTPUT) {
		/* A kill can land anywhere, even inside the interpreter's own bookkeeping, so
		 * the state is not trusted again. */
		lua_close(e->L);
		e->L = NULL;
		if (open_state(e) == MJ_OK)
			res->engine_reset = true;
	}
	res->stats.memory_current = e->mem_used;
	res->stats.wall_us = (mj_now_ns() - t0) / 1000u;
	if (err != MJ_OK)
		mj_result_free(res);
	return err;
}

mj_err
mj_engine_eval(mj_engine *e, const char *src, size_t len, const char *chunkname, mj_result *res)
{
	return engine_call(e, src, len, chunkname, true, res);
}

mj_err
mj_engine_run(mj_engine *e, const char *src, size_t len, const char *chunkname, mj_result *res)
{
	return engine_call(e, src, len, chunkname, false, res);
}

void
mj_result_free(mj_result *res)
{
	size_t i;

	if (res == NULL)
		return;
	mj_free(res->message);
	mj_free(res->traceback);
	for (i = 0; i < res->nvalues; i++)
		mj_value_free(&res->values[i]);
	mj_free(res->values);
	mj_free(res->output);
	memset(res, 0, sizeof(*res));
}

/* ---- host functions and namespaces ---- */

static bool
is_identifier(const char *s)
{
	static const char *const reserved[] = {
	    "and",      "break",  "do",   "else", "elseif", "end",   "false", "for",
	    "function", "goto",   "if",   "in",   "local",  "nil",   "not",   "or",
	    "repeat",   "return", "then", "true", "until",  "while", NULL};
	size_t i;

	if (s == NULL || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
		return false;
	for (i = 1; s[i] != '\0'; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
		if (i >= 64)
			return false;
	}
	for (i = 0; reserved[i] != NULL; i++)
		if (strcmp(s, reserved[i]) == 0)
			return false;
	return true;
}

static int
set_function_body(lua_State *L)
{
	mj__sandbox_set_function(L, (size_t)lua_tointeger(L, 1));
	return 0;
}

mj_err
mj_engine_register_function(mj_engine *e, const char *name, mj_host_fn fn, void *ud)
{
	mj__hostfn *fns;
	size_t i;
	char *copy;

	if (e == NULL || fn == NULL || !is_identifier(name))
		return MJ_EINVAL;
	if (e->in_call || e->L == NULL)
		return MJ_ESTATE;
	for (i = 0; i < e->nfns; i++)
		if (strcmp(e->fns[i].name, name) == 0)
			break;
	if (i == e->nfns) {
		if ((copy = mj_strndup(name, strlen(name))) == NULL)
			return MJ_ENOMEM;
		if ((fns = mj_realloc(e->fns, (e->nfns + 1) * sizeof(*fns))) == NULL) {
			mj_free(copy);
			return MJ_ENOMEM;
		}
		e->fns = fns;
		e->fns[i].name = copy;
		e->nfns++;
	}
	e->fns[i].fn = fn;
	e->fns[i].ud = ud;
	lua_pushcfunction(e->L, set_function_body);
	lua_pushinteger(e->L, (lua_Integer)i);
	if (lua_pcall(e->L, 1, 0, 0) != LUA_OK) {
		set_errmsg(e, "not enough memory to register the function");
		lua_pop(e->L, 1);
		/* Keep the registration: it is installed again on the next reset. */
		return MJ_ELIMIT;
	}
	return MJ_OK;
}

static int
clear_global_body(lua_State *L)
{
	lua_pushglobaltable(L);
	lua_pushstring(L, lua_touserdata(L, 1));
	lua_pushnil(L);
	lua_rawset(L, -3);
	return 0;
}

/* Interning the name may allocate, so even removing a global runs protected. */
static void
clear_global(lua_State *L, const char *name)
{
	lua_pushcfunction(L, clear_global_body);
	lua_pushlightuserdata(L, (void *)name);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK)
		lua_pop(L, 1);
}

static int
namespace_body(lua_State *L)
{
	const char *name = lua_touserdata(L, 1);
	const mj_value *tree = lua_touserdata(L, 2);

	mj__sandbox_push_namespace(L, name, tree);
	return 0;
}

mj_err
mj_engine_set_namespace(mj_engine *e, const char *name, const mj_value *tree)
{
	mj__namespace *nss;
	mj_value copy;
	size_t i;
	char *ncopy = NULL;
	mj_err err;

	if (e == NULL || tree == NULL || !is_identifier(name) ||
	    (tree->type != MJ_VMAP && tree->type != MJ_VARRAY))
		return MJ_EINVAL;
	if (e->in_call || e->L == NULL)
		return MJ_ESTATE;
	memset(&copy, 0, sizeof(copy));
	if ((err = mj_value_copy(&copy, tree)) != MJ_OK)
		return err;
	lua_pushcfunction(e->L, namespace_body);
	lua_pushlightuserdata(e->L, (void *)name);
	lua_pushlightuserdata(e->L, &copy);
	if (lua_pcall(e->L, 2, 0, 0) != LUA_OK) {
		int mem = e->mem_used + 4096 > e->limits.memory ||
		          (lua_type(e->L, -1) == LUA_TSTRING &&
		           strstr(lua_tostring(e->L, -1), "memory") != NULL);
		set_errmsg(e, lua_type(e->L, -1) == LUA_TSTRING ? lua_tostring(e->L, -1)
		                                                : "cannot install the namespace");
		lua_pop(e->L, 1);
		mj_value_free(&copy);
		lua_gc(e->L, LUA_GCCOLLECT);
		return mem ? MJ_ELIMIT : MJ_EINVAL;
	}
	for (i = 0; i < e->nns; i++)
		if (strcmp(e->nss[i].name, name) == 0)
			break;
	if (i < e->nns) {
		mj_value_free(&e->nss[i].tree);
		e->nss[i].tree = copy;
		return MJ_OK;
	}
	if ((ncopy = mj_strndup(name, strlen(name))) == NULL)
		goto fail_name;
	if ((nss = mj_realloc(e->nss, (e->nns + 1) * sizeof(*nss))) == NULL)
		goto fail_array;
	e->nss = nss;
	e->nss[e->nns].name = ncopy;
	e->nss[e->nns].tree = copy;
	e->nns++;
	return MJ_OK;

fail_array:
	mj_free(ncopy);
fail_name:
	mj_value_free(&copy);
	/* The global is live in the state but unrecorded; remove it so the two agree. */
	clear_global(e->L, name);
	return MJ_ENOMEM;
}

mj_err
mj_engine_unset_namespace(mj_engine *e, const char *name)
{
	size_t i;

	if (e == NULL || name == NULL)
		return MJ_EINVAL;
	if (e->in_call || e->L == NULL)
		return MJ_ESTATE;
	for (i = 0; i < e->nns; i++)
		if (strcmp(e->nss[i].name, name) == 0)
			break;
	if (i == e->nns)
		return MJ_ENOENT;
	mj_free(e->nss[i].name);
	mj_value_free(&e->nss[i].tree);
	e->nss[i] = e->nss[e->nns - 1];
	e->nns--;
	clear_global(e->L, name);
	return MJ_OK;
}
