/* The sandboxed global environment: allowlisted libraries and the guarded replacements. */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "engine_impl.h"
#include "internal.h"

/* Nested coroutine.close calls recurse in C without Lua's C-stack accounting (a Lua 5.4.4
 * bug), so the depth is capped here. */
#define MAX_CLOSE_DEPTH 32

#define REG_MODULES "mj.modules"
#define REG_LOADED "mj.loaded"

/* ---- print ---- */

static void
out_append(lua_State *L, mj_engine *e, const char *s, size_t len)
{
	size_t room = e->limits.output - e->out_len;
	size_t need, cap;
	char *p;

	if (len > room) {
		len = room;
		e->out_truncated = true;
	}
	need = e->out_len + len + 1;
	if (need > e->out_cap) {
		cap = e->out_cap ? e->out_cap : 256;
		while (cap < need)
			cap *= 2;
		if (cap > e->limits.output + 1)
			cap = e->limits.output + 1;
		if ((p = mj_realloc(e->out, cap)) == NULL) {
			luaL_error(L, "not enough memory for print output");
			return;
		}
		e->out = p;
		e->out_cap = cap;
	}
	memcpy(e->out + e->out_len, s, len);
	e->out_len += len;
	if (e->out_truncated) {
		mj__engine_kill(e, MJ_KIND_OUTPUT);
		mj__engine_raise_kill(L, e);
	}
}

static int
l_print(lua_State *L)
{
	mj_engine *e = mj__engine_of(L);
	int i, n = lua_gettop(L);
	const char *s;
	size_t len;

	for (i = 1; i <= n; i++) {
		s = luaL_tolstring(L, i, &len);
		if (i > 1)
			out_append(L, e, "\t", 1);
		out_append(L, e, s, len);
		lua_pop(L, 1);
	}
	out_append(L, e, "\n", 1);
	return 0;
}

/* ---- pcall and xpcall: a kill is re-raised at once, and never reaches a script handler ---- */

static int
pcall_done(lua_State *L, int status, lua_KContext base)
{
	mj__engine_check(L, mj__engine_of(L));
	if (status != LUA_OK && status != LUA_YIELD) {
		lua_pushboolean(L, 0);
		lua_insert(L, -2);
		return 2;
	}
	return lua_gettop(L) - (int)base;
}

static int
l_pcall(lua_State *L)
{
	int status;

	luaL_checkany(L, 1);
	lua_pushboolean(L, 1);
	lua_insert(L, 1);
	status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, pcall_done);
	return pcall_done(L, status, 0);
}

/* Lua runs a message handler where the error was raised; for a kill that is inside the
 * hook, where hooks are off, so a looping script handler could never be stopped. */
static int
xpcall_handler(lua_State *L)
{
	if (mj__engine_of(L)->killed)
		return 1;
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

static int
l_xpcall(lua_State *L)
{
	int status, n = lua_gettop(L);

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, xpcall_handler, 1);
	lua_replace(L, 2);
	/* Stack: f, handler, args...; make it f, handler, true, f, args... */
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 2);
	status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, pcall_done);
	return pcall_done(L, status, 2);
}

/* ---- load: text only, bounded, and a kill inside a reader function sticks ---- */

typedef struct load_reader {
	size_t total;
	size_t limit;
} load_reader;

static const char *
reader_fn(lua_State *L, void *ud, size_t *size)
{
	load_reader *r = ud;
	const char *s;

	luaL_checkstack(L, 2, "too many nested functions");
	lua_pushvalue(L, 1);
	lua_call(L, 0, 1);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		*size = 0;
		return NULL;
	}
	if (!lua_isstring(L, -1))
		luaL_error(L, "reader function must return a string");
	lua_replace(L, 5); /* keeps the piece alive while the parser reads it */
	s = lua_tolstring(L, 5, size);
	r->total += *size;
	if (r->total > r->limit)
		luaL_error(L, "chunk too large (limit %I bytes)", (lua_Integer)r->limit);
	return s;
}

