/* The engine object and the helpers its source files share; never installed. */
#ifndef MJ_ENGINE_IMPL_H
#define MJ_ENGINE_IMPL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "mj/clock.h"
#include "mj/engine.h"

/* One armed wall-clock deadline, watched by the process-wide watchdog thread. */
typedef struct mj__wd_slot {
	struct mj__wd_slot *prev, *next;
	pthread_t thread;
	uint64_t deadline_ns;
	atomic_int fired; /* set by the watchdog once the deadline passed */
	bool linked;
} mj__wd_slot;

typedef struct mj__hostfn {
	char *name;
	mj_host_fn fn;
	void *ud;
} mj__hostfn;

typedef struct mj__namespace {
	char *name;
	mj_value tree;
} mj__namespace;

struct mj_engine {
	lua_State *L;
	mj_limits limits;
	char **modules;
	size_t nmodules;
	mj__hostfn *fns;
	size_t nfns;
	mj__namespace *nss;
	size_t nns;

	/* Heap accounting for the Lua allocator. */
	size_t mem_used;
	size_t mem_peak;
	size_t mem_reserve;

	/* State of the call in progress. */
	/* in_call and running are read by the watchdog's signal handler on this thread. */
	volatile sig_atomic_t in_call;
	mj_kind killed;              /* sticky: once set, every hook raises until the call ends */
	lua_State *volatile running; /* the thread executing now, for the asynchronous hook */
	uint64_t insn_used;
	uintptr_t cstack_base; /* frame address where the call started */
	mj_engine *tls_prev;   /* the engine this thread was running when this call began */
	size_t pressure_mark;  /* heap size that asks for a collection at the next safe point */
	bool mem_pressure;     /* the heap crossed the limit: collect, then decide */
	uint64_t deadline_ns;  /* 0 = no deadline */
	int close_depth;
	char *out;
	size_t out_len;
	size_t out_cap;
	bool out_truncated;
	uint32_t err_line;
	char *traceback;
	mj__wd_slot slot;

	char errmsg[256];
};

/* The engine owning L (any of its threads). */
mj_engine *mj__engine_of(lua_State *L);

/* Marks the call killed with kind (first kill wins) and makes the running thread stop at its
 * next instruction. */
void mj__engine_kill(mj_engine *e, mj_kind kind);

/* Raises the sticky kill error for e's kill. Does not return. */
int mj__engine_raise_kill(lua_State *L, mj_engine *e);

/* Raises the kill error if a limit was hit or the deadline passed; call after running a
 * thread, so a deadline signal that landed on a finished coroutine is not lost. */
void mj__engine_check(lua_State *L, mj_engine *e);

/* Raises "C stack overflow" when the call has used more than MJ__CSTACK_BUDGET bytes of C
 * stack; checked before starting another coroutine, whose C-call count starts afresh. */
#define MJ__CSTACK_BUDGET (1024 * 1024)
void mj__engine_check_cstack(lua_State *L, mj_engine *e);

/* Charges the step in progress on coroutine co after it yielded, returned or closed: the
 * part of a step a thread used is not observable, so the whole step is charged. */
void mj__engine_charge(mj_engine *e, lua_State *co);

/* Points the hook of thread L at the engine's current budget: call before resuming a thread. */
void mj__engine_arm(mj_engine *e, lua_State *L);

/* Builds the sandboxed globals of e->L. Must run inside lua_pcall; raises on failure. */
int mj__sandbox_open(lua_State *L);

/* Installs (or reinstalls) namespace ns / host function index i in e->L; raise on failure. */
int mj__sandbox_push_namespace(lua_State *L, const char *name, const mj_value *tree);
void mj__sandbox_set_function(lua_State *L, size_t index);

/* Replaces the data table on top of the stack by a read-only proxy; raises on failure. */
void mj__sandbox_wrap_readonly(lua_State *L);

/* Caps for converting Lua values to mj_value trees. */
typedef struct mj__caps {
	size_t max_bytes;
	uint32_t max_depth;
	size_t max_items;
	size_t bytes;
	size_t items;
} mj__caps;

/* Converts the Lua value at idx into out without invoking metamethods or raising Lua errors.
 * On failure writes a message into err and returns MJ_ELIMIT (a cap was hit), MJ_EINVAL
 * (cycle or unsupported key) or MJ_ENOMEM; out is then nil. */
mj_err mj__to_value(lua_State *L, int idx, mj__caps *caps, mj_value *out, char *err, size_t errlen);

/* Pushes v as a fresh Lua value. Raises Lua errors (memory, bad keys); run it protected.
 * With readonly, tables become read-only proxies (for namespaces). */
void mj__push_value(lua_State *L, const mj_value *v, bool readonly, int depth);

/* Watchdog: arm/disarm the calling thread's deadline; monotonic clock in ns. */
mj_err mj__wd_arm(mj__wd_slot *s, uint64_t deadline_ns);
void mj__wd_disarm(mj__wd_slot *s);
/* Called by the watchdog's signal handler on the thread whose deadline passed. */
void mj__engine_on_deadline_signal(void);

#endif
