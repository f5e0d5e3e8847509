/* Internal declarations of moonjaild, the supervisor process. */
#ifndef MJ_SUPERVISOR_H
#define MJ_SUPERVISOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <nng/nng.h>

#include "mj/clock.h"
#include "mj/frame.h"
#include "mj/limits.h"
#include "mj/policy.h"

#define SV_MAX_WORKERS 256
#define SV_MAX_CONNECTIONS 1000000 /* --max-connections */
#define SV_OVER_MAX 16             /* connections past the cap let in at once, to be answered */
#define SV_MAX_QUARANTINE 16
#define SV_MAX_LISTEN 16
#define SV_SPARE (-1)

typedef struct sv_call sv_call;

/* The largest message either side of moonjaild takes: a 16 MiB script or result plus room for
 * the envelope. */
#define SV_MAX_MESSAGE ((16u << 20) + (64u << 10))

/* A frame waiting for room on a worker's socket: the part from off on is still to write. */
/* One frame for a worker, in one allocation with its place in a link's output queue, so
 * queueing what the socket did not take cannot fail. */
typedef struct sv_out {
	struct sv_out *next;
	size_t len, off; /* bytes in buf, bytes already written */
	uint8_t buf[];   /* header and payload */
} sv_out;

/* A frame of room for len bytes (header included); NULL when out of memory. */
sv_out *sv_out_new(size_t len);

/* moonjaild's end of the socketpair to one worker process, made before the fork: nothing else
 * can reach the worker. pid, slot and eof are under sv.lock, the output under wmu
 * (taken after sv.lock, never before); only the link thread reads, closes and frees a link. */
typedef struct sv_link {
	int fd;
	pid_t pid;       /* the process at the other end */
	int slot;        /* the worker index it serves, SV_SPARE while it is the spare's */
	bool eof;        /* the stream ended or broke: the calls on pid have been answered */
	uint64_t eof_ns; /* when */
	bool killed;     /* the link thread has had its process killed */
	mj_frame_reader in;
	pthread_mutex_t wmu;
	struct sv_out *outq, *outq_tail; /* frames not yet written, oldest first */
	atomic_bool queued;   /* outq is not empty: read without wmu, which a write may hold */
	struct sv_link *next; /* on the retired list */
} sv_link;

/* A worker slot (index 0.. for the routed pools) or the spare (SV_SPARE): the process serving
 * it and its link. Fields are under sv.lock once workers run. */
typedef struct sv_worker {
	int index;
	sv_link *link; /* NULL while no process runs */
	pid_t pid;     /* 0 while no process runs */
	uint64_t started_ns;
	unsigned restarts;
	uint64_t spawn_err_ns; /* when a failed start was last logged */
	unsigned spawn_errs;   /* failed starts since then, not logged one by one */
	pid_t culprit_pid;     /* last process killed for one call's hard deadline: that call's
	                          tenant got the strike, the others in flight on it get none */
	sv_call *inflight, *inflight_tail; /* calls forwarded and not yet answered, oldest first */
	unsigned ninflight;
} sv_worker;

/* Which limits a config section or the command line set explicitly. */
enum {
	F_MEMORY = 1,
	F_INSTR = 2,
	F_TIMEOUT = 4,
	F_OUTPUT = 8,
	F_ENGINES = 16,
	F_TOTAL = 32,
	F_SOURCE = 64,
	F_RBYTES = 128,
	F_RDEPTH = 256,
	F_RITEMS = 512
};

/* The deepest result a tenant may be allowed. Each level of tables nests three messages
 * (Value, Map, Entry) on the wire, so N levels reach depth 3N + 1 below the Response, and one
 * deeper than 200 fails the protobuf caps of moonjaild and of clients
 * (mj_proto_caps_default): it would be taken for a malformed reply. 66 levels would still
 * fit; 64 keeps a margin. */
#define SV_MAX_RESULT_DEPTH 64
#define SV_STR(x) #x
#define SV_XSTR(x) SV_STR(x)

