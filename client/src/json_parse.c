/* A small recursive-descent JSON parser into mj_value trees, bounded in depth. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_parse.h"
#include "mj/text.h"

#define MAX_DEPTH 200

typedef struct parser {
	const char *p;
	const char *end;
	const char *start;
	char *why;
	size_t whylen;
} parser;

static mj_err
perr(parser *ps, mj_err err, const char *what)
{
	if (ps->why != NULL && ps->whylen > 0)
		snprintf(ps->why, ps->whylen, "%s at byte %zu", what, (size_t)(ps->p - ps->start));
	return err;
}

static void
skip_ws(parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static bool
literal(parser *ps, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return false;
	ps->p += n;
	return true;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static bool
read_hex4(parser *ps, uint32_t *out)
{
	uint32_t v = 0;
	int i, h;

	if (ps->end - ps->p < 4)
		return false;
	for (i = 0; i < 4; i++) {
		if ((h = hexval(ps->p[i])) < 0)
			return false;
		v = v << 4 | (uint32_t)h;
	}
	ps->p += 4;
	*out = v;
	return true;
}

static void
put_utf8(mj_buf *b, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	mj_buf_append(b, u, n);
}

/* Reads a string literal (the opening quote is at ps->p) into v. */
static mj_err
parse_string(parser *ps, mj_value *v)
{
	mj_buf b = {0};
	uint32_t cp, lo;
	mj_err err;

	ps->p++;
	for (;;) {
		const char *run = ps->p;
		while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' &&
		       (unsigned char)*ps->p >= 0x20)
			ps->p++;
		mj_buf_append(&b, run, (size_t)(ps->p - run));
		if (ps->p >= ps->end) {
			err = perr(ps, MJ_EINVAL, "unterminated string");
			goto done;
		}
		if (*ps->p == '"') {
			ps->p++;
			break;
		}
		if (*ps->p != '\\') {
			err = perr(ps, MJ_EINVAL, "control character in string");
			goto done;
		}
		if (++ps->p >= ps->end) {
			err = perr(ps, MJ_EINVAL, "unterminated escape");
			goto done;
		}
		switch (*ps->p++) {
		case '"':
			mj_buf_append(&b, "\"", 1);
			break;
		case '\\':
			mj_buf_append(&b, "\\", 1);
			break;
		case '/':
			mj_buf_append(&b, "/", 1);
			break;
		case 'b':
			mj_buf_append(&b, "\b", 1);
			break;
		case 'f':
			mj_buf_append(&b, "\f", 1);
			break;
		case 'n':
			mj_buf_append(&b, "\n", 1);
			break;
		case 'r':
			mj_buf_append(&b, "\r", 1);
			break;
		case 't':
			mj_buf_append(&b, "\t", 1);
			break;
		case 'u':
			if (!read_hex4(ps, &cp)) {
				err = perr(ps, MJ_EINVAL, "bad \\u escape");
				goto done;
			}
			/* A high surrogate followed by a low one is one code point; a lone
			 * surrogate is kept as its (WTF-8) bytes rather than rejected. */
			if (cp >= 0xd800 && cp < 0xdc00 && ps->end - ps->p >= 6 &&
			    ps->p[0] == '\\' && ps->p[1] == 'u') {
				const char *save = ps->p;
				ps->p += 2;
				if (read_hex4(ps, &lo) && lo >= 0xdc00 && lo < 0xe000)
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				else
					ps->p = save;
			}
			put_utf8(&b, cp);
			break;
		default:
			ps->p--;
			err = perr(ps, MJ_EINVAL, "bad escape");
			goto done;
		}
	}
	if (b.failed) {
		err = MJ_ENOMEM;
		goto done;
	}
	err = mj_value_string(v, b.len > 0 ? b.ptr : "", b.len);
done:
	mj_buf_free(&b);
	return err;
}