static int
l_load(lua_State *L)
{
	mj_engine *e = mj__engine_of(L);
	const char *mode = luaL_optstring(L, 3, "bt");
	int env = !lua_isnone(L, 4) ? 4 : 0;
	const char *s, *name;
	load_reader r;
	size_t len;
	int status;

	if (strchr(mode, 't') == NULL)
		return luaL_error(L, "load: binary chunks are not allowed");
	r.total = 0;
	r.limit = e->limits.source;
	if ((s = lua_tolstring(L, 1, &len)) != NULL) {
		name = luaL_optstring(L, 2, s);
		if (len > r.limit) {
			luaL_pushfail(L);
			lua_pushfstring(L, "chunk too large (limit %I bytes)",
			                (lua_Integer)r.limit);
			return 2;
		}
		status = luaL_loadbufferx(L, s, len, name, "t");
	} else {
		name = luaL_optstring(L, 2, "=(load)");
		luaL_checktype(L, 1, LUA_TFUNCTION);
		lua_settop(L, 5);
		status = lua_load(L, reader_fn, &r, name, "t");
	}
	mj__engine_check(L, e);
	if (status != LUA_OK) {
		luaL_pushfail(L);
		lua_insert(L, -2);
		return 2;
	}
	if (env != 0) {
		lua_pushvalue(L, env);
		if (!lua_setupvalue(L, -2, 1))
			lua_pop(L, 1);
	}
	return 1;
}

static int
l_collectgarbage(lua_State *L)
{
	const char *opt = luaL_optstring(L, 1, "collect");

	if (strcmp(opt, "count") != 0)
		return luaL_error(L, "collectgarbage: option '%s' is not allowed (only \"count\")",
		                  opt);
	lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT) +
	                      (lua_Number)lua_gc(L, LUA_GCCOUNTB) / 1024.0);
	return 1;
}

/* ---- metatables: no finalizers from scripts, namespaces stay read-only ---- */

static int
l_setmetatable(lua_State *L)
{
	int t = lua_type(L, 2);

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
	if (t == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "setmetatable: __gc metamethods are not allowed");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

/* The key under which a namespace proxy's metatable holds its data table: a light userdata,
 * so finding it needs no string (and so no allocation). */
static const char ns_key;

int
mj__namespace_data(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return 0;
	if (lua_rawgetp(L, -1, &ns_key) == LUA_TTABLE) {
		lua_remove(L, -2);
		return 1;
	}
	lua_pop(L, 2);
	return 0;
}

static int
is_namespace(lua_State *L, int idx)
{
	luaL_checkstack(L, 2, NULL);
	if (!mj__namespace_data(L, idx))
		return 0;
	lua_pop(L, 1);
	return 1;
}

static int
l_rawset(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checkany(L, 2);
	luaL_checkany(L, 3);
	if (is_namespace(L, 1))
		return luaL_error(L, "attempt to modify a read-only namespace");
	lua_settop(L, 3);
	lua_rawset(L, 1);
	return 1;
}

/* ---- require: only modules installed in this engine ---- */

static int
l_require(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);

	lua_settop(L, 1);
	lua_getfield(L, LUA_REGISTRYINDEX, REG_LOADED);
	lua_pushvalue(L, 1);
	if (lua_rawget(L, 2) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	lua_getfield(L, LUA_REGISTRYINDEX, REG_MODULES);
	lua_pushvalue(L, 1);
	if (lua_rawget(L, -2) != LUA_TFUNCTION)
		return luaL_error(L, "module '%s' not found (not installed in this engine)", name);
	lua_call(L, 0, 1);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, -2);
	lua_rawset(L, 2);
	return 1;
}

/* ---- coroutines: hooks re-armed on every resume, kills propagate to the resumer ---- */

