/* json module for sandboxed code: strict RFC 8259, paid for by the Lua allocator and budget. */
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "internal.h"

/* Containers nested deeper than this are refused both ways; it also bounds C recursion. */
#define JSON_MAX_DEPTH 128
/* Bytes or values processed between two calls to mj__engine_tick. */
#define JSON_TICK_EVERY 4096
/* Bytes or values per unit charged to the instruction budget. */
#define JSON_TICK_UNIT 16
/* Longer number literals are refused so strtod never sees unbounded input. */
#define JSON_MAX_NUMBER 1024

/*
 * Sandboxed code cannot create light userdata, so this address can be neither forged nor
 * modified, and it compares equal across every state in the process.
 */
static char json_null_tag;
#define JSON_NULL ((void *)&json_null_tag)

typedef struct {
	lua_State *L;
	size_t pending; /* work not yet charged */
} meter;

/*
 * A growable byte buffer owned by a userdata in a fixed stack slot. luaL_Buffer cannot be used
 * here because it needs the stack top to stay put between operations, while encoding and decoding
 * push tables in between. Growing replaces the userdata, so the memory is counted by the Lua
 * allocator and is collected if an error unwinds the call.
 */
typedef struct {
	lua_State *L;
	int slot;
	char *p;
	size_t len, cap;
} jbuf;

typedef struct {
	lua_State *L;
	meter m;
	jbuf out;
	int chain; /* stack slot of the parked-parents table */
	int pretty, sort_keys;
	const void *path[JSON_MAX_DEPTH]; /* tables being encoded, outermost first */
} encoder;

typedef struct {
	lua_State *L;
	meter m;
	jbuf scratch; /* unescaped string contents */
	int chain;    /* stack slot of the parked-parents table */
	const unsigned char *s;
	size_t len, pos;
	size_t mark; /* input before this offset is already charged */
} decoder;

typedef struct {
	const char *s; /* anchored in the sort's anchor table */
	size_t len;
	lua_Integer ikey; /* the original key when is_int */
	lua_Integer slot; /* anchor index of the original string key */
	int is_int;
} sortkey;

static void
meter_flush(meter *m)
{
	size_t steps = m->pending / JSON_TICK_UNIT;

	m->pending %= JSON_TICK_UNIT;
	while (steps > UINT_MAX) {
		mj__engine_tick(m->L, UINT_MAX);
		steps -= UINT_MAX;
	}
	if (steps > 0)
		mj__engine_tick(m->L, (unsigned)steps);
}

static void
meter_add(meter *m, size_t units)
{
	m->pending += units;
	if (m->pending >= JSON_TICK_EVERY)
		meter_flush(m);
}