typedef struct sv_config {
	const char *listen[SV_MAX_LISTEN];
	int nlisten;
	int nworkers;
	int executors;
	size_t worker_memory;
	mj_limits defaults;
	const char *runtime_dir;
	const char *worker_bin;
	const char *config_file;
	bool log_json;
	bool insecure_tcp;
	int ncalls;
	int io_threads;      /* libnng's task threads */
	int max_connections; /* client connections at once; 0 until the start sets it */
	uint32_t deadline_margin_ms;
	unsigned flag_set; /* which default-limit flags were given (they win over the file) */
	const char *group; /* also admit this group to the client socket, or NULL */
	gid_t gid;
	const char *worker_user; /* the account workers drop to when moonjaild runs as root */
	bool namespaces;         /* start workers in new namespaces; cleared when refused */
	bool spare;              /* keep one started, confined worker ready to replace a dead one */
	int quarantine_workers;  /* the quarantine pool's size; 0 turns quarantine off */
	unsigned quarantine_strikes; /* worker deaths within the window that quarantine a tenant */
	uint32_t quarantine_window_ms;
	uint32_t quarantine_ms; /* how long a quarantine lasts */
} sv_config;

/* Process-wide supervisor state. */
typedef struct sv_state {
	sv_config cfg;
	pthread_mutex_t lock;
	sv_worker workers[SV_MAX_WORKERS + SV_MAX_QUARANTINE]; /* nworkers, then quarantine */
	int nslots;
	sv_worker spare;
	sv_link *retired;   /* links of reaped processes, for the link thread */
	int wake[2];        /* a byte on wake[1] makes the link thread look again */
	unsigned spawn_seq; /* each worker process's --id */
	nng_socket front;
	sv_call *calls;
	atomic_bool draining;
	atomic_uint busy; /* calls between receiving a request and sending its reply */
	char worker_dir[300];
	char chroot_dir[320]; /* an empty directory each worker makes its root */
	bool drop_user;       /* running as root: workers switch to worker_uid/gid */
	uid_t worker_uid;
	gid_t worker_gid;
} sv_state;

extern sv_state sv;