static int
resume_thread(lua_State *L, lua_State *co, int narg)
{
	mj_engine *e = mj__engine_of(L);
	lua_State *prev;
	int status, nres;

	mj__engine_check_cstack(L, e);
	if (!lua_checkstack(co, narg)) {
		lua_pushliteral(L, "too many arguments to resume");
		return -1;
	}
	lua_xmove(L, co, narg);
	mj__engine_arm(e, co);
	prev = e->running;
	e->running = co;
	status = lua_resume(co, L, narg, &nres);
	e->running = prev;
	mj__engine_charge(e, co);
	mj__engine_check(L, e);
	if (status == LUA_OK || status == LUA_YIELD) {
		if (!lua_checkstack(L, nres + 1)) {
			lua_pop(co, nres);
			lua_pushliteral(L, "too many results to resume");
			return -1;
		}
		lua_xmove(co, L, nres);
		return nres;
	}
	lua_xmove(co, L, 1);
	return -1;
}

static lua_State *
check_co(lua_State *L, int idx)
{
	lua_State *co = lua_tothread(L, idx);

	luaL_argexpected(L, co != NULL, idx, "coroutine");
	return co;
}

static int
co_resume(lua_State *L)
{
	lua_State *co = check_co(L, 1);
	int r = resume_thread(L, co, lua_gettop(L) - 1);

	if (r < 0) {
		lua_pushboolean(L, 0);
		lua_insert(L, -2);
		return 2;
	}
	lua_pushboolean(L, 1);
	lua_insert(L, -(r + 1));
	return r + 1;
}

static int
close_thread(lua_State *L, lua_State *co)
{
	mj_engine *e = mj__engine_of(L);
	lua_State *prev;
	int status;

	mj__engine_check_cstack(L, e);
	if (++e->close_depth > MAX_CLOSE_DEPTH) {
		e->close_depth--;
		return luaL_error(L, "coroutine.close: too many nested closes");
	}
	mj__engine_arm(e, co);
	prev = e->running;
	e->running = co;
	status = lua_resetthread(co);
	e->running = prev;
	e->close_depth--;
	mj__engine_charge(e, co);
	mj__engine_check(L, e);
	return status;
}

static int
co_wrapped(lua_State *L)
{
	lua_State *co = lua_tothread(L, lua_upvalueindex(1));
	int r = resume_thread(L, co, lua_gettop(L));
	int st;

	if (r >= 0)
		return r;
	st = lua_status(co);
	if (st != LUA_OK && st != LUA_YIELD) {
		/* The coroutine died: run its pending __close handlers, like coroutine.wrap. */
		lua_pop(L, 1);
		st = close_thread(L, co);
		lua_xmove(co, L, 1);
	}
	if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
		luaL_where(L, 1);
		lua_insert(L, -2);
		lua_concat(L, 2);
	}
	return lua_error(L);
}

static int
co_wrap(lua_State *L)
{
	lua_State *co;

	luaL_checktype(L, 1, LUA_TFUNCTION);
	co = lua_newthread(L);
	lua_pushvalue(L, 1);
	lua_xmove(L, co, 1);
	lua_pushcclosure(L, co_wrapped, 1);
	return 1;
}

static const char *
co_status_name(lua_State *L, lua_State *co)
{
	lua_Debug ar;

	if (L == co)
		return "running";
	switch (lua_status(co)) {
	case LUA_YIELD:
		return "suspended";
	case LUA_OK:
		if (lua_getstack(co, 0, &ar))
			return "normal";
		return lua_gettop(co) == 0 ? "dead" : "suspended";
	default:
		return "dead";
	}
}

static int
co_close(lua_State *L)
{
	lua_State *co = check_co(L, 1);
	const char *st = co_status_name(L, co);
	int status;

	if (strcmp(st, "dead") != 0 && strcmp(st, "suspended") != 0)
		return luaL_error(L, "cannot close a %s coroutine", st);
	status = close_thread(L, co);
	if (status == LUA_OK) {
		lua_pushboolean(L, 1);
		return 1;
	}
	lua_pushboolean(L, 0);
	lua_xmove(co, L, 1);
	return 2;
}

/* ---- table functions: ranges bounded so a fake __len cannot loop in C for hours ---- */

enum { T_SORT, T_CONCAT, T_UNPACK, T_MOVE };

static lua_Integer
range_cap(const mj_engine *e)
{
	size_t cap = e->limits.memory / 16;

	return (lua_Integer)(cap < 65536 ? 65536 : cap);
}

