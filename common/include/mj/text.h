/* Text helpers shared by the programs: size parsing and JSON rendering of values. */
#ifndef MJ_TEXT_H
#define MJ_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "mj/common.h"
#include "mj/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parses a byte size: plain digits, or digits followed by K, M, G (powers of 1024, as are KiB,
 * MiB, GiB). Returns MJ_EINVAL for anything else, MJ_ELIMIT on overflow; *out only on success. */
mj_err mj_parse_size(const char *s, size_t *out);

/* Parses a non-negative decimal integer that fits in uint64_t, with nothing after it. */
mj_err mj_parse_u64(const char *s, uint64_t *out);

/* FNV-1a (64-bit) of the bytes of s, continuing from h: start from MJ_FNV1A_INIT, and chain
 * calls to hash several strings. moonjaild routes a tenant to worker mj_fnv1a(INIT, tenant) %
 * workers, so changing it moves tenants between workers. */
#define MJ_FNV1A_INIT 14695981039346656037ull
uint64_t mj_fnv1a(uint64_t h, const char *s);

/* A growable text buffer. */
typedef struct mj_buf {
	char *ptr;
	size_t len;
	size_t cap;
	int failed; /* an allocation failed; the content is incomplete */
} mj_buf;

void mj_buf_append(mj_buf *b, const void *s, size_t len);
void mj_buf_printf(mj_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mj_buf_free(mj_buf *b);

/* Appends v as JSON. Strings are bytes: valid UTF-8 is kept, other bytes become \u00XX; map keys
 * that are not strings are written as their JSON text in quotes; opaque values become
 * "<type>"; NaN and infinities become null. */
void mj_buf_json_value(mj_buf *b, const mj_value *v);
/* Appends len bytes of s as a JSON string literal. */
void mj_buf_json_string(mj_buf *b, const char *s, size_t len);

#ifdef __cplusplus
}
#endif

#endif
