/* Internal interfaces of moonjail-worker: engine table, jobs, operations. */
#ifndef MJ_WORKER_H
#define MJ_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mj/engine.h"
#include "mj/frame.h"
#include "mj/policy.h"
#include "mj/proto.h"

/* Names (tenant, engine) are 1-128 bytes of [A-Za-z0-9._-]. */
#define WK_NAME_MAX 128
/* The largest WorkerRequest accepted: a client request at moonjaild's limit (16 MiB + 64 KiB)
 * plus room for the envelope. A bigger frame is discarded unread and refused. */
#define WK_RECV_MAX ((size_t)(16u << 20) + (128u << 10))
/* The largest Response sent; a bigger one is replaced by an output error. */
#define WK_SEND_MAX ((size_t)16u << 20)
/* Payload bytes of requests read but not yet running before the executors stop reading. */
#define WK_QUEUE_BYTES ((size_t)64 << 20)
/* Replies of short jobs run back to back are written together, up to this many bytes at once,
 * so a burst of calls costs one write and one wake-up of moonjaild rather than one each. */
#define WK_OUT_BYTES ((size_t)16 << 10)
#define WK_SLOT_BUCKETS 4096
#define WK_TENANT_BUCKETS 1024

typedef struct wk_tenant wk_tenant;
typedef struct wk_slot wk_slot;
typedef struct wk_job wk_job;
typedef struct wk_worker wk_worker;

/* A tenant with at least one slot; its figures drive the quotas. */
struct wk_tenant {
	char name[WK_NAME_MAX + 1];
	uint32_t engines; /* alive engines, including ones being created */
	size_t memory;    /* sum of its engines' last known heap */
	uint32_t slots;   /* slots pointing here; the record goes with the last one */
	wk_tenant *next;
};

/* One (tenant, engine name): the engine when it is alive, and the requests waiting for it. A slot
 * exists while it has an engine, a queued request or a running one. */
struct wk_slot {
	wk_tenant *tenant;
	char name[WK_NAME_MAX + 1];
	mj_engine *engine; /* touched only by the executor that runs the slot */
	mj_limits limits;  /* the engine's limits, for stats */
	bool alive;        /* counted in tenant->engines and in the LRU list */
	size_t memory;     /* last known heap, counted in tenant->memory and w->memory */
	bool running;      /* an executor owns the slot */
	bool ready;        /* in the ready queue */
	wk_job *head, *tail;
	wk_slot *hnext;
	wk_slot *lru_prev, *lru_next;
	wk_slot *ready_next;
};

/* One request from receipt to reply: decoded by the executor reading the stream, queued on
 * its slot, run by an executor. */
struct wk_job {
	uint64_t tag; /* the frame's tag, repeated in the reply */
	size_t size;  /* the frame's payload bytes, counted in queued_bytes while it waits */
	Moonjail__Internal__V1__WorkerRequest *wreq;
	mj_request *req;
	mj_limits defaults;      /* the tenant's defaults, already clamped */
	mj_tenant_policy policy; /* ceilings and quotas */
	wk_job *next;            /* in the slot's queue */
};

struct wk_worker {
	unsigned id;
	unsigned nexec;
	size_t budget;
	int fd;                    /* the stream to moonjaild */
	mj_frame_reader in;        /* used by the executor holding the reader role */
	pthread_mutex_t wmu;       /* one reply written at a time; guards out and outlen */
	uint8_t out[WK_OUT_BYTES]; /* replies held back to be written together */
	size_t outlen;
	_Atomic uint64_t out_since; /* when the oldest held-back reply was held; 0 for none */
	bool go;                    /* confined: the executors may start reading */
	bool reading;               /* an executor holds the reader role */
	bool eof;                   /* the stream ended during a shutdown */
	unsigned waiting;           /* executors waiting for work */
	uint64_t stalled_since;     /* since when work waits for a busy executor; 0 for not */
	uint64_t last_job_ns;       /* when a job last started with work left waiting */
	pthread_t guard_thread;
	bool have_guard;
	bool guard_active;       /* the guard ticks */
	pthread_cond_t guard_cv; /* CLOCK_MONOTONIC */
	pthread_t *threads;
	unsigned nthreads;
	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* executors wait here for ready slots */
	pthread_cond_t idle_cv; /* start-up and shutdown wait here */
	bool stopping;          /* SIGTERM: queued requests are refused, running ones finish */
	bool quit;              /* executors leave */
	unsigned busy;          /* jobs queued or running */
	size_t queued_bytes;    /* payload bytes of jobs queued and not yet running */
	unsigned started;       /* executors that have entered their loop */
	wk_slot *ready_head, *ready_tail;
	wk_slot **slots;
	wk_tenant **tenants;
	wk_slot *lru_head, *lru_tail;
	size_t memory;   /* heap of every alive engine */
	size_t nengines; /* alive engines */
};