/* Charges n units of C work, at the one-per-element rate a Lua loop would pay. */
static void
charge(lua_State *L, size_t n)
{
	while (n > 0) {
		unsigned step = n > 1u << 30 ? 1u << 30 : (unsigned)n;
		mj__engine_tick(L, step);
		n -= step;
	}
}

static void
check_range(lua_State *L, lua_Integer first, lua_Integer last, lua_Integer cap)
{
	lua_Unsigned n;

	if (last < first)
		return;
	n = (lua_Unsigned)last - (lua_Unsigned)first;
	if (n >= (lua_Unsigned)cap)
		luaL_error(L, "table range too large (limit %I elements)", cap);
	charge(L, (size_t)n + 1);
}

/* insert and remove read the length once: with Lua's own, a __len that answers differently
 * the second time would size a C loop the range check never saw. */
static int
t_insert(lua_State *L)
{
	mj_engine *e = mj__engine_of(L);
	lua_Integer n, pos, i;

	luaL_checktype(L, 1, LUA_TTABLE);
	n = luaL_len(L, 1);
	/* A negative __len would make every position "in bounds" and the shift loop endless. */
	luaL_argcheck(L, n >= 0, 1, "table length is negative");
	check_range(L, 1, n, range_cap(e));
	switch (lua_gettop(L)) {
	case 2:
		lua_seti(L, 1, n + 1);
		return 0;
	case 3:
		pos = luaL_checkinteger(L, 2);
		/* unsigned, so one comparison covers both ends of 1 <= pos <= n + 1 */
		luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)n + 1u, 2,
		              "position out of bounds");
		for (i = n + 1; i > pos; i--) {
			lua_geti(L, 1, i - 1);
			lua_seti(L, 1, i);
		}
		lua_seti(L, 1, pos);
		return 0;
	default:
		return luaL_error(L, "wrong number of arguments to 'insert'");
	}
}

static int
t_remove(lua_State *L)
{
	mj_engine *e = mj__engine_of(L);
	lua_Integer n, pos;

	luaL_checktype(L, 1, LUA_TTABLE);
	n = luaL_len(L, 1);
	/* A negative __len would make every position "in bounds" and the shift loop endless. */
	luaL_argcheck(L, n >= 0, 1, "table length is negative");
	check_range(L, 1, n, range_cap(e));
	pos = luaL_optinteger(L, 2, n);
	if (pos != n)
		luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)n, 2,
		              "position out of bounds");
	lua_geti(L, 1, pos);
	for (; pos < n; pos++) {
		lua_geti(L, 1, pos + 1);
		lua_seti(L, 1, pos);
	}
	lua_pushnil(L);
	lua_seti(L, 1, pos);
	return 1;
}

static int
table_guard(lua_State *L)
{
	mj_engine *e = mj__engine_of(L);
	int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
	lua_Integer cap = range_cap(e);
	int top = lua_gettop(L);

	switch (kind) {
	case T_SORT:
		if (lua_type(L, 1) == LUA_TTABLE) {
			lua_Integer n;
			/* Lua's sort asks __len again; only a plain length can be checked once. */
			if (luaL_getmetafield(L, 1, "__len") != LUA_TNIL)
				return luaL_error(L,
				                  "table.sort: tables with a __len metamethod are "
				                  "not supported");
			n = luaL_len(L, 1);
			check_range(L, 1, n, cap);
			/* a sort compares about n log2 n times; the range check paid n */
			for (; n > 1; n >>= 1)
				charge(L, (size_t)(n > cap ? cap : n));
		}
		break;
	case T_CONCAT:
	case T_UNPACK:
		if (lua_type(L, 1) == LUA_TTABLE) {
			int ai = kind == T_CONCAT ? 3 : 2;
			lua_Integer i = luaL_optinteger(L, ai, 1);
			lua_Integer j = lua_isnoneornil(L, ai + 1) ? luaL_len(L, 1)
			                                           : luaL_checkinteger(L, ai + 1);
			check_range(L, i, j, cap);
			/* Pass the checked bounds on, so the library never asks __len itself. */
			if (kind == T_CONCAT && lua_isnoneornil(L, 2)) {
				lua_pushliteral(L, "");
				lua_replace(L, 2);
			}
			lua_settop(L, ai + 1);
			lua_pushinteger(L, i);
			lua_replace(L, ai);
			lua_pushinteger(L, j);
			lua_replace(L, ai + 1);
			top = ai + 1;
		}
		break;
	case T_MOVE:
		check_range(L, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3), cap);
		break;
	}
	lua_settop(L, top);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, top, LUA_MULTRET);
	return lua_gettop(L);
}

