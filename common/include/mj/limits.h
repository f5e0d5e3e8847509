/* Per-engine limits, shared by every process: defaults, validation and tenant maximums. */
#ifndef MJ_LIMITS_H
#define MJ_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "mj/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-engine limits. A zero instruction or timeout limit means "unlimited"; every other
 * limit must be non-zero. */
typedef struct mj_limits {
	size_t memory;         /* bytes the Lua heap may hold (hard cap in the allocator) */
	uint64_t instructions; /* VM instructions per call, across every coroutine */
	uint32_t timeout_ms;   /* wall clock per call */
	size_t output;         /* bytes of print output per call */
	size_t source;         /* bytes of source text per call and per load() */
	size_t result_bytes;   /* bytes of strings in results (and in host-function arguments) */
	uint32_t result_depth; /* nesting depth of returned tables */
	size_t result_items;   /* total number of values returned, counting nested ones */
} mj_limits;

/* Fills l with the embedded defaults (16 MiB memory, 100M instructions, 1000 ms, 1 MiB output
 * and source, 1 MiB / depth 32 / 100000 items of results). */
void mj_limits_default(mj_limits *l);

/* Checks that l is usable; returns MJ_EINVAL and a static reason in *why otherwise. */
mj_err mj_limits_check(const mj_limits *l, const char **why);

#ifdef __cplusplus
}
#endif

#endif
