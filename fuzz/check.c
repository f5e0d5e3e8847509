/* Invariant checks shared by the fuzz targets: value equality, a JSON oracle, wire round trips. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mj/text.h"

void
fz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "fuzz: invariant broken at %s:%d: %s\n", file, line, what);
	abort();
}

int
fz_value_same(const mj_value *a, const mj_value *b)
{
	size_t i;

	if (a->type != b->type)
		return 0;
	switch (a->type) {
	case MJ_VNIL:
		return 1;
	case MJ_VBOOL:
		return a->u.b == b->u.b;
	case MJ_VINT:
		return a->u.i == b->u.i;
	case MJ_VFLOAT:
		return memcmp(&a->u.f, &b->u.f, sizeof(double)) == 0;
	case MJ_VSTRING:
	case MJ_VOPAQUE:
		return a->u.s.len == b->u.s.len &&
		       memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0 &&
		       a->u.s.ptr[a->u.s.len] == '\0' && b->u.s.ptr[b->u.s.len] == '\0';
	case MJ_VARRAY:
		if (a->u.a.len != b->u.a.len)
			return 0;
		for (i = 0; i < a->u.a.len; i++)
			if (!fz_value_same(&a->u.a.items[i], &b->u.a.items[i]))
				return 0;
		return 1;
	case MJ_VMAP:
		if (a->u.m.len != b->u.m.len)
			return 0;
		for (i = 0; i < a->u.m.len; i++)
			if (!fz_value_same(&a->u.m.keys[i], &b->u.m.keys[i]) ||
			    !fz_value_same(&a->u.m.vals[i], &b->u.m.vals[i]))
				return 0;
		return 1;
	}
	return 0;
}

/* The oracle below is written from the header's contract (mj/text.h), not from text.c, so a
 * shared mistake is unlikely. */

typedef struct jparse {
	const unsigned char *p;
	const unsigned char *end;
} jparse;

/* Length of the valid UTF-8 sequence (RFC 3629) at s, at most n bytes, or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0], lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		lo = c == 0xe0 ? 0xa0 : lo;
		hi = c == 0xed ? 0x9f : hi;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		lo = c == 0xf0 ? 0x90 : lo;
		hi = c == 0xf4 ? 0x8f : hi;
	} else {
		return 0;
	}
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < need; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return need;
}

static void
put_utf8(mj_buf *b, unsigned cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	mj_buf_append(b, u, n);
}

/* What a string of bytes must decode to: valid UTF-8 kept, any other byte as U+00XX. */
static void
expected_text(mj_buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	mj_buf_append(b, "", 0);
	while (i < len) {
		if ((n = utf8_len(p + i, len - i)) > 0) {
			mj_buf_append(b, p + i, n);
			i += n;
		} else {
			put_utf8(b, p[i++]);
		}
	}
}

static void
skip_ws(jparse *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool
literal(jparse *j, const char *s)
{
	size_t n = strlen(s);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, s, n) != 0)
		return false;
	j->p += n;
	return true;
}