static void
jbuf_init(jbuf *b, lua_State *L, int slot)
{
	b->L = L;
	b->slot = slot;
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

static void
jbuf_reserve(jbuf *b, size_t n)
{
	size_t cap;
	char *np;

	if (b->cap - b->len >= n)
		return;
	if (n > SIZE_MAX / 4 - b->len) {
		luaL_error(b->L, "json: buffer size overflow");
		return;
	}
	cap = b->cap > 0 ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	/* The old block stays anchored in the slot until its contents are copied. */
	np = lua_newuserdatauv(b->L, cap, 0);
	if (b->len > 0)
		memcpy(np, b->p, b->len);
	lua_replace(b->L, b->slot);
	b->p = np;
	b->cap = cap;
}

static void
jbuf_add(jbuf *b, const void *s, size_t n)
{
	if (n == 0)
		return;
	jbuf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
jbuf_addc(jbuf *b, char c)
{
	if (b->len == b->cap)
		jbuf_reserve(b, 1);
	b->p[b->len++] = c;
}

/*
 * Length of the well-formed UTF-8 sequence at s (n bytes available), 0 if it is malformed
 * (overlong, surrogate, above U+10FFFF, bad continuation), or -1 if the input ends inside a
 * sequence that is well-formed so far, so that truncated input reports end of input.
 */
static int
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xBF;
	int need, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		need = 1;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		need = 2;
		if (s[0] == 0xE0)
			lo = 0xA0;
		else if (s[0] == 0xED)
			hi = 0x9F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		need = 3;
		if (s[0] == 0xF0)
			lo = 0x90;
		else if (s[0] == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	for (i = 1; i <= need; i++) {
		if ((size_t)i >= n)
			return -1;
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xBF;
	}
	return need + 1;
}

/*
 * While a nested container is processed, its parent's stack slots are parked in a side table and
 * restored afterwards, so every nesting level reuses the same few stack slots. Keeping them on the
 * stack would need lua_checkstack, whose failure when memory runs out luaL_checkstack reports as
 * a runtime error ("stack overflow") rather than a memory error; rawseti raises LUA_ERRMEM.
 */
static void
park(lua_State *L, int chain, int base, int n, int depth)
{
	int i;

	if (lua_type(L, chain) != LUA_TTABLE) {
		lua_createtable(L, 16, 0);
		lua_replace(L, chain);
	}
	for (i = 0; i < n; i++) {
		lua_pushvalue(L, base + i);
		lua_rawseti(L, chain, (lua_Integer)depth * 4 + i + 1);
	}
}

static void
unpark(lua_State *L, int chain, int n, int depth)
{
	int i;

	for (i = 0; i < n; i++)
		lua_rawgeti(L, chain, (lua_Integer)depth * 4 + i + 1);
}

/* ---- encoding ---- */

static void
enc_newline(encoder *e, int depth)
{
	size_t n = 2 * (size_t)depth;

	jbuf_reserve(&e->out, n + 1);
	e->out.p[e->out.len++] = '\n';
	memset(e->out.p + e->out.len, ' ', n);
	e->out.len += n;
}

static void
enc_escape(encoder *e, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

	switch (c) {
	case '"':
		jbuf_add(&e->out, "\\\"", 2);
		break;
	case '\\':
		jbuf_add(&e->out, "\\\\", 2);
		break;
	case '\b':
		jbuf_add(&e->out, "\\b", 2);
		break;
	case '\f':
		jbuf_add(&e->out, "\\f", 2);
		break;
	case '\n':
		jbuf_add(&e->out, "\\n", 2);
		break;
	case '\r':
		jbuf_add(&e->out, "\\r", 2);
		break;
	case '\t':
		jbuf_add(&e->out, "\\t", 2);
		break;
	default:
		jbuf_add(&e->out, esc, sizeof(esc));
		break;
	}
}

static void
enc_string(encoder *e, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;

	jbuf_addc(&e->out, '"');
	while (i < len) {
		size_t from = i;
		size_t stop = len - i > JSON_TICK_EVERY ? i + JSON_TICK_EVERY : len;

		while (i < stop) {
			unsigned char c = s[i];
			int n;

			if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
				i++;
			} else if (c >= 0x80) {
				if ((n = utf8_seq(s + i, len - i)) <= 0) {
					luaL_error(e->L, "json.encode: invalid UTF-8 in string");
					return;
				}
				i += (size_t)n;
			} else {
				jbuf_add(&e->out, str + run, i - run);
				enc_escape(e, c);
				run = ++i;
			}
		}
		meter_add(&e->m, i - from);
	}
	jbuf_add(&e->out, str + run, i - run);
	jbuf_addc(&e->out, '"');
}

/*
 * Shortest of %.15g..%.17g that reads back as the same double. A result that would look like an
 * integer gets ".0" so that decoding gives a float again.
 */
static int
fmt_double(char *buf, size_t size, double d)
{
	char point = lua_getlocaledecpoint();
	int prec, n = 0, i, plain = 1;

	for (prec = 15; prec <= 17; prec++) {
		n = snprintf(buf, size, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (n < 0 || (size_t)n + 3 > size)
		return 0;
	for (i = 0; i < n; i++) {
		if (buf[i] == point)
			buf[i] = '.';
		if (buf[i] == '.' || buf[i] == 'e')
			plain = 0;
	}
	if (plain) {
		buf[n++] = '.';
		buf[n++] = '0';
		buf[n] = '\0';
	}
	return n;
}

static void
enc_number(encoder *e, int idx)
{
	char buf[64];
	int n;

	if (lua_isinteger(e->L, idx)) {
		n = snprintf(buf, sizeof(buf), LUA_INTEGER_FMT,
		             (LUAI_UACINT)lua_tointeger(e->L, idx));
	} else {
		double d = (double)lua_tonumber(e->L, idx);

		if (!isfinite(d)) {
			luaL_error(e->L, "json.encode: cannot encode NaN or infinity");
			return;
		}
		n = fmt_double(buf, sizeof(buf), d);
	}
	if (n <= 0) {
		luaL_error(e->L, "json.encode: cannot format number");
		return;
	}
	jbuf_add(&e->out, buf, (size_t)n);
}

static void enc_value(encoder *e, int idx, int depth);
static void enc_table(encoder *e, int idx, int depth);

/*
 * Encodes the value on top of the stack, which sits just above the container's n slots starting
 * at base, and pops it.
 */
static void
enc_child(encoder *e, int base, int n, int depth)
{
	lua_State *L = e->L;

	if (lua_type(L, base + n) != LUA_TTABLE) {
		enc_value(e, base + n, depth + 1);
		lua_settop(L, base + n - 1);
		return;
	}
	park(L, e->chain, base, n, depth);
	lua_replace(L, base);
	lua_settop(L, base);
	enc_table(e, base, depth + 1);
	lua_settop(L, base - 1);
	unpark(L, e->chain, n, depth);
}

static int
int_key(char *buf, size_t size, lua_Integer k)
{
	return snprintf(buf, size, LUA_INTEGER_FMT, (LUAI_UACINT)k);
}

/*
 * {1, ["1"] = 2} would give an object with the name "1" twice, which RFC 8259 advises against
 * and which would silently lose a value on the way back.
 */
static void
check_int_key_clash(encoder *e, int idx, const char *k, size_t klen)
{
	lua_pushlstring(e->L, k, klen);
	if (lua_rawget(e->L, idx) != LUA_TNIL) {
		luaL_error(e->L, "json.encode: duplicate key \"%s\" (integer and string)", k);
		return;
	}
	lua_pop(e->L, 1);
}

static void
enc_array(encoder *e, int idx, int depth, lua_Integer n)
{
	lua_Integer i;

	jbuf_addc(&e->out, '[');
	for (i = 1; i <= n; i++) {
		if (i > 1)
			jbuf_addc(&e->out, ',');
		if (e->pretty)
			enc_newline(e, depth + 1);
		lua_rawgeti(e->L, idx, i);
		enc_child(e, idx, 1, depth);
	}
	if (e->pretty)
		enc_newline(e, depth);
	jbuf_addc(&e->out, ']');
}

static void
enc_member_sep(encoder *e, int first, int depth)
{
	if (!first)
		jbuf_addc(&e->out, ',');
	if (e->pretty)
		enc_newline(e, depth + 1);
}

static void
enc_member_colon(encoder *e)
{
	if (e->pretty)
		jbuf_add(&e->out, ": ", 2);
	else
		jbuf_addc(&e->out, ':');
}

static void
enc_object(encoder *e, int idx, int depth, int has_str)
{
	lua_State *L = e->L;
	int first = 1;

	jbuf_addc(&e->out, '{');
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		enc_member_sep(e, first, depth);
		first = 0;
		if (lua_type(L, -2) == LUA_TSTRING) {
			size_t klen;
			const char *k = lua_tolstring(L, -2, &klen);

			enc_string(e, k, klen);
		} else {
			char k[32];
			int klen = int_key(k, sizeof(k), lua_tointeger(L, -2));

			if (has_str)
				check_int_key_clash(e, idx, k, (size_t)klen);
			enc_string(e, k, (size_t)klen);
		}
		enc_member_colon(e);
		enc_child(e, idx, 2, depth);
	}
	if (e->pretty)
		enc_newline(e, depth);
	jbuf_addc(&e->out, '}');
}

static int
key_cmp(const sortkey *a, const sortkey *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->s, b->s, n);

	if (c != 0)
		return c;
	return (a->len > b->len) - (a->len < b->len);
}

static void
key_sift(sortkey *k, size_t root, size_t n)
{
	for (;;) {
		size_t child = 2 * root + 1;
		sortkey t;

		if (child >= n)
			return;
		if (child + 1 < n && key_cmp(&k[child], &k[child + 1]) < 0)
			child++;
		if (key_cmp(&k[root], &k[child]) >= 0)
			return;
		t = k[root];
		k[root] = k[child];
		k[child] = t;
		root = child;
	}
}

/* Heapsort: in place and allocation-free, unlike glibc's qsort, which may call malloc. */
static void
key_sort(sortkey *k, size_t n)
{
	size_t i;
	sortkey t;

	for (i = n / 2; i > 0; i--)
		key_sift(k, i - 1, n);
	for (i = n; i > 1; i--) {
		t = k[0];
		k[0] = k[i - 1];
		k[i - 1] = t;
		key_sift(k, 0, i - 1);
	}
}

static void
enc_object_sorted(encoder *e, int idx, int depth, int has_str, lua_Integer n)
{
	lua_State *L = e->L;
	sortkey *keys;
	lua_Integer i = 0, j;
	int anchor;
	size_t bits = 1;

	if ((lua_Unsigned)n > SIZE_MAX / sizeof(*keys) || n > INT_MAX) {
		luaL_error(L, "json.encode: table too large to sort");
		return;
	}
	lua_createtable(L, (int)n, 0);
	anchor = idx + 1;
	keys = lua_newuserdatauv(L, (size_t)n * sizeof(*keys), 0);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		sortkey *k = &keys[i];

		lua_pop(L, 1);
		if (i == n) {
			luaL_error(L, "json.encode: table changed while encoding");
			return;
		}
		if (lua_type(L, -1) == LUA_TSTRING) {
			k->is_int = 0;
			k->s = lua_tolstring(L, -1, &k->len);
			lua_pushvalue(L, -1);
		} else {
			char buf[32];
			int blen;

			k->is_int = 1;
			k->ikey = lua_tointeger(L, -1);
			blen = int_key(buf, sizeof(buf), k->ikey);
			if (has_str)
				check_int_key_clash(e, idx, buf, (size_t)blen);
			k->s = lua_pushlstring(L, buf, (size_t)blen);
			k->len = (size_t)blen;
		}
		k->slot = ++i;
		lua_rawseti(L, anchor, k->slot);
	}
	while (((size_t)1 << bits) < (size_t)n && bits < 63)
		bits++;
	meter_add(&e->m, (size_t)n * bits);
	key_sort(keys, (size_t)i);

	jbuf_addc(&e->out, '{');
	for (j = 0; j < i; j++) {
		enc_member_sep(e, j == 0, depth);
		enc_string(e, keys[j].s, keys[j].len);
		enc_member_colon(e);
		if (keys[j].is_int) {
			lua_rawgeti(L, idx, keys[j].ikey);
		} else {
			lua_rawgeti(L, anchor, keys[j].slot);
			lua_rawget(L, idx);
		}
		enc_child(e, idx, 3, depth);
	}
	if (e->pretty)
		enc_newline(e, depth);
	jbuf_addc(&e->out, '}');
	lua_pop(L, 2);
}

