/* Shared error codes, error kinds and the replaceable allocator used by every moonjail library. */
#ifndef MJ_COMMON_H
#define MJ_COMMON_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result of every fallible library function; 0 means success. */
typedef enum mj_err {
	MJ_OK = 0,
	MJ_EINVAL,    /* a bad argument or malformed input */
	MJ_ENOMEM,    /* the host ran out of memory */
	MJ_ELIMIT,    /* a configured limit (size, depth, count) was exceeded */
	MJ_ENOENT,    /* no such object */
	MJ_ESTATE,    /* the object cannot do this now (for example a re-entrant call) */
	MJ_EINTERNAL, /* a broken invariant inside a library */
	MJ_ESYSTEM,   /* the operating system refused a call (see the detail text) */
} mj_err;

/* A short constant description of err; never NULL. */
const char *mj_err_str(mj_err err);

/* What went wrong in a script call, as reported to clients. MJ_KIND_NONE means success. */
typedef enum mj_kind {
	MJ_KIND_NONE = 0,
	MJ_KIND_SYNTAX,
	MJ_KIND_RUNTIME,
	MJ_KIND_MEMORY,
	MJ_KIND_INSTRUCTIONS,
	MJ_KIND_TIMEOUT,
	MJ_KIND_OUTPUT,
	MJ_KIND_ENGINE_LOST,
	MJ_KIND_QUOTA,
	MJ_KIND_BAD_REQUEST,
	MJ_KIND_INTERNAL,
} mj_kind;

/* The wire name of a kind ("syntax", "engine-lost", ...); "ok" for MJ_KIND_NONE. Never NULL. */
const char *mj_kind_name(mj_kind kind);

/* Parses a wire name back into a kind; returns MJ_EINVAL for an unknown name. */
mj_err mj_kind_parse(const char *name, mj_kind *out);

/* The allocator every moonjail library uses for host memory (not Lua heaps, which sit on top of
 * it). The functions follow malloc/realloc/free semantics. */
typedef struct mj_allocator {
	void *(*malloc_fn)(void *ud, size_t size);
	void *(*realloc_fn)(void *ud, void *ptr, size_t size);
	void (*free_fn)(void *ud, void *ptr);
	void *ud;
} mj_allocator;

/* Replaces the process-wide allocator; NULL restores the C library's. Call it only while no
 * moonjail object is alive: memory must be freed by the allocator that gave it. Used by tests. */
void mj_set_allocator(const mj_allocator *a);

void *mj_malloc(size_t size);
void *mj_calloc(size_t n, size_t size);
void *mj_realloc(void *ptr, size_t size);
void mj_free(void *ptr);
/* A NUL-terminated copy of len bytes of s, or NULL when out of memory. */
char *mj_strndup(const char *s, size_t len);

#ifdef __cplusplus
}
#endif

#endif
