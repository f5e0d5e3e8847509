/* Lua 5.4 string.find, match, gmatch and gsub on a matcher that charges its work to the engine. */
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "internal.h"

/* Lua's own limits (LUA_MAXCAPTURES and MAXCCALLS in lstrlib.c), kept so scripts see the same
 * errors whichever implementation runs them. */
#define MAX_CAPTURES 32
#define MAX_DEPTH 200

/* One matcher step costs about as much as a few VM instructions, so each step is charged as
 * one instruction: a runaway pattern meets the instruction limit as soon as a loop would. */
#define STEPS_PER_TICK 1024
#define UNITS_PER_TICK 1024

/* Kept in capture.len, so they must be negative: a capture not yet closed, and a () capture. */
#define CAP_OPEN (-1)
#define CAP_POSITION (-2)

struct capture {
	const char *start;
	ptrdiff_t len;
};

struct matcher {
	lua_State *L;
	const char *src; /* the whole subject, not the init position: %f and () look before init */
	const char *src_end;
	const char *pat_end;
	int depth_left;
	int ncap;
	size_t steps;
	struct capture cap[MAX_CAPTURES];
};

static const char *match_here(struct matcher *m, const char *s, const char *p);

/* Every path that can loop or backtrack passes through here, so no pattern escapes the budget.
 * The tick may longjmp, which is safe because the matcher lives on the C stack or in userdata. */
static inline void
charge(struct matcher *m, size_t n)
{
	size_t ticks;

	m->steps += n;
	if (m->steps < STEPS_PER_TICK)
		return;
	ticks = m->steps / STEPS_PER_TICK;
	m->steps %= STEPS_PER_TICK;
	if (ticks > UINT_MAX / UNITS_PER_TICK)
		ticks = UINT_MAX / UNITS_PER_TICK;
	mj__engine_tick(m->L, (unsigned)ticks * UNITS_PER_TICK);
}

static void
matcher_init(struct matcher *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
	m->L = L;
	m->src = s;
	m->src_end = s + ls;
	m->pat_end = p + lp;
	m->steps = 0;
	m->depth_left = MAX_DEPTH;
	m->ncap = 0;
}

/* A longjmp out of a match leaves depth_left and ncap wherever it was, so every attempt
 * starts from here rather than trusting the previous one to have unwound. */
static void
matcher_reset(struct matcher *m)
{
	m->depth_left = MAX_DEPTH;
	m->ncap = 0;
}

/* Lua 5.4's rule for string positions: negative counts from the end, anything before the start
 * clips to 1. Returns a 1-based position that may lie past the end. */
static size_t
start_index(lua_Integer pos, size_t len)
{
	if (pos > 0)
		return (size_t)pos;
	if (pos == 0 || pos < -(lua_Integer)len)
		return 1;
	return len + (size_t)pos + 1;
}

static int
class_has(int c, int cl)
{
	int r;

	switch (tolower(cl)) {
	case 'a':
		r = isalpha(c);
		break;
	case 'c':
		r = iscntrl(c);
		break;
	case 'd':
		r = isdigit(c);
		break;
	case 'g':
		r = isgraph(c);
		break;
	case 'l':
		r = islower(c);
		break;
	case 'p':
		r = ispunct(c);
		break;
	case 's':
		r = isspace(c);
		break;
	case 'u':
		r = isupper(c);
		break;
	case 'w':
		r = isalnum(c);
		break;
	case 'x':
		r = isxdigit(c);
		break;
	case 'z':
		/* Deprecated since 5.2, but 5.4.4 still accepts it. */
		r = c == 0;
		break;
	default:
		/* An escaped non-class character stands for itself, whatever its case. */
		return cl == c;
	}
	if (isupper(cl))
		r = !r;
	return r != 0;
}

/* p is the set's '[' and close its ']'. The bounds were validated by item_end, so p[1] is always
 * readable here. */
static int
set_has(int c, const char *p, const char *close)
{
	int want = 1;

	if (p[1] == '^') {
		want = 0;
		p++;
	}
	while (++p < close) {
		if (*p == '%') {
			p++;
			if (class_has(c, (unsigned char)*p))
				return want;
		} else if (p[1] == '-' && p + 2 < close) {
			/* A '-' right before ']' is a literal, not the start of a range. */
			p += 2;
			if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
				return want;
		} else if ((unsigned char)*p == c) {
			return want;
		}
	}
	return !want;
}