static void
enc_table(encoder *e, int idx, int depth)
{
	lua_State *L = e->L;
	const void *p = lua_topointer(L, idx);
	lua_Integer n = 0, max = 0;
	int i, only_pos = 1, has_str = 0;

	for (i = 0; i < depth; i++) {
		if (e->path[i] == p) {
			luaL_error(L, "json.encode: cycle detected");
			return;
		}
	}
	if (depth >= JSON_MAX_DEPTH) {
		luaL_error(L, "json.encode: nesting too deep");
		return;
	}
	e->path[depth] = p;

	/* Decide between array and object, and reject unencodable keys before emitting anything. */
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		n++;
		meter_add(&e->m, 1);
		if (lua_type(L, -1) == LUA_TSTRING) {
			only_pos = 0;
			has_str = 1;
		} else if (lua_isinteger(L, -1)) {
			lua_Integer k = lua_tointeger(L, -1);

			if (k < 1)
				only_pos = 0;
			else if (k > max)
				max = k;
		} else {
			const char *t =
			    lua_type(L, -1) == LUA_TNUMBER ? "float" : luaL_typename(L, -1);

			luaL_error(L, "json.encode: table key must be a string or integer, got %s",
			           t);
			return;
		}
	}
	if (n == 0)
		jbuf_add(&e->out, "{}", 2);
	else if (only_pos && max == n)
		enc_array(e, idx, depth, n);
	else if (e->sort_keys)
		enc_object_sorted(e, idx, depth, has_str, n);
	else
		enc_object(e, idx, depth, has_str);
}

