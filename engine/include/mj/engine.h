/* The moonjail engine: one sandboxed, limit-enforcing Lua 5.4 state reused across calls. */
#ifndef MJ_ENGINE_H
#define MJ_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mj/common.h"
#include "mj/limits.h"
#include "mj/value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mj_engine mj_engine;

typedef struct mj_engine_config {
	mj_limits limits;
	const char *const *modules; /* names installable with require(), for example "json" */
	size_t nmodules;
} mj_engine_config;

/* Fills cfg with default limits and no modules. */
void mj_engine_config_default(mj_engine_config *cfg);

/* The names of every module an engine can install, NULL-terminated. */
const char *const *mj_engine_known_modules(void);

/* Creates an engine. Returns MJ_EINVAL for bad limits or an unknown module name, MJ_ENOMEM when
 * the host or the Lua heap (within limits.memory) runs out. *out is written only on success. */
mj_err mj_engine_new(mj_engine **out, const mj_engine_config *cfg);

/* Frees the engine and everything it owns. NULL is ignored. */
void mj_engine_free(mj_engine *e);

/* Replaces the Lua state with a fresh one built from the same config, host functions and
 * namespaces. On failure the engine is unusable until a later reset succeeds. */
mj_err mj_engine_reset(mj_engine *e);

/* The last failure detail of a management call (new state, namespace, function); borrowed,
 * valid until the next call on e, never NULL. */
const char *mj_engine_errmsg(const mj_engine *e);

/* Statistics of one call. Limits are repeated so a report is self-contained. */
typedef struct mj_stats {
	uint64_t instructions;      /* counted in steps of MJ_INSTRUCTION_STEP, see docs */
	uint64_t instruction_limit; /* 0 = unlimited */
	size_t memory_current;      /* Lua heap after the call */
	size_t memory_peak;         /* highest Lua heap during the call */
	size_t memory_limit;
	uint64_t wall_us;
	uint32_t timeout_ms;
	size_t output_bytes;
	size_t output_limit;
} mj_stats;

/* Granularity of instruction counting. Limits are exact; reported counts are whole steps. */
#define MJ_INSTRUCTION_STEP 1000

/* The outcome of one eval or run. The result owns every pointer in it; mj_result_free frees them.
 */
typedef struct mj_result {
	mj_kind kind;     /* MJ_KIND_NONE on success */
	char *message;    /* error message, NULL on success */
	uint32_t line;    /* line of the error, 0 when there is none */
	char *traceback;  /* Lua traceback of a runtime error, NULL when there is none */
	mj_value *values; /* eval: every value the chunk returned; run: none */
	size_t nvalues;
	char *output; /* captured print output; NUL-terminated, may contain NUL */
	size_t output_len;
	bool output_truncated;
	bool engine_reset; /* a limit killed the call and the engine was reset: globals are gone */
	mj_stats stats;
} mj_result;

/* Runs source text (never bytecode) as a chunk named chunkname (NULL: "script") and collects
 * every returned value. Script failures are reported in *res with MJ_OK returned; the function
 * itself fails only with MJ_EINVAL (bad arguments), MJ_ESTATE (called from inside a call, or the
 * engine is unusable) or MJ_ENOMEM (host memory). On MJ_OK the caller owns *res. */
mj_err mj_engine_eval(mj_engine *e, const char *src, size_t len, const char *chunkname,
                      mj_result *res);

/* Like mj_engine_eval but discards returned values (no conversion, no result limits). */
mj_err mj_engine_run(mj_engine *e, const char *src, size_t len, const char *chunkname,
                     mj_result *res);

/* Frees what res owns and zeroes it. */
void mj_result_free(mj_result *res);

/* Heap currently used by the engine's Lua state, in bytes. */
size_t mj_engine_memory(const mj_engine *e);

/* A host function callable from scripts. args are the converted call arguments (borrowed);
 * on success the function sets *ret (the engine takes ownership; left nil it returns nil) and
 * returns MJ_OK. On failure it writes a message into err (errlen bytes) and returns non-zero:
 * the script sees a catchable runtime error with that message. */
typedef mj_err (*mj_host_fn)(void *ud, const mj_value *args, size_t nargs, mj_value *ret, char *err,
                             size_t errlen);

/* Makes fn callable as the global `name` (an identifier) in this engine, now and after every
 * reset. Replaces an earlier function of the same name. ud is borrowed and must outlive e. */
mj_err mj_engine_register_function(mj_engine *e, const char *name, mj_host_fn fn, void *ud);

/* Installs a read-only global table `name` holding a copy of tree (a map or array). Missing keys
 * read as nil, pairs and # work, writes raise an error. It survives resets. The copy counts
 * against the engine's memory limit: MJ_ELIMIT when it does not fit, MJ_EINVAL for a bad name
 * or a tree that is not a map or array. */
mj_err mj_engine_set_namespace(mj_engine *e, const char *name, const mj_value *tree);

/* Removes namespace `name`; MJ_ENOENT if there is none. */
mj_err mj_engine_unset_namespace(mj_engine *e, const char *name);

/* Starts the process-wide watchdog thread that enforces wall-clock limits inside long C calls.
 * Engines start it on first use; a process that must not create threads later (for example
 * before loading a seccomp filter) calls it early. Returns MJ_ENOMEM if the thread cannot start. */
mj_err mj_engine_global_init(void);

#ifdef __cplusplus
}
#endif

#endif