/* ---- string functions whose C loops run over their whole input ---- */

static int
string_guard(lua_State *L)
{
	int top = lua_gettop(L);
	size_t len = 0, sep = 0;
	lua_Integer n;

	if (lua_toboolean(L, lua_upvalueindex(2))) {
		/* string.rep: Lua 5.4.4 loops n times even when every copy is empty. */
		luaL_checklstring(L, 1, &len);
		n = luaL_checkinteger(L, 2);
		luaL_optlstring(L, 3, "", &sep);
		if (n <= 0 || len + sep == 0) {
			lua_pushliteral(L, "");
			return 1;
		}
		if ((lua_Unsigned)n < (size_t)-1 / (len + sep))
			charge(L, ((size_t)n * (len + sep)) >> 4);
	} else if (lua_type(L, 1) == LUA_TSTRING) {
		lua_tolstring(L, 1, &len);
		charge(L, len >> 4);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, top, LUA_MULTRET);
	return lua_gettop(L);
}

static void
guard_string_fn(lua_State *L, int lib, const char *name, int is_rep)
{
	lua_getfield(L, lib, name);
	lua_pushboolean(L, is_rep);
	lua_pushcclosure(L, string_guard, 2);
	lua_setfield(L, lib, name);
}

/* ---- host functions ---- */

static int
push_value_body(lua_State *L)
{
	mj__push_value(L, lua_touserdata(L, 1), false, 0);
	return 1;
}

static void
free_args(mj_value *args, int n)
{
	int i;

	for (i = 0; i < n; i++)
		mj_value_free(&args[i]);
	mj_free(args);
}

static int
host_call(lua_State *L)
{
	mj_engine *e = mj__engine_of(L);
	size_t idx = (size_t)lua_tointeger(L, lua_upvalueindex(1));
	int i, n = lua_gettop(L);
	char msg[256], why[200];
	mj_value *args = NULL, ret;
	mj__hostfn *f;
	mj__caps caps;
	mj_err err;

	if (idx >= e->nfns)
		return luaL_error(L, "host function is no longer registered");
	f = &e->fns[idx];
	memset(&caps, 0, sizeof(caps));
	caps.max_bytes = e->limits.result_bytes;
	caps.max_depth = e->limits.result_depth;
	caps.max_items = e->limits.result_items;
	if (n > 0 && (args = mj_calloc((size_t)n, sizeof(*args))) == NULL)
		return luaL_error(L, "not enough memory");
	for (i = 0; i < n; i++) {
		if ((err = mj__to_value(L, i + 1, &caps, &args[i], why, sizeof(why))) != MJ_OK) {
			free_args(args, i);
			return luaL_error(L, "bad argument #%d to '%s' (%s)", i + 1, f->name, why);
		}
	}
	memset(&ret, 0, sizeof(ret));
	msg[0] = '\0';
	err = f->fn(f->ud, args, (size_t)n, &ret, msg, sizeof(msg));
	free_args(args, n);
	if (err != MJ_OK) {
		mj_value_free(&ret);
		msg[sizeof(msg) - 1] = '\0';
		return luaL_error(L, "%s", msg[0] ? msg : mj_err_str(err));
	}
	lua_pushcfunction(L, push_value_body);
	lua_pushlightuserdata(L, &ret);
	i = lua_pcall(L, 1, 1, 0);
	mj_value_free(&ret);
	if (i != LUA_OK)
		return lua_error(L);
	mj__engine_check(L, e);
	return 1;
}