/* Logging: one line per event, text ("moonjaild: event=x k=v") or JSON. */
void sv_log(const char *event, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Starts the logger thread (after the capability drop: threads inherit capabilities); until
 * then lines are written in place. A full queue drops lines and reports how many. Returns -1
 * when the thread cannot start (lines are then written in place). */
int sv_log_start(void);
/* Queues one whole line, newline included, as it is (a relayed worker line). */
void sv_log_line(const char *line, size_t len);
/* Writes what is queued, waiting at most about a second per line for a stalled stderr, and
 * writes later lines in place. */
void sv_log_stop(void);

/* libnng's task threads (nng_threads.c): from begin to end, libnng sizes its pool for
 * threads (rounded up to an even number, as nng starts two per CPU). Call begin before the
 * first nng call, which initialises the library, and end after it. */
void sv_nng_threads_begin(int threads);
void sv_nng_threads_end(void);

/* Workers. */
int sv_workers_start(void);
void sv_worker_reap(pid_t pid, int status);
void sv_workers_respawn_due(void);
/* Kills worker index if pid is still its process (a call's worker_pid: a replacement that has
 * taken the slot meanwhile is left alone). */
void sv_worker_kill(int index, pid_t pid, const char *why);
/* The same for one call's hard deadline: tenant gets the strike, the other calls in flight on
 * it do not. */
void sv_worker_kill_for(int index, pid_t pid, const char *why, const char *tenant);
void sv_workers_stop(void);

/* Links (link.c): one thread moves every worker's frames and watches the hard deadlines. */
int sv_links_start(void);
/* Stops the thread: no call is answered after this. Idempotent. */
void sv_links_stop(void);
/* Stops the thread and closes its wake-up pipe, once nothing can wake it any more: after the
 * router and the workers have stopped. Idempotent. */
void sv_links_fini(void);
/* A link on our end fd of a new socketpair (taken, also on failure); NULL when out of memory.
 */
sv_link *sv_link_new(int fd, int slot);
/* Closes and frees l: only from the link thread, or once it has stopped. */
void sv_link_free(sv_link *l);
/* Writes one frame (from sv_out_new) to l, or what the socket takes of it now and queues the
 * rest; cannot fail. Takes ownership of frame. Called with l->wmu held. */
void sv_link_send(sv_link *l, sv_out *frame);
/* Makes the link thread look at the links again (one was added, moved or retired). */
void sv_links_wake(void);

/* Client listeners (listen.c), on sv.front: opens every --listen URL and starts the watch
 * that restarts a listener nng has stopped serving; 0 or an nng error. */
int sv_listeners_start(void);
/* Whether a request that came on pipe p is to be refused: its connection is past
 * --max-connections. Counts the refusal. */
bool sv_conn_refused(nng_pipe p);
/* On the main thread's tick: closes connections past the cap whose grace is over, and logs
 * the refusals; last logs those not yet logged at once. */
void sv_listeners_tick(bool last);
/* Stops the watch and closes every listener. */
void sv_listeners_stop(void);

/* Routing of client calls. */
int sv_router_start(void);
void sv_router_stop(void);
/* Worker index has a new process and link: the calls sent while the slot had none go to it
 * now, in order. Called with sv.lock held. */
void sv_router_worker_started(int index, pid_t pid);

/* Calls as the link thread sees them. The take functions run with sv.lock held and unlink
 * what they return (a list through sv_call_next); the finish functions answer a taken call
 * without the lock. */
/* Adds to *list the call that tag names, in flight on w's process pid, with its reply payload
 * (borrowed from the link's buffer until the link thread reads again); false when there is
 * none. */
bool sv_call_take(sv_worker *w, pid_t pid, uint64_t tag, const uint8_t *payload, size_t len,
                  sv_call **list);
sv_call *sv_calls_take_lost(sv_worker *w, pid_t pid, sv_call *list);
sv_call *sv_calls_take_expired(sv_worker *w, uint64_t now_ns, sv_call *list);
sv_call *sv_call_next(const sv_call *c);
/* Answers with the worker's Response taken with the call, after checking it; a malformed
 * one kills the worker. */
void sv_call_finish_reply(sv_call *c);
void sv_call_finish_lost(sv_call *c);
void sv_call_finish_expired(sv_call *c);

/* Quarantine (quarantine.c), under sv.lock: a tenant with a call in flight on a worker that
 * died of something a script can cause gets a strike; enough strikes within the window send
 * it to the quarantine pool for a while. */
/* A strike now. event identifies one worker death (its pid): one strike per death. */
void sv_quarantine_strike(const char *tenant, uint64_t event);
/* The tenant had a call in flight on worker pid when it died: a strike if the death turns
 * out to be one a script can cause (see sv_quarantine_verdict), whichever comes first. */
void sv_quarantine_suspect(const char *tenant, uint64_t pid);
/* How worker pid ended (its wait status): strikes the suspects of a death a script can
 * cause (a fatal signal such as SIGSYS or SIGSEGV) and forgives those of one it cannot
 * (SIGKILL or SIGTERM from outside, the OOM killer, an exit). */
void sv_quarantine_verdict(uint64_t pid, int status);
bool sv_quarantined(const char *tenant);
void sv_quarantine_fini(void);

/* Tenant policies: [defaults] and [tenant:NAME] sections of the config file, with command-line
 * limit flags overriding [defaults]. */
typedef struct sv_policies sv_policies;
sv_policies *sv_policies_load(const char *path, char *why, size_t whylen);
void sv_policies_install(sv_policies *p); /* takes ownership; frees the previous set */
void sv_policies_free(sv_policies *p);
size_t sv_policies_count(const sv_policies *p);
/* The [defaults] limits of the installed policies, flags applied. */
void sv_policies_defaults(mj_limits *out);
/* A per-engine limit flag of the command line (--memory-limit, --source-limit, ...): sets it
 * in *l and its bit in *set. 1 when flag is one and value is good, -1 when the value is bad
 * (why tells), 0 when flag is not a limit flag. */
int sv_limit_flag(const char *flag, const char *value, mj_limits *l, unsigned *set,
                  const char **why);
/* The largest packed TenantPolicy (two Limits of eight wrapped values, two quotas). */
#define SV_POLICY_WIRE_MAX 512
/* The policy of a tenant (its own section, else [defaults]) in *out, and in wire the
 * TenantPolicy its calls carry to the worker, packed when the policies were loaded; returns
 * its length. */
size_t sv_policy_for(const char *tenant, mj_tenant_policy *out, uint8_t wire[SV_POLICY_WIRE_MAX]);
bool sv_tenant_name_ok(const char *s);

#endif
