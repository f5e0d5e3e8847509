/* Size parsing and JSON rendering of values for the programs' output. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mj/text.h"

mj_err
mj_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (s == NULL || out == NULL || *s < '0' || *s > '9')
		return MJ_EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return MJ_ELIMIT;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (*s != '\0')
		return MJ_EINVAL;
	*out = v;
	return MJ_OK;
}

mj_err
mj_parse_size(const char *s, size_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {{"", 0},     {"K", 10},   {"M", 20},  {"G", 30},
	             {"KiB", 10}, {"MiB", 20}, {"GiB", 30}};
	char digits[32];
	uint64_t v;
	size_t n, i;
	mj_err err;

	if (s == NULL || out == NULL)
		return MJ_EINVAL;
	for (n = 0; s[n] >= '0' && s[n] <= '9'; n++)
		;
	if (n == 0 || n >= sizeof(digits))
		return n == 0 ? MJ_EINVAL : MJ_ELIMIT;
	memcpy(digits, s, n);
	digits[n] = '\0';
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(s + n, units[i].suffix) == 0)
			break;
	if (i == sizeof(units) / sizeof(units[0]))
		return MJ_EINVAL;
	if ((err = mj_parse_u64(digits, &v)) != MJ_OK)
		return err;
	if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
		return MJ_ELIMIT;
	v <<= units[i].shift;
	if (v > SIZE_MAX)
		return MJ_ELIMIT;
	*out = (size_t)v;
	return MJ_OK;
}

void
mj_buf_append(mj_buf *b, const void *s, size_t len)
{
	size_t cap;
	char *p;

	if (b->failed)
		return;
	if (b->len + len + 1 > b->cap) {
		cap = b->cap ? b->cap : 64;
		while (cap < b->len + len + 1)
			cap *= 2;
		if ((p = mj_realloc(b->ptr, cap)) == NULL) {
			b->failed = 1;
			return;
		}
		b->ptr = p;
		b->cap = cap;
	}
	memcpy(b->ptr + b->len, s, len);
	b->len += len;
	b->ptr[b->len] = '\0';
}

void
mj_buf_printf(mj_buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = 1;
		return;
	}
	if ((size_t)n < sizeof(tmp)) {
		mj_buf_append(b, tmp, (size_t)n);
		return;
	}
	{
		char *big = mj_malloc((size_t)n + 1);
		if (big == NULL) {
			b->failed = 1;
			return;
		}
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		mj_buf_append(b, big, (size_t)n);
		mj_free(big);
	}
}

void
mj_buf_free(mj_buf *b)
{
	mj_free(b->ptr);
	memset(b, 0, sizeof(*b));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is not valid. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len, i;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

void
mj_buf_json_string(mj_buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run, n;

	mj_buf_append(b, "\"", 1);
	while (i < len) {
		for (run = i; run < len && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
		              p[run] != '\\';
		     run++)
			;
		mj_buf_append(b, s + i, run - i);
		if ((i = run) >= len)
			break;
		switch (p[i]) {
		case '"':
			mj_buf_append(b, "\\\"", 2);
			break;
		case '\\':
			mj_buf_append(b, "\\\\", 2);
			break;
		case '\n':
			mj_buf_append(b, "\\n", 2);
			break;
		case '\t':
			mj_buf_append(b, "\\t", 2);
			break;
		case '\r':
			mj_buf_append(b, "\\r", 2);
			break;
		default:
			if (p[i] >= 0x80 && (n = utf8_seq(p + i, len - i)) > 0) {
				mj_buf_append(b, s + i, n);
				i += n;
				continue;
			}
			mj_buf_printf(b, "\\u%04x", p[i]);
			break;
		}
		i++;
	}
	mj_buf_append(b, "\"", 1);
}

static void
json_number(mj_buf *b, const mj_value *v)
{
	char tmp[40];

	if (v->type == MJ_VINT) {
		mj_buf_printf(b, "%lld", (long long)v->u.i);
		return;
	}
	if (!isfinite(v->u.f)) {
		mj_buf_append(b, "null", 4);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%.17g", v->u.f);
	/* Keep floats recognisable as floats: 1.0 stays 1.0, not 1. */
	if (strspn(tmp, "-0123456789") == strlen(tmp))
		strcat(tmp, ".0");
	mj_buf_append(b, tmp, strlen(tmp));
}

void
mj_buf_json_value(mj_buf *b, const mj_value *v)
{
	mj_buf key;
	size_t i;

	switch (v->type) {
	case MJ_VNIL:
		mj_buf_append(b, "null", 4);
		break;
	case MJ_VBOOL:
		mj_buf_append(b, v->u.b ? "true" : "false", v->u.b ? 4 : 5);
		break;
	case MJ_VINT:
	case MJ_VFLOAT:
		json_number(b, v);
		break;
	case MJ_VSTRING:
		mj_buf_json_string(b, v->u.s.ptr, v->u.s.len);
		break;
	case MJ_VOPAQUE:
		/* The type name may come off the wire: escape it like any string. */
		memset(&key, 0, sizeof(key));
		mj_buf_append(&key, "<", 1);
		mj_buf_append(&key, v->u.s.ptr, v->u.s.len);
		mj_buf_append(&key, ">", 1);
		if (key.failed)
			b->failed = 1;
		else
			mj_buf_json_string(b, key.ptr, key.len);
		mj_buf_free(&key);
		break;
	case MJ_VARRAY:
		mj_buf_append(b, "[", 1);
		for (i = 0; i < v->u.a.len; i++) {
			if (i > 0)
				mj_buf_append(b, ",", 1);
			mj_buf_json_value(b, &v->u.a.items[i]);
		}
		mj_buf_append(b, "]", 1);
		break;
	case MJ_VMAP:
		mj_buf_append(b, "{", 1);
		for (i = 0; i < v->u.m.len; i++) {
			if (i > 0)
				mj_buf_append(b, ",", 1);
			if (v->u.m.keys[i].type == MJ_VSTRING) {
				mj_buf_json_value(b, &v->u.m.keys[i]);
			} else {
				memset(&key, 0, sizeof(key));
				mj_buf_json_value(&key, &v->u.m.keys[i]);
				if (key.failed)
					b->failed = 1;
				else
					mj_buf_json_string(b, key.ptr, key.len);
				mj_buf_free(&key);
			}
			mj_buf_append(b, ":", 1);
			mj_buf_json_value(b, &v->u.m.vals[i]);
		}
		mj_buf_append(b, "}", 1);
		break;
	}
}

uint64_t
mj_fnv1a(uint64_t h, const char *s)
{
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}