void
mj__sandbox_set_function(lua_State *L, size_t index)
{
	mj_engine *e = mj__engine_of(L);

	lua_pushglobaltable(L);
	lua_pushinteger(L, (lua_Integer)index);
	lua_pushcclosure(L, host_call, 1);
	lua_setfield(L, -2, e->fns[index].name);
	lua_pop(L, 1);
}

int
mj__sandbox_push_namespace(lua_State *L, const char *name, const mj_value *tree)
{
	lua_pushglobaltable(L);
	mj__push_value(L, tree, true, 0);
	lua_setfield(L, -2, name);
	lua_pop(L, 1);
	return 0;
}

/* ---- building the environment ---- */

static void
copy_fields(lua_State *L, int from, int to, const char *const *names)
{
	from = lua_absindex(L, from);
	to = lua_absindex(L, to);
	for (; *names != NULL; names++) {
		lua_getfield(L, from, *names);
		lua_setfield(L, to, *names);
	}
}

/* Opens a standard library into a throwaway table and returns (on the stack) a new table
 * holding only the allowlisted names. */
static void
open_lib(lua_State *L, lua_CFunction opener, const char *const *names)
{
	lua_pushcfunction(L, opener);
	lua_call(L, 0, 1);
	lua_newtable(L);
	copy_fields(L, -2, lua_gettop(L), names);
	lua_remove(L, -2);
}

static void
guard_table_fn(lua_State *L, int lib, const char *name, int kind)
{
	lua_getfield(L, lib, name);
	lua_pushinteger(L, kind);
	lua_pushcclosure(L, table_guard, 2);
	lua_setfield(L, lib, name);
}

int
mj__sandbox_open(lua_State *L)
{
	static const char *const base_names[] = {
	    "assert",   "error",    "getmetatable", "ipairs",   "next",
	    "pairs",    "rawequal", "rawget",       "rawlen",   "select",
	    "tonumber", "tostring", "type",         "_VERSION", NULL};
	static const char *const string_names[] = {
	    "byte", "char",    "format", "len",    "lower", "pack", "packsize",
	    "rep",  "reverse", "sub",    "unpack", "upper", NULL};
	static const char *const string_meta[] = {"__add", "__sub",  "__mul", "__mod", "__pow",
	                                          "__div", "__idiv", "__unm", NULL};
	static const char *const table_names[] = {"concat", "insert", "move",   "pack",
	                                          "remove", "sort",   "unpack", NULL};
	static const char *const math_names[] = {
	    "abs",       "ceil", "cos",    "deg",        "exp",  "floor",      "fmod",
	    "huge",      "log",  "max",    "maxinteger", "min",  "mininteger", "modf",
	    "pi",        "rad",  "random", "randomseed", "sin",  "sqrt",       "tan",
	    "tointeger", "type", "ult",    "acos",       "asin", "atan",       NULL};
	static const char *const utf8_names[] = {"char", "charpattern", "codepoint", "codes",
	                                         "len",  "offset",      NULL};
	static const char *const co_names[] = {"create", "isyieldable", "running",
	                                       "status", "yield",       NULL};
	static const char *const os_names[] = {"clock", "date", "difftime", "time", NULL};
	static const luaL_Reg base_own[] = {{"print", l_print},
	                                    {"pcall", l_pcall},
	                                    {"xpcall", l_xpcall},
	                                    {"load", l_load},
	                                    {"collectgarbage", l_collectgarbage},
	                                    {"setmetatable", l_setmetatable},
	                                    {"rawset", l_rawset},
	                                    {"require", l_require},
	                                    {NULL, NULL}};
	static const luaL_Reg co_own[] = {
	    {"resume", co_resume}, {"wrap", co_wrap}, {"close", co_close}, {NULL, NULL}};
	mj_engine *e = mj__engine_of(L);
	int g, lib;
	size_t i;

	/* The base library writes into the registry's globals; a fresh table replaces it, so
	 * nothing off the allowlist is reachable. */
	lua_pushcfunction(L, luaopen_base);
	lua_call(L, 0, 1);
	lua_newtable(L);
	g = lua_gettop(L);
	copy_fields(L, g - 1, g, base_names);
	luaL_setfuncs(L, base_own, 0);
	lua_pushvalue(L, g);
	lua_setfield(L, g, "_G");
	lua_pushvalue(L, g);
	lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);

	open_lib(L, luaopen_string, string_names);
	lib = lua_gettop(L);
	mj__strlib_install(L, lib);
	guard_string_fn(L, lib, "rep", 1);
	guard_string_fn(L, lib, "upper", 0);
	guard_string_fn(L, lib, "lower", 0);
	guard_string_fn(L, lib, "reverse", 0);
	/* The string metatable's __index is the full library (with dump); point it at ours. */
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_newtable(L);
	copy_fields(L, -2, lua_gettop(L), string_meta);
	lua_pushvalue(L, lib);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -3);
	lua_pop(L, 2);
	lua_setfield(L, g, "string");

	open_lib(L, luaopen_table, table_names);
	lib = lua_gettop(L);
	lua_pushcfunction(L, t_insert);
	lua_setfield(L, lib, "insert");
	lua_pushcfunction(L, t_remove);
	lua_setfield(L, lib, "remove");
	guard_table_fn(L, lib, "sort", T_SORT);
	guard_table_fn(L, lib, "concat", T_CONCAT);
	guard_table_fn(L, lib, "unpack", T_UNPACK);
	guard_table_fn(L, lib, "move", T_MOVE);
	lua_setfield(L, g, "table");

	open_lib(L, luaopen_math, math_names);
	lua_setfield(L, g, "math");
	open_lib(L, luaopen_utf8, utf8_names);
	lua_setfield(L, g, "utf8");
	open_lib(L, luaopen_coroutine, co_names);
	luaL_setfuncs(L, co_own, 0);
	lua_setfield(L, g, "coroutine");
	open_lib(L, luaopen_os, os_names);
	lua_setfield(L, g, "os");

	lua_newtable(L);
	for (i = 0; i < e->nmodules; i++) {
		if (strcmp(e->modules[i], "json") == 0) {
			lua_pushcfunction(L, mj__json_open);
			lua_setfield(L, -2, "json");
		}
	}
	lua_setfield(L, LUA_REGISTRYINDEX, REG_MODULES);
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, REG_LOADED);
	lua_settop(L, g - 2);
	return 0;
}