int
mj__json_is_null(const void *p)
{
	return p == JSON_NULL;
}

static void
enc_value(encoder *e, int idx, int depth)
{
	lua_State *L = e->L;
	int t = lua_type(L, idx);

	meter_add(&e->m, 1);
	switch (t) {
	case LUA_TNIL:
		jbuf_add(&e->out, "null", 4);
		return;
	case LUA_TBOOLEAN:
		if (lua_toboolean(L, idx))
			jbuf_add(&e->out, "true", 4);
		else
			jbuf_add(&e->out, "false", 5);
		return;
	case LUA_TNUMBER:
		enc_number(e, idx);
		return;
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);

		enc_string(e, s, len);
		return;
	}
	case LUA_TTABLE:
		/* A namespace is an empty proxy; its contents live in the data table. */
		luaL_checkstack(L, 2, "json.encode: nesting too deep");
		if (mj__namespace_data(L, idx)) {
			enc_table(e, lua_gettop(L), depth);
			lua_pop(L, 1);
			return;
		}
		enc_table(e, idx, depth);
		return;
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == JSON_NULL) {
			jbuf_add(&e->out, "null", 4);
			return;
		}
		break;
	default:
		break;
	}
	luaL_error(L, "json.encode: cannot encode %s", lua_typename(L, t));
}

