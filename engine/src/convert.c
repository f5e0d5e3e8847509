/* Conversion between Lua values and mj_value trees, bounded and free of metamethods. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine_impl.h"
#include "internal.h"

typedef struct conv {
	lua_State *L;
	mj__caps *caps;
	const void *path[201]; /* tables on the current path, for cycle detection */
	char *err;
	size_t errlen;
} conv;

static mj_err
fail(conv *c, mj_err err, const char *msg)
{
	snprintf(c->err, c->errlen, "%s", msg);
	return err;
}

static mj_err
count_item(conv *c)
{
	char msg[96];

	if (++c->caps->items > c->caps->max_items) {
		snprintf(msg, sizeof(msg), "result too large: more than %zu values",
		         c->caps->max_items);
		return fail(c, MJ_ELIMIT, msg);
	}
	return MJ_OK;
}

static mj_err
count_bytes(conv *c, size_t n)
{
	char msg[96];

	if (n > c->caps->max_bytes || c->caps->bytes + n > c->caps->max_bytes) {
		snprintf(msg, sizeof(msg), "result too large: more than %zu bytes",
		         c->caps->max_bytes);
		return fail(c, MJ_ELIMIT, msg);
	}
	c->caps->bytes += n;
	return MJ_OK;
}

static mj_err convert(conv *c, int idx, uint32_t depth, mj_value *out);

static mj_err
convert_key(conv *c, int idx, mj_value *out)
{
	char msg[96];
	const char *s;
	size_t len;
	mj_err err;

	if ((err = count_item(c)) != MJ_OK)
		return err;
	switch (lua_type(c->L, idx)) {
	case LUA_TSTRING:
		s = lua_tolstring(c->L, idx, &len);
		if ((err = count_bytes(c, len)) != MJ_OK)
			return err;
		return mj_value_string(out, s, len) == MJ_OK ? MJ_OK
		                                             : fail(c, MJ_ENOMEM, "out of memory");
	case LUA_TNUMBER:
		if (lua_isinteger(c->L, idx))
			mj_value_int(out, (int64_t)lua_tointeger(c->L, idx));
		else
			mj_value_float(out, (double)lua_tonumber(c->L, idx));
		return MJ_OK;
	case LUA_TBOOLEAN:
		mj_value_bool(out, lua_toboolean(c->L, idx));
		return MJ_OK;
	default:
		snprintf(msg, sizeof(msg), "cannot convert a table key of type '%s'",
		         lua_typename(c->L, lua_type(c->L, idx)));
		return fail(c, MJ_EINVAL, msg);
	}
}

/* A table whose keys are exactly 1..n with n >= 1 is an array; anything else is a map. */
static mj_err
convert_table(conv *c, int idx, uint32_t depth, mj_value *out)
{
	lua_State *L = c->L;
	size_t n = 0, i;
	lua_Unsigned len;
	int is_array;
	mj_err err;

	len = lua_rawlen(L, idx);
	is_array = len > 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		n++;
		if (is_array && !(lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 &&
		                  (lua_Unsigned)lua_tointeger(L, -2) <= len))
			is_array = 0;
		lua_pop(L, 1);
		if (n > c->caps->max_items) {
			lua_pop(L, 1);
			c->caps->items = c->caps->max_items;
			return count_item(c);
		}
	}
	if (is_array && n != len)
		is_array = 0;
	if (is_array) {
		if ((err = mj_value_array(out, n)) != MJ_OK)
			return fail(c, err, "out of memory");
		for (i = 0; i < n; i++) {
			lua_rawgeti(L, idx, (lua_Integer)(i + 1));
			err = convert(c, lua_gettop(L), depth + 1, &out->u.a.items[i]);
			lua_pop(L, 1);
			if (err != MJ_OK)
				goto fail_fill;
		}
		return MJ_OK;
	}
	if ((err = mj_value_map(out, n)) != MJ_OK)
		return fail(c, err, "out of memory");
	if (n == 0)
		return MJ_OK; /* nothing to walk: pushing a key here would leave it on the stack */
	i = 0;
	lua_pushnil(L);
	while (i < n && lua_next(L, idx)) {
		err = convert_key(c, lua_gettop(L) - 1, &out->u.m.keys[i]);
		if (err == MJ_OK)
			err = convert(c, lua_gettop(L), depth + 1, &out->u.m.vals[i]);
		lua_pop(L, 1);
		i++;
		if (err != MJ_OK) {
			lua_pop(L, 1);
			goto fail_fill;
		}
	}
	if (i == n)
		lua_pop(L, 1); /* the last key, as the loop stopped before lua_next ran dry */
	else
		out->u.m.len = i; /* fewer entries than counted (a weak table lost some) */
	return MJ_OK;

fail_fill:
	mj_value_free(out);
	return err;
}