/* Returns the end of the single-character item at p. Validation is lazy, as in Lua: a malformed
 * item is only reported once the matcher reaches it. */
static const char *
item_end(struct matcher *m, const char *p)
{
	char c = *p++;

	if (c == '%') {
		if (p >= m->pat_end)
			luaL_error(m->L, "malformed pattern (ends with '%%')");
		return p + 1;
	}
	if (c == '[') {
		if (p < m->pat_end && *p == '^')
			p++;
		/* The first character is always a member, so "[]]" is the set of ']'. */
		do {
			if (p >= m->pat_end)
				luaL_error(m->L, "malformed pattern (missing ']')");
			c = *p++;
			if (c == '%' && p < m->pat_end)
				p++;
		} while (p >= m->pat_end || *p != ']');
		return p + 1;
	}
	return p;
}

static int
item_matches(struct matcher *m, const char *s, const char *p, const char *ep)
{
	int c;

	if (s >= m->src_end)
		return 0;
	c = (unsigned char)*s;
	switch (*p) {
	case '.':
		return 1;
	case '%':
		return class_has(c, (unsigned char)p[1]);
	case '[':
		/* A set is scanned whole for each subject byte; a huge set is paid for. */
		charge(m, (size_t)(ep - p) >> 3);
		return set_has(c, p, ep - 1);
	default:
		return (unsigned char)*p == c;
	}
}

static const char *
match_balance(struct matcher *m, const char *s, const char *p)
{
	char open, close;
	size_t depth = 1;

	if (p + 1 >= m->pat_end)
		luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
	if (s >= m->src_end || *s != p[0])
		return NULL;
	open = p[0];
	close = p[1];
	/* Close is tested first so that %b with equal delimiters pairs neighbours. */
	while (++s < m->src_end) {
		charge(m, 1);
		if (*s == close) {
			if (--depth == 0)
				return s + 1;
		} else if (*s == open) {
			depth++;
		}
	}
	return NULL;
}

static const char *
match_backref(struct matcher *m, const char *s, int digit)
{
	int l = digit - '1';
	size_t len;

	if (l < 0 || l >= m->ncap || m->cap[l].len == CAP_OPEN)
		luaL_error(m->L, "invalid capture index %%%d", l + 1);
	/* Lua compares against the position marker as if it were a huge length, so a back-reference
	 * to a position capture never matches. */
	if (m->cap[l].len == CAP_POSITION)
		return NULL;
	len = (size_t)m->cap[l].len;
	charge(m, len);
	if ((size_t)(m->src_end - s) >= len && memcmp(m->cap[l].start, s, len) == 0)
		return s + len;
	return NULL;
}

static const char *
open_capture(struct matcher *m, const char *s, const char *p, ptrdiff_t kind)
{
	const char *r;
	int n = m->ncap;

	if (n >= MAX_CAPTURES)
		luaL_error(m->L, "too many captures");
	m->cap[n].start = s;
	m->cap[n].len = kind;
	m->ncap = n + 1;
	if ((r = match_here(m, s, p)) == NULL)
		m->ncap--;
	return r;
}

static const char *
close_capture(struct matcher *m, const char *s, const char *p)
{
	const char *r;
	int l;

	for (l = m->ncap - 1; l >= 0; l--)
		if (m->cap[l].len == CAP_OPEN)
			break;
	if (l < 0)
		luaL_error(m->L, "invalid pattern capture");
	m->cap[l].len = s - m->cap[l].start;
	if ((r = match_here(m, s, p)) == NULL)
		m->cap[l].len = CAP_OPEN;
	return r;
}

static const char *
match_greedy(struct matcher *m, const char *s, const char *p, const char *ep)
{
	const char *r;
	size_t i = 0;

	while (item_matches(m, s + i, p, ep)) {
		charge(m, 1);
		i++;
	}
	for (;;) {
		if ((r = match_here(m, s + i, ep + 1)) != NULL)
			return r;
		if (i-- == 0)
			return NULL;
	}
}