/* Unknown options are refused so that a misspelt one is not silently ignored. */
static void
enc_options(encoder *e, int idx)
{
	lua_State *L = e->L;

	if (lua_isnil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		size_t klen = 0;
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
		int *flag;

		if (k != NULL && klen == 6 && memcmp(k, "pretty", 6) == 0)
			flag = &e->pretty;
		else if (k != NULL && klen == 9 && memcmp(k, "sort_keys", 9) == 0)
			flag = &e->sort_keys;
		else
			flag = NULL;
		if (flag == NULL) {
			if (k != NULL)
				luaL_error(L, "json.encode: unknown option '%s'", k);
			else
				luaL_error(L, "json.encode: option names must be strings");
			return;
		}
		if (!lua_isboolean(L, -1)) {
			luaL_error(L, "json.encode: option '%s' must be a boolean", k);
			return;
		}
		*flag = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
}

static int
json_encode(lua_State *L)
{
	encoder e;

	lua_settop(L, 2);
	e.L = L;
	e.m.L = L;
	e.m.pending = 0;
	e.pretty = 0;
	e.sort_keys = 0;
	enc_options(&e, 2);
	lua_pushnil(L);
	jbuf_init(&e.out, L, 3);
	lua_pushnil(L);
	e.chain = 4;
	/* enc_table wants its table on top of the stack. */
	lua_pushvalue(L, 1);
	enc_value(&e, 5, 0);
	meter_flush(&e.m);
	lua_pushlstring(L, e.out.p != NULL ? e.out.p : "", e.out.len);
	return 1;
}

/* ---- decoding ---- */

static int
dec_error(decoder *d, const char *what, size_t at)
{
	return luaL_error(d->L, "json.decode: %s at byte %I", what, (lua_Integer)at + 1);
}

static int
dec_eof(decoder *d)
{
	return dec_error(d, "unexpected end of input", d->len);
}

static int
dec_unexpected(decoder *d)
{
	char what[40];
	unsigned char c = d->s[d->pos];

	if (c > 0x20 && c < 0x7f)
		snprintf(what, sizeof(what), "unexpected character '%c'", c);
	else
		snprintf(what, sizeof(what), "unexpected byte 0x%02x", (unsigned)c);
	return dec_error(d, what, d->pos);
}

static void
dec_charge(decoder *d, size_t values)
{
	meter_add(&d->m, d->pos - d->mark + values);
	d->mark = d->pos;
}

static void
dec_skip_ws(decoder *d)
{
	for (;;) {
		size_t stop = d->len - d->pos > JSON_TICK_EVERY ? d->pos + JSON_TICK_EVERY : d->len;

		while (d->pos < stop) {
			unsigned char c = d->s[d->pos];

			if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
				return;
			d->pos++;
		}
		if (d->pos == d->len)
			return;
		dec_charge(d, 0);
	}
}

static int
is_digit(const decoder *d, size_t at)
{
	return at < d->len && d->s[at] >= '0' && d->s[at] <= '9';
}

/* Digits are skipped only up to the length cap, so an endless digit run costs nothing extra. */
static int
dec_digits(decoder *d, size_t start)
{
	if (!is_digit(d, d->pos)) {
		if (d->pos >= d->len)
			return dec_eof(d);
		return dec_error(d, "invalid number", d->pos);
	}
	while (is_digit(d, d->pos) && d->pos - start <= JSON_MAX_NUMBER)
		d->pos++;
	if (d->pos - start > JSON_MAX_NUMBER)
		return dec_error(d, "number too long", start);
	return 0;
}

static int
dec_number(decoder *d)
{
	lua_State *L = d->L;
	size_t start = d->pos, n;
	char tmp[64];

	if (d->s[d->pos] == '-')
		d->pos++;
	if (d->pos < d->len && d->s[d->pos] == '0') {
		d->pos++;
		if (is_digit(d, d->pos))
			return dec_error(d, "leading zero in number", d->pos);
	} else {
		dec_digits(d, start);
	}
	if (d->pos < d->len && d->s[d->pos] == '.') {
		d->pos++;
		dec_digits(d, start);
	}
	if (d->pos < d->len && (d->s[d->pos] == 'e' || d->s[d->pos] == 'E')) {
		d->pos++;
		if (d->pos < d->len && (d->s[d->pos] == '+' || d->s[d->pos] == '-'))
			d->pos++;
		dec_digits(d, start);
	}

	/*
	 * The text now matches the RFC grammar, which Lua's own reader accepts: it yields an
	 * integer when there is no fraction or exponent and the value fits, else a float, and it
	 * copes with the locale's decimal point.
	 */
	n = d->pos - start;
	if (n < sizeof(tmp)) {
		memcpy(tmp, d->s + start, n);
		tmp[n] = '\0';
		if (lua_stringtonumber(L, tmp) == 0)
			return dec_error(d, "invalid number", start);
	} else {
		lua_pushlstring(L, (const char *)d->s + start, n);
		if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0)
			return dec_error(d, "invalid number", start);
		lua_remove(L, -2);
	}
	return 0;
}