#ifdef MJ_TEST_HOOKS
/* Test builds only: installs test_syscall(name), which attempts one forbidden syscall. */
void wk_test_hooks_install(mj_engine *e);
/* The tag of the call this executor thread runs, for hooks that forge its reply. */
extern _Thread_local uint64_t wk_test_tag;
/* Set by the trickle_reply hook: this thread's next reply goes out one byte at a time, through
 * wk_test_write_trickled (0, or -1 with errno). */
extern _Thread_local bool wk_test_trickle;
int wk_test_write_trickled(int fd, const struct iovec *iov, int n);
#endif

/* Writes one log line "moonjail-worker[id]: " + text to stderr with a single write. */
void wk_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wk_log_set_id(unsigned id);

/* ---- table.c: every function here runs with w->mu held ---- */

/* Allocates the hash tables. MJ_ENOMEM on failure. */
mj_err wk_table_init(wk_worker *w);
/* Frees every slot, engine and tenant record, then the tables. */
void wk_table_fini(wk_worker *w);
/* The slot of (tenant, name), created empty when missing; NULL when out of memory. */
wk_slot *wk_table_get(wk_worker *w, const char *tenant, const char *name);
/* Frees s if it holds no engine and no request and is not running. */
void wk_table_release(wk_worker *w, wk_slot *s);
/* Counts a new engine for s against the tenant's quotas. MJ_ELIMIT with a message in why when a
 * quota is full; on MJ_OK the slot is alive and the caller must create the engine or call
 * wk_table_drop. */
mj_err wk_table_reserve(wk_worker *w, wk_slot *s, const mj_tenant_policy *p, char *why,
                        size_t whylen);
/* MJ_ELIMIT with a message when the tenant's engines together hold more than its quota. */
mj_err wk_table_check_memory(wk_worker *w, const wk_slot *s, const mj_tenant_policy *p, char *why,
                             size_t whylen);
/* Records the engine's heap and marks it most recently used. */
void wk_table_update(wk_worker *w, wk_slot *s, size_t memory);
/* Marks s as holding no engine (the caller frees it). */
void wk_table_drop(wk_worker *w, wk_slot *s);
/* Detaches idle engines, least recently used first, until the worker's heap fits the budget.
 * Returns them linked by ready_next; the caller frees them with wk_table_free_evicted outside
 * the lock. */
wk_slot *wk_table_evict(wk_worker *w);
/* Frees the engines and slots returned by wk_table_evict, logging each. No lock needed. */
void wk_table_free_evicted(wk_slot *list);

/* ---- ops.c ---- */

/* Runs job j on slot s, which the calling executor owns, and returns the packed Response in
 * *out (mj_malloc'd; the caller frees it). Takes w->mu only for table updates. */
void wk_ops_execute(wk_worker *w, wk_slot *s, wk_job *j, uint8_t **out, size_t *outlen);
/* The request's engine name; "default" when it has none. */
const char *wk_ops_engine_name(const mj_request *req);
/* A packed error Response for request id (0 when unknown); NULL only when out of memory. */
void wk_ops_error(uint64_t id, mj_kind kind, const char *msg, uint8_t **out, size_t *outlen);
/* A packed OK Response with no content (ping). */
void wk_ops_ok(uint64_t id, uint8_t **out, size_t *outlen);
/* Checks the envelope of req; returns false with a reason in why when it is a bad request. */
bool wk_ops_validate(const mj_request *req, char *why, size_t whylen);
/* Converts the wire policy: defaults clamped to the ceilings, ceilings and quotas. Absent
 * ceilings are the defaults; absent quotas follow mj_policy_default. */
bool wk_ops_policy(const Moonjail__Internal__V1__TenantPolicy *tp, mj_limits *defaults,
                   mj_tenant_policy *p, char *why, size_t whylen);

/* ---- serve.c ---- */

/* Starts the executors on w->fd; nothing is read yet. */
mj_err wk_serve_init(wk_worker *w);
/* Lets the executors take requests (after confinement). */
void wk_serve_start(wk_worker *w);
/* Refuses new work, waits up to wait_ms for queued and running requests to be answered, then
 * stops the executors. Returns false when the wait ran out (threads may still
 * run Lua). */
bool wk_serve_stop(wk_worker *w, unsigned wait_ms);
/* Frees what wk_serve_init made. Only after a successful wk_serve_stop. */
void wk_serve_fini(wk_worker *w);

#endif