static const char *
match_lazy(struct matcher *m, const char *s, const char *p, const char *ep)
{
	const char *r;

	for (;;) {
		if ((r = match_here(m, s, ep + 1)) != NULL)
			return r;
		if (!item_matches(m, s, p, ep))
			return NULL;
		s++;
	}
}

/* Matches p against s onwards. Only captures and quantified items recurse, exactly where Lua's
 * matcher does, so "pattern too complex" fires for the same patterns and subjects; everything
 * else loops in place. */
static const char *
match_seq(struct matcher *m, const char *s, const char *p)
{
	const char *ep, *r;
	char q;

	for (;;) {
		charge(m, 1);
		if (p == m->pat_end)
			return s;
		switch (*p) {
		case '(':
			if (p + 1 < m->pat_end && p[1] == ')')
				return open_capture(m, s, p + 2, CAP_POSITION);
			return open_capture(m, s, p + 1, CAP_OPEN);
		case ')':
			return close_capture(m, s, p + 1);
		case '$':
			/* Only a final '$' anchors; anywhere else it is an ordinary character. */
			if (p + 1 == m->pat_end)
				return s == m->src_end ? s : NULL;
			break;
		case '%':
			if (p + 1 == m->pat_end)
				break;
			switch (p[1]) {
			case 'b':
				if ((s = match_balance(m, s, p + 2)) == NULL)
					return NULL;
				p += 4;
				continue;
			case 'f': {
				int prev, cur;

				p += 2;
				if (p >= m->pat_end || *p != '[')
					luaL_error(m->L, "missing '[' after '%%f' in pattern");
				ep = item_end(m, p);
				/* The subject's edges count as '\0', as Lua sees its terminator. */
				prev = s == m->src ? 0 : (unsigned char)s[-1];
				cur = s < m->src_end ? (unsigned char)*s : 0;
				charge(m, (size_t)(ep - p) >> 2);
				if (set_has(prev, p, ep - 1) || !set_has(cur, p, ep - 1))
					return NULL;
				p = ep;
				continue;
			}
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
				if ((s = match_backref(m, s, (unsigned char)p[1])) == NULL)
					return NULL;
				p += 2;
				continue;
			default:
				break;
			}
			break;
		default:
			break;
		}

		ep = item_end(m, p);
		q = ep < m->pat_end ? *ep : '\0';
		if (!item_matches(m, s, p, ep)) {
			if (q == '*' || q == '?' || q == '-') {
				p = ep + 1;
				continue;
			}
			return NULL;
		}
		switch (q) {
		case '?':
			if ((r = match_here(m, s + 1, ep + 1)) != NULL)
				return r;
			p = ep + 1;
			continue;
		case '+':
			return match_greedy(m, s + 1, p, ep);
		case '*':
			return match_greedy(m, s, p, ep);
		case '-':
			return match_lazy(m, s, p, ep);
		default:
			s++;
			p = ep;
			continue;
		}
	}
}

/* Every recursion goes through here so the depth bound covers all of them. */
static const char *
match_here(struct matcher *m, const char *s, const char *p)
{
	const char *r;

	if (m->depth_left-- == 0)
		luaL_error(m->L, "pattern too complex");
	r = match_seq(m, s, p);
	m->depth_left++;
	return r;
}

/* Reports capture i of the match [s, e): its text in *text and *len, or, for a position
 * capture, returns 0 with *text at the position. With no captures, capture 0 is the whole match,
 * as in Lua. */
static int
capture_get(struct matcher *m, int i, const char *s, const char *e, const char **text, size_t *len)
{
	if (i >= m->ncap) {
		if (i != 0)
			luaL_error(m->L, "invalid capture index %%%d", i + 1);
		*text = s;
		*len = (size_t)(e - s);
		return 1;
	}
	*text = m->cap[i].start;
	if (m->cap[i].len == CAP_OPEN)
		luaL_error(m->L, "unfinished capture");
	if (m->cap[i].len == CAP_POSITION)
		return 0;
	*len = (size_t)m->cap[i].len;
	return 1;
}