static int
dec_literal(decoder *d, const char *lit, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (d->pos + i >= d->len)
			return dec_eof(d);
		if (d->s[d->pos + i] != (unsigned char)lit[i])
			return dec_error(d, "invalid literal", d->pos + i);
	}
	d->pos += n;
	return 0;
}

/* Reads the four hex digits of the \u escape whose backslash is at `at`. */
static unsigned
dec_hex4(decoder *d, size_t at)
{
	unsigned v = 0;
	size_t i;

	for (i = at + 2; i < at + 6; i++) {
		unsigned char c;

		if (i >= d->len) {
			dec_eof(d);
			return 0;
		}
		c = d->s[i];
		if (c >= '0' && c <= '9')
			v = v * 16 + (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v = v * 16 + (unsigned)(c - 'A' + 10);
		else {
			dec_error(d, "invalid \\u escape", at);
			return 0;
		}
	}
	return v;
}

static void
add_utf8(jbuf *b, unsigned cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	jbuf_add(b, u, n);
}

/* Appends the escape at d->pos (a backslash) to the scratch buffer; errors name the backslash. */
static int
dec_escape(decoder *d)
{
	size_t at = d->pos;
	unsigned cp, lo;
	char c;

	if (at + 1 >= d->len)
		return dec_eof(d);
	switch (d->s[at + 1]) {
	case '"':
		c = '"';
		break;
	case '\\':
		c = '\\';
		break;
	case '/':
		c = '/';
		break;
	case 'b':
		c = '\b';
		break;
	case 'f':
		c = '\f';
		break;
	case 'n':
		c = '\n';
		break;
	case 'r':
		c = '\r';
		break;
	case 't':
		c = '\t';
		break;
	case 'u':
		cp = dec_hex4(d, at);
		d->pos = at + 6;
		if (cp >= 0xDC00 && cp <= 0xDFFF)
			return dec_error(d, "lone surrogate in \\u escape", at);
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			if (d->pos >= d->len || (d->s[d->pos] == '\\' && d->pos + 1 >= d->len))
				return dec_eof(d);
			if (d->s[d->pos] != '\\' || d->s[d->pos + 1] != 'u')
				return dec_error(d, "lone surrogate in \\u escape", at);
			lo = dec_hex4(d, d->pos);
			if (lo < 0xDC00 || lo > 0xDFFF)
				return dec_error(d, "lone surrogate in \\u escape", at);
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			d->pos += 6;
		}
		add_utf8(&d->scratch, cp);
		return 0;
	default:
		return dec_error(d, "invalid escape", at);
	}
	jbuf_addc(&d->scratch, c);
	d->pos = at + 2;
	return 0;
}

