/* Internal declarations of moonjaild, the supervisor process. */
#ifndef MJ_SUPERVISOR_H
#define MJ_SUPERVISOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdbool.h>

#include <nng/nng.h>

#include "mj/limits.h"
#include "mj/policy.h"

#define SV_MAX_WORKERS 256
#define SV_MAX_LISTEN 16

typedef struct sv_call sv_call;

/* One worker slot: a REQ socket the supervisor listens on, and the process dialing it. */
typedef struct sv_worker {
	int index;
	nng_socket sock;
	char url[400];
	pid_t pid; /* 0 while no process runs */
	uint64_t started_ns;
	unsigned restarts;
	sv_call *inflight; /* calls forwarded and not yet answered, under sv.lock */
	unsigned ninflight;
} sv_worker;

/* Which limits a config section or the command line set explicitly. */
enum { F_MEMORY = 1, F_INSTR = 2, F_TIMEOUT = 4, F_OUTPUT = 8, F_ENGINES = 16, F_TOTAL = 32 };

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
	uint32_t deadline_margin_ms;
	unsigned flag_set; /* which default-limit flags were given (they win over the file) */
	const char *group; /* also admit this group to the client socket, or NULL */
	gid_t gid;
	const char *worker_user; /* the account workers drop to when moonjaild runs as root */
	bool namespaces;         /* start workers in new namespaces; cleared when refused */
} sv_config;

/* Process-wide supervisor state. */
typedef struct sv_state {
	sv_config cfg;
	pthread_mutex_t lock;
	sv_worker workers[SV_MAX_WORKERS];
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

/* Workers. */
int sv_workers_start(void);
void sv_worker_reap(pid_t pid, int status);
void sv_workers_respawn_due(void);
void sv_worker_kill(int index, const char *why);
void sv_workers_stop(void);

/* Routing of client calls. */
int sv_router_start(void);
void sv_router_stop(void);
/* Answers every call in flight on worker index with engine-lost. Called with sv.lock held. */
void sv_router_worker_lost(int index);

/* Tenant policies: [defaults] and [tenant:NAME] sections of the config file, with command-line
 * limit flags overriding [defaults]. */
typedef struct sv_policies sv_policies;
sv_policies *sv_policies_load(const char *path, char *why, size_t whylen);
void sv_policies_install(sv_policies *p); /* takes ownership; frees the previous set */
void sv_policies_free(sv_policies *p);
size_t sv_policies_count(const sv_policies *p);
/* The policy of a tenant (its own section, else [defaults]), and the limits engines get when
 * created on first use. */
void sv_policy_for(const char *tenant, mj_tenant_policy *out, mj_limits *defaults);
bool sv_tenant_name_ok(const char *s);

#endif