static void
push_capture(struct matcher *m, int i, const char *s, const char *e)
{
	const char *text;
	size_t len;

	if (capture_get(m, i, s, e, &text, &len))
		lua_pushlstring(m->L, text, len);
	else
		lua_pushinteger(m->L, (lua_Integer)(text - m->src) + 1);
}

/* Pushes every capture, or the whole match when there are none and s is not NULL (find passes
 * NULL because it has already pushed the bounds). Returns how many values it pushed. */
static int
push_captures(struct matcher *m, const char *s, const char *e)
{
	int i, n = (m->ncap == 0 && s != NULL) ? 1 : m->ncap;

	luaL_checkstack(m->L, n, "too many captures");
	for (i = 0; i < n; i++)
		push_capture(m, i, s, e);
	return n;
}

static int
no_specials(const char *p, size_t lp)
{
	size_t i;

	for (i = 0; i < lp; i++) {
		switch (p[i]) {
		case '^':
		case '$':
		case '*':
		case '+':
		case '?':
		case '.':
		case '(':
		case '[':
		case '%':
		case '-':
			return 0;
		default:
			break;
		}
	}
	return 1;
}

static int
find_or_match(lua_State *L, int find)
{
	size_t ls, lp, init;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);

	init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
	if (init > ls) {
		luaL_pushfail(L);
		return 1;
	}
	if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
		/* glibc's memmem is linear (two-way), so plain find cannot be made quadratic. */
		const char *hit = memmem(s + init, ls - init, p, lp);
		struct matcher m;

		/* Charged afterwards: the scan cannot run away, but a script calling it in a loop
		 * should pay in proportion to the bytes it makes us read. */
		matcher_init(&m, L, s, ls, p, lp);
		charge(&m, hit != NULL ? (size_t)(hit - (s + init)) + lp : ls - init);
		if (hit != NULL) {
			lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
			lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
			return 2;
		}
	} else {
		struct matcher m;
		const char *s1 = s + init;
		int anchored = lp > 0 && *p == '^';

		if (anchored) {
			p++;
			lp--;
		}
		matcher_init(&m, L, s, ls, p, lp);
		do {
			const char *e;

			matcher_reset(&m);
			if ((e = match_here(&m, s1, p)) != NULL) {
				if (!find)
					return push_captures(&m, s1, e);
				lua_pushinteger(L, (lua_Integer)(s1 - s) + 1);
				lua_pushinteger(L, (lua_Integer)(e - s));
				return push_captures(&m, NULL, NULL) + 2;
			}
		} while (s1++ < m.src_end && !anchored);
	}
	luaL_pushfail(L);
	return 1;
}

static int
str_find(lua_State *L)
{
	return find_or_match(L, 1);
}

static int
str_match(lua_State *L)
{
	return find_or_match(L, 0);
}

/* Lives in a userdata upvalue of the iterator; the subject and pattern are upvalues too, which
 * keeps the pointers into them valid. */
struct gmatch_state {
	const char *next;
	const char *pat;
	const char *last; /* end of the previous match: 5.4 refuses an empty match there */
	struct matcher m;
};

static int
gmatch_next(lua_State *L)
{
	struct gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
	const char *src;

	/* The iterator may be resumed from another coroutine. */
	g->m.L = L;
	for (src = g->next; src <= g->m.src_end; src++) {
		const char *e;

		matcher_reset(&g->m);
		if ((e = match_here(&g->m, src, g->pat)) != NULL && e != g->last) {
			g->next = g->last = e;
			return push_captures(&g->m, src, e);
		}
	}
	return 0;
}

static int
str_gmatch(lua_State *L)
{
	size_t ls, lp, init;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	struct gmatch_state *g;

	init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
	/* Past the end is simply exhausted; clamping keeps s + init inside the string object. */
	if (init > ls)
		init = ls + 1;
	lua_settop(L, 2);
	g = lua_newuserdatauv(L, sizeof(*g), 0);
	/* No '^' handling: gmatch treats a leading caret as a literal, as Lua 5.4 does. */
	matcher_init(&g->m, L, s, ls, p, lp);
	g->next = s + init;
	g->pat = p;
	g->last = NULL;
	lua_pushcclosure(L, gmatch_next, 3);
	return 1;
}