/*
 * Pushes the string starting at the opening quote at d->pos. Strings without escapes are pushed
 * straight from the input; the others are unescaped into the reusable scratch buffer.
 */
static int
dec_string(decoder *d)
{
	size_t start = ++d->pos, run = start;
	int escaped = 0;

	for (;;) {
		size_t stop = d->len - d->pos > JSON_TICK_EVERY ? d->pos + JSON_TICK_EVERY : d->len;

		while (d->pos < stop) {
			unsigned char c = d->s[d->pos];
			int n;

			if (c == '"') {
				const char *s = (const char *)d->s;

				if (!escaped) {
					lua_pushlstring(d->L, s + start, d->pos - start);
				} else {
					jbuf_add(&d->scratch, s + run, d->pos - run);
					lua_pushlstring(d->L, d->scratch.p, d->scratch.len);
				}
				d->pos++;
				return 0;
			}
			if (c == '\\') {
				if (!escaped) {
					escaped = 1;
					d->scratch.len = 0;
				}
				jbuf_add(&d->scratch, d->s + run, d->pos - run);
				dec_escape(d);
				run = d->pos;
			} else if (c < 0x20) {
				return dec_error(d, "control character in string", d->pos);
			} else if (c < 0x80) {
				d->pos++;
			} else {
				n = utf8_seq(d->s + d->pos, d->len - d->pos);
				if (n < 0)
					return dec_eof(d);
				if (n == 0)
					return dec_error(d, "invalid UTF-8 in string", d->pos);
				d->pos += (size_t)n;
			}
		}
		if (d->pos >= d->len)
			return dec_eof(d);
		dec_charge(d, 0);
	}
}

static int dec_value(decoder *d, int depth);

static int
dec_open(decoder *d, int depth)
{
	if (depth >= JSON_MAX_DEPTH)
		return dec_error(d, "nesting too deep", d->pos);
	lua_newtable(d->L);
	d->pos++;
	dec_skip_ws(d);
	if (d->pos >= d->len)
		return dec_eof(d);
	return 0;
}

/* After a value inside a container: 1 at the closing bracket, 0 after a comma. */
static int
dec_next(decoder *d, char close, const char *what)
{
	unsigned char c;

	dec_skip_ws(d);
	if (d->pos >= d->len)
		return dec_eof(d);
	c = d->s[d->pos];
	if (c == (unsigned char)close) {
		d->pos++;
		return 1;
	}
	if (c != ',')
		return dec_error(d, what, d->pos);
	d->pos++;
	dec_skip_ws(d);
	if (d->pos < d->len && d->s[d->pos] == (unsigned char)close)
		return dec_error(d, "trailing comma", d->pos);
	return 0;
}