static bool
hex4(jparse *j, unsigned *out)
{
	unsigned v = 0;
	int i;

	if (j->end - j->p < 4)
		return false;
	for (i = 0; i < 4; i++) {
		unsigned c = *j->p++;
		if (c >= '0' && c <= '9')
			v = v << 4 | (c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v = v << 4 | (c - 'A' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

/* Parses a JSON string literal (RFC 8259) and appends its decoded bytes to out. */
static const char *
parse_string(jparse *j, mj_buf *out)
{
	unsigned cp, lo;
	size_t n;

	mj_buf_append(out, "", 0);
	if (!literal(j, "\""))
		return "expected a string";
	for (;;) {
		if (j->p >= j->end)
			return "unterminated string";
		if (*j->p == '"') {
			j->p++;
			return NULL;
		}
		if (*j->p < 0x20)
			return "raw control character in a string";
		if (*j->p >= 0x80) {
			if ((n = utf8_len(j->p, (size_t)(j->end - j->p))) == 0)
				return "invalid UTF-8 in the JSON text";
			mj_buf_append(out, j->p, n);
			j->p += n;
			continue;
		}
		if (*j->p != '\\') {
			mj_buf_append(out, j->p++, 1);
			continue;
		}
		if (++j->p >= j->end)
			return "unterminated escape";
		switch (*j->p++) {
		case '"':
			mj_buf_append(out, "\"", 1);
			break;
		case '\\':
			mj_buf_append(out, "\\", 1);
			break;
		case '/':
			mj_buf_append(out, "/", 1);
			break;
		case 'b':
			mj_buf_append(out, "\b", 1);
			break;
		case 'f':
			mj_buf_append(out, "\f", 1);
			break;
		case 'n':
			mj_buf_append(out, "\n", 1);
			break;
		case 'r':
			mj_buf_append(out, "\r", 1);
			break;
		case 't':
			mj_buf_append(out, "\t", 1);
			break;
		case 'u':
			if (!hex4(j, &cp))
				return "bad \\u escape";
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return "lone low surrogate";
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (!literal(j, "\\u") || !hex4(j, &lo) || lo < 0xdc00 ||
				    lo > 0xdfff)
					return "lone high surrogate";
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			put_utf8(out, cp);
			break;
		default:
			return "unknown escape";
		}
	}
}

/* Parses a JSON number; *start and *len give its text. */
static const char *
parse_number(jparse *j, const char **start, size_t *len)
{
	const unsigned char *s = j->p;

	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p >= j->end || *j->p < '0' || *j->p > '9')
		return "expected a number";
	if (*j->p == '0')
		j->p++;
	else
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return "no digits after a decimal point";
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return "no digits in an exponent";
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	*start = (const char *)s;
	*len = (size_t)(j->p - s);
	return NULL;
}

/* Parses a string and checks that it decodes to the expected rendering of len bytes at s. */
static const char *
match_text(jparse *j, const char *s, size_t len)
{
	mj_buf got = {0}, want = {0};
	const char *why;

	if ((why = parse_string(j, &got)) == NULL) {
		expected_text(&want, s, len);
		if (!got.failed && !want.failed &&
		    (got.len != want.len || memcmp(got.ptr, want.ptr, got.len) != 0))
			why = "a string does not decode to its value's bytes";
	}
	mj_buf_free(&got);
	mj_buf_free(&want);
	return why;
}

static const char *match_value(jparse *j, const mj_value *v);

static const char *
match_key(jparse *j, const mj_value *k)
{
	const char *why;
	mj_buf text = {0};

	if (k->type == MJ_VSTRING)
		return match_text(j, k->u.s.ptr, k->u.s.len);
	/* Other keys are their JSON text, in quotes. */
	mj_buf_json_value(&text, k);
	why = text.failed ? NULL : match_text(j, text.ptr, text.len);
	mj_buf_free(&text);
	return why;
}

static const char *
match_number(jparse *j, const mj_value *v)
{
	char want[32], tmp[64];
	const char *s, *why;
	double d;
	size_t n;

	if ((why = parse_number(j, &s, &n)) != NULL)
		return why;
	if (v->type == MJ_VINT) {
		snprintf(want, sizeof(want), "%lld", (long long)v->u.i);
		return strlen(want) == n && memcmp(want, s, n) == 0
		           ? NULL
		           : "an integer is not its digits";
	}
	if (memchr(s, '.', n) == NULL && memchr(s, 'e', n) == NULL && memchr(s, 'E', n) == NULL)
		return "a float renders like an integer";
	if (n >= sizeof(tmp))
		return "a float renders too long";
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	d = strtod(tmp, NULL);
	return memcmp(&d, &v->u.f, sizeof(d)) == 0 ? NULL : "a float does not read back the same";
}

static const char *
match_value(jparse *j, const mj_value *v)
{
	const char *why = NULL;
	mj_buf name = {0};
	size_t i;

	skip_ws(j);
	switch (v->type) {
	case MJ_VNIL:
		return literal(j, "null") ? NULL : "nil is not null";
	case MJ_VBOOL:
		return literal(j, v->u.b ? "true" : "false") ? NULL : "a boolean is wrong";
	case MJ_VINT:
		return match_number(j, v);
	case MJ_VFLOAT:
		if (!isfinite(v->u.f))
			return literal(j, "null") ? NULL : "NaN or an infinity is not null";
		return match_number(j, v);
	case MJ_VSTRING:
		return match_text(j, v->u.s.ptr, v->u.s.len);
	case MJ_VOPAQUE:
		mj_buf_append(&name, "<", 1);
		mj_buf_append(&name, v->u.s.ptr, strlen(v->u.s.ptr));
		mj_buf_append(&name, ">", 1);
		why = name.failed ? NULL : match_text(j, name.ptr, name.len);
		mj_buf_free(&name);
		return why;
	case MJ_VARRAY:
		if (!literal(j, "["))
			return "an array does not start with [";
		for (i = 0; i < v->u.a.len; i++) {
			skip_ws(j);
			if (i > 0 && !literal(j, ","))
				return "array items are not separated by commas";
			if ((why = match_value(j, &v->u.a.items[i])) != NULL)
				return why;
		}
		skip_ws(j);
		return literal(j, "]") ? NULL : "an array has extra items or no ]";
	case MJ_VMAP:
		if (!literal(j, "{"))
			return "a map does not start with {";
		for (i = 0; i < v->u.m.len; i++) {
			skip_ws(j);
			if (i > 0 && !literal(j, ","))
				return "map entries are not separated by commas";
			skip_ws(j);
			if ((why = match_key(j, &v->u.m.keys[i])) != NULL)
				return why;
			skip_ws(j);
			if (!literal(j, ":"))
				return "a map key is not followed by :";
			if ((why = match_value(j, &v->u.m.vals[i])) != NULL)
				return why;
		}
		skip_ws(j);
		return literal(j, "}") ? NULL : "a map has extra entries or no }";
	}
	return "unknown value type";
}

const char *
fz_json_mismatch(const char *json, size_t len, const mj_value *v)
{
	jparse j;
	const char *why;

	if (json == NULL)
		return "no JSON text";
	j.p = (const unsigned char *)json;
	j.end = j.p + len;
	if ((why = match_value(&j, v)) != NULL)
		return why;
	skip_ws(&j);
	return j.p == j.end ? NULL : "bytes after the value";
}

/* Caps for decoding what mj_proto_from_value built: any depth mj_value allows (a value
 * level costs up to three message levels) and any count. */
static void
roundtrip_caps(mj_proto_caps *caps)
{
	mj_proto_caps_default(caps);
	caps->max_depth = 3 * 202;
	caps->max_messages = (size_t)-1;
}

void
fz_check_value(const mj_value *v)
{
	ProtobufCMessage *m = NULL;
	mj_proto_caps caps;
	mj_value copy, back;
	mj_pvalue *pv = NULL;
	mj_buf json = {0};
	char why[256] = "";
	const char *bad;
	uint8_t *buf;
	size_t len;
	mj_err err;

	mj_buf_json_value(&json, v);
	if (!json.failed && (bad = fz_json_mismatch(json.ptr, json.len, v)) != NULL) {
		fprintf(stderr, "fuzz: JSON rendering: %s in:\n%.*s\n", bad,
		        (int)(json.len > 4096 ? 4096 : json.len), json.ptr);
		fz_fail(__FILE__, __LINE__, "mj_buf_json_value renders the value as documented");
	}
	mj_buf_free(&json);

	memset(&copy, 0, sizeof(copy));
	if (mj_value_copy(&copy, v) == MJ_OK) {
		FZ_CHECK(fz_value_same(&copy, v));
		mj_value_free(&copy);
	}

	FZ_CHECK(mj_proto_from_value(v, &pv) == MJ_OK);
	FZ_CHECK(mj_proto_pack(&pv->base, &buf, &len) == MJ_OK);
	mj_proto_pvalue_free(pv);
	roundtrip_caps(&caps);
	err = mj_proto_unpack(&moonjail__v1__value__descriptor, buf, len, &caps, &m, why,
	                      sizeof(why));
	mj_free(buf);
	if (err != MJ_OK) {
		fprintf(stderr, "fuzz: a packed value does not decode: %s: %s\n", mj_err_str(err),
		        why);
		fz_fail(__FILE__, __LINE__, "mj_proto_from_value output decodes");
	}
	memset(&back, 0, sizeof(back));
	err = mj_proto_to_value((const mj_pvalue *)m, &back, why, sizeof(why));
	mj_proto_free(m);
	if (err != MJ_OK) {
		fprintf(stderr, "fuzz: a decoded value does not convert: %s: %s\n", mj_err_str(err),
		        why);
		fz_fail(__FILE__, __LINE__, "a value survives the wire round trip");
	}
	FZ_CHECK(fz_value_same(v, &back));
	mj_value_free(&back);
}

void
fz_check_pvalue(const mj_pvalue *pv)
{
	char why[256] = "";
	mj_value v;
	mj_err err;

	memset(&v, 0, sizeof(v));
	err = mj_proto_to_value(pv, &v, why, sizeof(why));
	if (err != MJ_OK) {
		FZ_CHECK(err == MJ_EINVAL || err == MJ_ELIMIT || err == MJ_ENOMEM);
		FZ_CHECK(err == MJ_ENOMEM || why[0] != '\0');
		FZ_CHECK(v.type == MJ_VNIL);
		return;
	}
	fz_check_value(&v);
	mj_value_free(&v);
}

void
fz_check_repack(const ProtobufCMessage *msg, const mj_proto_caps *caps)
{
	ProtobufCMessage *m = NULL;
	uint8_t *b1, *b2;
	size_t n1, n2;
	char why[256] = "";
	mj_err err;

	FZ_CHECK(mj_proto_pack(msg, &b1, &n1) == MJ_OK);
	err = mj_proto_unpack(msg->descriptor, b1, n1, caps, &m, why, sizeof(why));
	if (err != MJ_OK) {
		fprintf(stderr, "fuzz: %s re-packed into %zu bytes does not decode: %s: %s\n",
		        msg->descriptor->name, n1, mj_err_str(err), why);
		fz_fail(__FILE__, __LINE__, "a decoded message re-packs into a decodable one");
	}
	FZ_CHECK(mj_proto_pack(m, &b2, &n2) == MJ_OK);
	FZ_CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
	mj_proto_free(m);
	mj_free(b1);
	mj_free(b2);
}