static mj_err
convert(conv *c, int idx, uint32_t depth, mj_value *out)
{
	lua_State *L = c->L;
	char msg[96];
	const char *s;
	const void *p;
	size_t len;
	uint32_t i;
	mj_err err;

	if ((err = count_item(c)) != MJ_OK)
		return err;
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		mj_value_nil(out);
		return MJ_OK;
	case LUA_TBOOLEAN:
		mj_value_bool(out, lua_toboolean(L, idx));
		return MJ_OK;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			mj_value_int(out, (int64_t)lua_tointeger(L, idx));
		else
			mj_value_float(out, (double)lua_tonumber(L, idx));
		return MJ_OK;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &len);
		if ((err = count_bytes(c, len)) != MJ_OK)
			return err;
		return mj_value_string(out, s, len) == MJ_OK ? MJ_OK
		                                             : fail(c, MJ_ENOMEM, "out of memory");
	case LUA_TTABLE:
		if (depth >= c->caps->max_depth) {
			snprintf(msg, sizeof(msg), "result too deep: more than %u levels",
			         c->caps->max_depth);
			return fail(c, MJ_ELIMIT, msg);
		}
		p = lua_topointer(L, idx);
		for (i = 0; i < depth; i++)
			if (c->path[i] == p)
				return fail(c, MJ_EINVAL,
				            "cannot convert a table that contains itself (cycle)");
		if (!lua_checkstack(L, 4))
			return fail(c, MJ_ENOMEM, "out of memory");
		c->path[depth] = p;
		/* A namespace is an empty proxy; convert the host data it reads through to. */
		if (mj__namespace_data(L, idx)) {
			err = convert_table(c, lua_gettop(L), depth, out);
			lua_pop(L, 1);
			return err;
		}
		return convert_table(c, lua_absindex(L, idx), depth, out);
	case LUA_TLIGHTUSERDATA:
		if (mj__json_is_null(lua_touserdata(L, idx))) {
			mj_value_nil(out);
			return MJ_OK;
		}
		/* fall through */
	default:
		s = lua_typename(L, lua_type(L, idx));
		if ((err = count_bytes(c, strlen(s))) != MJ_OK)
			return err;
		return mj_value_opaque(out, s) == MJ_OK ? MJ_OK
		                                        : fail(c, MJ_ENOMEM, "out of memory");
	}
}

mj_err
mj__to_value(lua_State *L, int idx, mj__caps *caps, mj_value *out, char *err, size_t errlen)
{
	conv c;
	mj_err rc;
	int top = lua_gettop(L);

	c.L = L;
	c.caps = caps;
	c.err = err;
	c.errlen = errlen;
	if (caps->max_depth > 200)
		caps->max_depth = 200;
	memset(out, 0, sizeof(*out));
	rc = convert(&c, lua_absindex(L, idx), 0, out);
	lua_settop(L, top);
	return rc;
}

static void
push_key(lua_State *L, const mj_value *k)
{
	switch (k->type) {
	case MJ_VSTRING:
		lua_pushlstring(L, k->u.s.ptr, k->u.s.len);
		break;
	case MJ_VINT:
		lua_pushinteger(L, (lua_Integer)k->u.i);
		break;
	case MJ_VFLOAT:
		if (isnan(k->u.f))
			luaL_error(L, "map key is NaN");
		lua_pushnumber(L, (lua_Number)k->u.f);
		break;
	case MJ_VBOOL:
		lua_pushboolean(L, k->u.b);
		break;
	default:
		luaL_error(L, "map key of type %s is not allowed", mj_vtype_name(k->type));
	}
}

void
mj__push_value(lua_State *L, const mj_value *v, bool readonly, int depth)
{
	size_t i;

	if (depth > 200)
		luaL_error(L, "value nested too deeply");
	luaL_checkstack(L, 4, "value nested too deeply");
	switch (v->type) {
	case MJ_VNIL:
		lua_pushnil(L);
		break;
	case MJ_VBOOL:
		lua_pushboolean(L, v->u.b);
		break;
	case MJ_VINT:
		lua_pushinteger(L, (lua_Integer)v->u.i);
		break;
	case MJ_VFLOAT:
		lua_pushnumber(L, (lua_Number)v->u.f);
		break;
	case MJ_VSTRING:
		lua_pushlstring(L, v->u.s.ptr, v->u.s.len);
		break;
	case MJ_VARRAY:
		if (v->u.a.len > (size_t)0x7fffffff)
			luaL_error(L, "array too large");
		lua_createtable(L, (int)v->u.a.len, 0);
		for (i = 0; i < v->u.a.len; i++) {
			mj__push_value(L, &v->u.a.items[i], readonly, depth + 1);
			lua_rawseti(L, -2, (lua_Integer)(i + 1));
		}
		if (readonly)
			mj__sandbox_wrap_readonly(L);
		break;
	case MJ_VMAP:
		if (v->u.m.len > (size_t)0x7fffffff)
			luaL_error(L, "map too large");
		lua_createtable(L, 0, (int)v->u.m.len);
		for (i = 0; i < v->u.m.len; i++) {
			if (v->u.m.keys[i].type == MJ_VNIL)
				luaL_error(L, "map key is nil");
			push_key(L, &v->u.m.keys[i]);
			mj__push_value(L, &v->u.m.vals[i], readonly, depth + 1);
			lua_rawset(L, -3);
		}
		if (readonly)
			mj__sandbox_wrap_readonly(L);
		break;
	case MJ_VOPAQUE:
		luaL_error(L, "an opaque %s value cannot be passed into Lua", v->u.s.ptr);
		break;
	default:
		luaL_error(L, "unknown value type");
	}
}