/* ---- namespace proxies ---- */

static int
ns_newindex(lua_State *L)
{
	return luaL_error(L, "attempt to modify a read-only namespace");
}

/* The data table stays an upvalue: handing it out as the iteration state would let a
 * script write to it. */
static int
ns_next(lua_State *L)
{
	lua_settop(L, 2);
	if (lua_next(L, lua_upvalueindex(1)))
		return 2;
	lua_pushnil(L);
	return 1;
}

static int
ns_pairs(lua_State *L)
{
	if (!lua_getmetatable(L, 1))
		return luaL_error(L, "not a namespace");
	lua_getfield(L, -1, "__index");
	lua_pushcclosure(L, ns_next, 1);
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

static int
ns_len(lua_State *L)
{
	if (!lua_getmetatable(L, 1))
		return luaL_error(L, "not a namespace");
	lua_getfield(L, -1, "__index");
	lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
	return 1;
}

/* Replaces the data table on top of the stack by an empty proxy that reads through to it. */
void
mj__sandbox_wrap_readonly(lua_State *L)
{
	int data = lua_gettop(L);

	lua_newtable(L);
	lua_createtable(L, 0, 7);
	lua_pushvalue(L, data);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, ns_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushcfunction(L, ns_pairs);
	lua_setfield(L, -2, "__pairs");
	lua_pushcfunction(L, ns_len);
	lua_setfield(L, -2, "__len");
	lua_pushliteral(L, "namespace");
	lua_setfield(L, -2, "__metatable");
	lua_pushliteral(L, "namespace");
	lua_setfield(L, -2, "__name");
	lua_pushvalue(L, data);
	lua_rawsetp(L, -2, &ns_key);
	lua_setmetatable(L, -2);
	lua_replace(L, data);
}