static mj_err
parse_number(parser *ps, mj_value *v)
{
	const char *s = ps->p;
	bool is_float = false;
	char tmp[64];
	size_t n;
	char *endp;

	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
		return perr(ps, MJ_EINVAL, "bad number");
	while (ps->p < ps->end &&
	       ((*ps->p >= '0' && *ps->p <= '9') || *ps->p == '.' || *ps->p == 'e' ||
	        *ps->p == 'E' || *ps->p == '+' || *ps->p == '-')) {
		if (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E')
			is_float = true;
		ps->p++;
	}
	n = (size_t)(ps->p - s);
	if (n >= sizeof(tmp))
		return perr(ps, MJ_EINVAL, "number too long");
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	errno = 0;
	if (!is_float) {
		long long i = strtoll(tmp, &endp, 10);
		if (*endp == '\0' && errno == 0) {
			mj_value_int(v, (int64_t)i);
			return MJ_OK;
		}
	}
	errno = 0;
	double d = strtod(tmp, &endp);
	if (*endp != '\0')
		return perr(ps, MJ_EINVAL, "bad number");
	mj_value_float(v, d);
	return MJ_OK;
}

static mj_err parse_value(parser *ps, mj_value *v, int depth);

/* Grows a value array by one slot; items stay nil until filled. */
static mj_err
grow(mj_value **items, size_t *cap, size_t len)
{
	mj_value *n;
	size_t ncap;

	if (len < *cap)
		return MJ_OK;
	ncap = *cap ? *cap * 2 : 4;
	if ((n = mj_realloc(*items, ncap * sizeof(*n))) == NULL)
		return MJ_ENOMEM;
	memset(n + *cap, 0, (ncap - *cap) * sizeof(*n));
	*items = n;
	*cap = ncap;
	return MJ_OK;
}

static mj_err
parse_array(parser *ps, mj_value *v, int depth)
{
	mj_value *items = NULL;
	size_t len = 0, cap = 0, i;
	mj_err err = MJ_OK;

	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return mj_value_array(v, 0);
	}
	for (;;) {
		if ((err = grow(&items, &cap, len)) != MJ_OK)
			goto fail;
		if ((err = parse_value(ps, &items[len], depth + 1)) != MJ_OK)
			goto fail;
		len++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			break;
		}
		err = perr(ps, MJ_EINVAL, "expected ',' or ']'");
		goto fail;
	}
	v->type = MJ_VARRAY;
	v->u.a.items = items;
	v->u.a.len = len;
	return MJ_OK;

fail:
	for (i = 0; i < len; i++)
		mj_value_free(&items[i]);
	mj_free(items);
	return err;
}

static mj_err
parse_object(parser *ps, mj_value *v, int depth)
{
	mj_value *keys = NULL, *vals = NULL;
	size_t len = 0, kcap = 0, vcap = 0, i;
	mj_err err = MJ_OK;

	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return mj_value_map(v, 0);
	}
	for (;;) {
		if ((err = grow(&keys, &kcap, len)) != MJ_OK ||
		    (err = grow(&vals, &vcap, len)) != MJ_OK)
			goto fail;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != '"') {
			err = perr(ps, MJ_EINVAL, "expected a string key");
			goto fail;
		}
		if ((err = parse_string(ps, &keys[len])) != MJ_OK)
			goto fail;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':') {
			mj_value_free(&keys[len]);
			err = perr(ps, MJ_EINVAL, "expected ':'");
			goto fail;
		}
		ps->p++;
		if ((err = parse_value(ps, &vals[len], depth + 1)) != MJ_OK) {
			mj_value_free(&keys[len]);
			goto fail;
		}
		len++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == '}') {
			ps->p++;
			break;
		}
		err = perr(ps, MJ_EINVAL, "expected ',' or '}'");
		goto fail;
	}
	v->type = MJ_VMAP;
	v->u.m.keys = keys;
	v->u.m.vals = vals;
	v->u.m.len = len;
	return MJ_OK;

fail:
	for (i = 0; i < len; i++) {
		mj_value_free(&keys[i]);
		mj_value_free(&vals[i]);
	}
	mj_free(keys);
	mj_free(vals);
	return err;
}

static mj_err
parse_value(parser *ps, mj_value *v, int depth)
{
	memset(v, 0, sizeof(*v));
	if (depth > MAX_DEPTH)
		return perr(ps, MJ_ELIMIT, "nested too deeply");
	skip_ws(ps);
	if (ps->p >= ps->end)
		return perr(ps, MJ_EINVAL, "unexpected end of input");
	switch (*ps->p) {
	case '{':
		return parse_object(ps, v, depth);
	case '[':
		return parse_array(ps, v, depth);
	case '"':
		return parse_string(ps, v);
	case 't':
		if (!literal(ps, "true"))
			break;
		mj_value_bool(v, true);
		return MJ_OK;
	case 'f':
		if (!literal(ps, "false"))
			break;
		mj_value_bool(v, false);
		return MJ_OK;
	case 'n':
		if (!literal(ps, "null"))
			break;
		mj_value_nil(v);
		return MJ_OK;
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return parse_number(ps, v);
		break;
	}
	return perr(ps, MJ_EINVAL, "unexpected character");
}

mj_err
mj__cli_json_parse(const char *s, size_t len, mj_value *out, char *why, size_t whylen)
{
	parser ps = {s, s + len, s, why, whylen};
	mj_err err;

	if (s == NULL || out == NULL)
		return MJ_EINVAL;
	if ((err = parse_value(&ps, out, 0)) != MJ_OK)
		return err;
	skip_ws(&ps);
	if (ps.p != ps.end) {
		mj_value_free(out);
		return perr(&ps, MJ_EINVAL, "trailing text");
	}
	return MJ_OK;
}