/* Pushes the next value above the container's n slots starting at base. */
static void
dec_child(decoder *d, int base, int n, int depth)
{
	dec_skip_ws(d);
	if (d->pos < d->len && (d->s[d->pos] == '[' || d->s[d->pos] == '{')) {
		park(d->L, d->chain, base, n, depth);
		lua_settop(d->L, base - 1);
		dec_value(d, depth + 1);
		unpark(d->L, d->chain, n, depth);
		lua_rotate(d->L, base, n);
	} else {
		dec_value(d, depth + 1);
	}
}

static int
dec_array(decoder *d, int depth)
{
	int base = lua_gettop(d->L) + 1;
	lua_Integer n;

	dec_open(d, depth);
	if (d->s[d->pos] == ']') {
		d->pos++;
		return 0;
	}
	for (n = 1;; n++) {
		dec_child(d, base, 1, depth);
		lua_rawseti(d->L, base, n);
		if (dec_next(d, ']', "expected ',' or ']'"))
			return 0;
	}
}

static int
dec_object(decoder *d, int depth)
{
	int base = lua_gettop(d->L) + 1;

	dec_open(d, depth);
	if (d->s[d->pos] == '}') {
		d->pos++;
		return 0;
	}
	for (;;) {
		if (d->pos >= d->len)
			return dec_eof(d);
		if (d->s[d->pos] != '"')
			return dec_error(d, "expected string key", d->pos);
		dec_string(d);
		dec_skip_ws(d);
		if (d->pos >= d->len)
			return dec_eof(d);
		if (d->s[d->pos] != ':')
			return dec_error(d, "expected ':'", d->pos);
		d->pos++;
		dec_child(d, base, 2, depth);
		/* rawset keeps the last of duplicate names; the value is never nil. */
		lua_rawset(d->L, base);
		if (dec_next(d, '}', "expected ',' or '}'"))
			return 0;
	}
}

static int
dec_value(decoder *d, int depth)
{
	dec_skip_ws(d);
	dec_charge(d, 1);
	if (d->pos >= d->len)
		return dec_eof(d);
	switch (d->s[d->pos]) {
	case '{':
		return dec_object(d, depth);
	case '[':
		return dec_array(d, depth);
	case '"':
		return dec_string(d);
	case 't':
		dec_literal(d, "true", 4);
		lua_pushboolean(d->L, 1);
		return 0;
	case 'f':
		dec_literal(d, "false", 5);
		lua_pushboolean(d->L, 0);
		return 0;
	case 'n':
		dec_literal(d, "null", 4);
		lua_pushlightuserdata(d->L, JSON_NULL);
		return 0;
	case '-':
	case '0':
	case '1':
	case '2':
	case '3':
	case '4':
	case '5':
	case '6':
	case '7':
	case '8':
	case '9':
		return dec_number(d);
	default:
		return dec_unexpected(d);
	}
}

static int
json_decode(lua_State *L)
{
	decoder d;

	luaL_checktype(L, 1, LUA_TSTRING);
	lua_settop(L, 1);
	d.s = (const unsigned char *)lua_tolstring(L, 1, &d.len);
	d.L = L;
	d.m.L = L;
	d.m.pending = 0;
	d.pos = 0;
	d.mark = 0;
	lua_pushnil(L);
	jbuf_init(&d.scratch, L, 2);
	lua_pushnil(L);
	d.chain = 3;
	dec_value(&d, 0);
	dec_skip_ws(&d);
	if (d.pos < d.len)
		return dec_error(&d, "trailing garbage", d.pos);
	dec_charge(&d, 0);
	meter_flush(&d.m);
	return 1;
}

int
mj__json_open(lua_State *L)
{
	lua_createtable(L, 0, 3);
	lua_pushcfunction(L, json_encode);
	lua_setfield(L, -2, "encode");
	lua_pushcfunction(L, json_decode);
	lua_setfield(L, -2, "decode");
	lua_pushlightuserdata(L, JSON_NULL);
	lua_setfield(L, -2, "null");
	return 1;
}
