/* libmoonjail: the C client of the moonjail service (protobuf over nng REQ/REP, unary calls). */
#ifndef MJ_CLIENT_H
#define MJ_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mj/common.h"
#include "mj/limits.h"
#include "mj/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Transport errors, returned in addition to mj_err's values (mj/common.h has no transport codes
 * yet). They are distinct from every mj_err value. */
#define MJ_CLIENT_ECONN ((mj_err)64)     /* no connection, refused, or dropped mid-call */
#define MJ_CLIENT_ETIMEDOUT ((mj_err)65) /* no answer within the send or receive timeout */

/* The address the CLI uses when neither --url nor MOONJAIL_URL is given. */
#define MJ_CLIENT_DEFAULT_URL "ipc:///run/moonjail/moonjail.sock"

typedef struct mj_client mj_client;

/* Connection options; zero fields take the defaults shown. */
typedef struct mj_client_options {
	uint32_t recv_timeout_ms; /* per call, waiting for the answer (30000) */
	uint32_t send_timeout_ms; /* per call, waiting for a connection to send on (30000) */
	size_t max_message;       /* largest response accepted, in bytes (16 MiB) */
	bool lazy_connect;        /* dial in the background instead of failing open() at once */
} mj_client_options;

/* Figures of one call, or of an engine for mj_client_stats (the wire Stats message). */
typedef struct mj_client_statistics {
	uint64_t instructions;
	uint64_t instruction_limit; /* 0: unlimited */
	uint64_t memory_current;
	uint64_t memory_peak;
	uint64_t memory_limit;
	uint64_t wall_us;
	uint32_t timeout_ms; /* 0: unlimited */
	uint64_t output_bytes;
	uint64_t output_limit;
	uint32_t engines; /* mj_client_stats: the tenant's engines in its worker */
} mj_client_statistics;

/* The service's answer to one call. A script failure is an answer too: kind says what went
 * wrong, and the call itself still returns MJ_OK. */
typedef struct mj_client_result {
	uint64_t id;      /* the request id the service echoed */
	mj_kind kind;     /* MJ_KIND_NONE on success */
	char *message;    /* error message; "" on success; never NULL */
	uint32_t line;    /* line of the error, 0 when there is none */
	char *traceback;  /* "" when there is none; never NULL */
	mj_value *values; /* eval's returned values */
	size_t n_values;
	char *output; /* captured print output: output_len bytes plus a NUL; never NULL */
	size_t output_len;
	bool output_truncated;
	bool has_stats; /* the response carried stats */
	mj_client_statistics stats;
	bool engine_created; /* this call created the engine: its state is fresh */
	bool engine_reset;   /* a limit killed the call and the engine was reset */
	bool quarantined;    /* the tenant runs on the quarantine pool for now */
} mj_client_result;

/* Limits sent with mj_client_create. Only the fields whose bit is set in `set` travel; the
 * others take the tenant's defaults. */
enum {
	MJ_CLIENT_LIMIT_MEMORY = 1u << 0,
	MJ_CLIENT_LIMIT_INSTRUCTIONS = 1u << 1,
	MJ_CLIENT_LIMIT_TIMEOUT = 1u << 2,
	MJ_CLIENT_LIMIT_OUTPUT = 1u << 3,
	MJ_CLIENT_LIMIT_SOURCE = 1u << 4,
	MJ_CLIENT_LIMIT_RESULT_BYTES = 1u << 5,
	MJ_CLIENT_LIMIT_RESULT_DEPTH = 1u << 6,
	MJ_CLIENT_LIMIT_RESULT_ITEMS = 1u << 7,
};

/* What mj_client_create asks for. The pointers are borrowed for the duration of the call. */
typedef struct mj_client_create_options {
	mj_limits limits;
	unsigned set;               /* MJ_CLIENT_LIMIT_* bits */
	const char *const *modules; /* module names, for example "json" */
	size_t n_modules;
	const char *prelude; /* Lua source run once at creation; may be NULL */
	size_t prelude_len;
} mj_client_create_options;

/* Connects to the service at url (ipc:// or tcp://); opts may be NULL. On success *out is the
 * caller's, to be released with mj_client_close. Returns MJ_EINVAL for a bad argument or URL,
 * MJ_CLIENT_ECONN when the service cannot be reached (unless opts->lazy_connect), MJ_ENOMEM. */
mj_err mj_client_open(mj_client **out, const char *url, const mj_client_options *opts);

/* Closes the connection and frees c. No call on c may be in progress. NULL is ignored. */
void mj_client_close(mj_client *c);

/* Every call below is safe to make from many threads at once on one client; each call has its
 * own request in flight. tenant is required; engine NULL means "default". On MJ_OK *out is the
 * caller's, to be released with mj_client_result_free. On failure *out is untouched and
 * mj_client_errmsg says why: MJ_EINVAL (bad argument, or a malformed or mismatched response),
 * MJ_ELIMIT (request too large to encode), MJ_CLIENT_ECONN, MJ_CLIENT_ETIMEDOUT, MJ_ENOMEM. */

/* Loads and runs len bytes of Lua source; the result carries every returned value. */
mj_err mj_client_eval(mj_client *c, const char *tenant, const char *engine, const char *src,
                      size_t len, mj_client_result **out);
/* Like mj_client_eval, but the service discards returned values. */
mj_err mj_client_run(mj_client *c, const char *tenant, const char *engine, const char *src,
                     size_t len, mj_client_result **out);
/* Replaces the engine's state with a fresh one (namespaces are kept). */
mj_err mj_client_reset(mj_client *c, const char *tenant, const char *engine,
                       mj_client_result **out);
/* Deletes the engine. */
mj_err mj_client_destroy(mj_client *c, const char *tenant, const char *engine,
                         mj_client_result **out);
/* Reports the engine's figures in (*out)->stats. */
mj_err mj_client_stats(mj_client *c, const char *tenant, const char *engine,
                       mj_client_result **out);
/* Creates the engine with explicit limits, modules and prelude (opts may be NULL). */
mj_err mj_client_create(mj_client *c, const char *tenant, const char *engine,
                        const mj_client_create_options *opts, mj_client_result **out);
/* Installs a read-only global table `name` holding value (a map or an array; borrowed). */
mj_err mj_client_set_namespace(mj_client *c, const char *tenant, const char *engine,
                               const char *name, const mj_value *value, mj_client_result **out);
mj_err mj_client_unset_namespace(mj_client *c, const char *tenant, const char *engine,
                                 const char *name, mj_client_result **out);
/* Checks that the service answers. tenant may be NULL (a placeholder tenant is sent). */
mj_err mj_client_ping(mj_client *c, const char *tenant, mj_client_result **out);

/* Frees a result and everything it owns. NULL is ignored. */
void mj_client_result_free(mj_client_result *r);

/* Why the calling thread's most recent failed call on c failed (or why mj_client_open failed,
 * with c NULL). Borrowed: valid until that thread's next client call. Never NULL. */
const char *mj_client_errmsg(const mj_client *c);

/* A short constant description of err, including the client's transport codes. Never NULL. */
const char *mj_client_err_str(mj_err err);

#ifdef __cplusplus
}
#endif

#endif