static void
add_string_repl(struct matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
	lua_State *L = m->L;
	size_t l;
	const char *r = lua_tolstring(L, 3, &l);
	const char *pct;

	/* Captures in the replacement can be empty, so the output alone does not bound the work. */
	charge(m, l);
	while ((pct = memchr(r, '%', l)) != NULL) {
		luaL_addlstring(b, r, (size_t)(pct - r));
		/* A trailing '%' reads the string's terminator and is rejected below. */
		pct++;
		if (*pct == '%') {
			luaL_addchar(b, '%');
		} else if (*pct == '0') {
			luaL_addlstring(b, s, (size_t)(e - s));
		} else if (isdigit((unsigned char)*pct)) {
			const char *text;
			size_t len;

			if (capture_get(m, *pct - '1', s, e, &text, &len)) {
				luaL_addlstring(b, text, len);
			} else {
				lua_pushinteger(L, (lua_Integer)(text - m->src) + 1);
				luaL_addvalue(b);
			}
		} else {
			luaL_error(L, "invalid use of '%%' in replacement string");
		}
		l -= (size_t)(pct + 1 - r);
		r = pct + 1;
	}
	luaL_addlstring(b, r, l);
}

/* Appends the replacement for the match [s, e). Returns whether the text changed, which only
 * decides whether gsub may return its argument unchanged. */
static int
add_repl(struct matcher *m, luaL_Buffer *b, const char *s, const char *e, int type)
{
	lua_State *L = m->L;

	switch (type) {
	case LUA_TFUNCTION: {
		int n;

		lua_pushvalue(L, 3);
		n = push_captures(m, s, e);
		lua_call(L, n, 1);
		break;
	}
	case LUA_TTABLE:
		push_capture(m, 0, s, e);
		lua_gettable(L, 3);
		break;
	default:
		add_string_repl(m, b, s, e);
		return 1;
	}
	if (!lua_toboolean(L, -1)) {
		lua_pop(L, 1);
		luaL_addlstring(b, s, (size_t)(e - s));
		return 0;
	}
	if (!lua_isstring(L, -1))
		luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
	luaL_addvalue(b);
	return 1;
}

static int
str_gsub(lua_State *L)
{
	size_t ls, lp;
	const char *src = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	const char *last = NULL;
	int type = lua_type(L, 3);
	lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
	int anchored = lp > 0 && *p == '^';
	lua_Integer n = 0;
	int changed = 0;
	struct matcher m;
	luaL_Buffer b;

	luaL_argexpected(L,
	                 type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION ||
	                     type == LUA_TTABLE,
	                 3, "string/function/table");
	/* The result grows in a Lua buffer so its memory counts against the state's allocator and
	 * is reclaimed if a tick or a replacement raises. */
	luaL_buffinit(L, &b);
	if (anchored) {
		p++;
		lp--;
	}
	matcher_init(&m, L, src, ls, p, lp);
	while (n < max_n) {
		const char *e;

		matcher_reset(&m);
		if ((e = match_here(&m, src, p)) != NULL && e != last) {
			n++;
			changed |= add_repl(&m, &b, src, e, type);
			src = last = e;
		} else if (src < m.src_end) {
			luaL_addchar(&b, *src++);
		} else {
			break;
		}
		if (anchored)
			break;
	}
	if (!changed) {
		lua_pushvalue(L, 1);
	} else {
		luaL_addlstring(&b, src, (size_t)(m.src_end - src));
		luaL_pushresult(&b);
	}
	lua_pushinteger(L, n);
	return 2;
}

void
mj__strlib_install(lua_State *L, int idx)
{
	static const luaL_Reg funcs[] = {
	    {"find", str_find},
	    {"match", str_match},
	    {"gmatch", str_gmatch},
	    {"gsub", str_gsub},
	};
	size_t i;

	idx = lua_absindex(L, idx);
	for (i = 0; i < sizeof(funcs) / sizeof(funcs[0]); i++) {
		lua_pushcfunction(L, funcs[i].func);
		lua_setfield(L, idx, funcs[i].name);
	}
}
