/* The process-wide watchdog thread that enforces wall-clock deadlines without Lua's help. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "engine_impl.h"

/* A coarse tick keeps the watchdog off the per-call path: calls only link and unlink a slot
 * under a mutex, and the thread wakes every tick while calls are running. Pure Lua code is
 * stopped precisely by the count hook; the tick only bounds how late a long C call is hit. */
#define WD_TICK_NS (5 * 1000 * 1000ull)
/* After this long with no call armed the thread sleeps until the next arm. */
#define WD_IDLE_NS (1000 * 1000 * 1000ull)

static pthread_once_t wd_once = PTHREAD_ONCE_INIT;
static mj_err wd_init_err = MJ_OK;
static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond;
static mj__wd_slot *wd_head;
static bool wd_sleeping;
static bool wd_running; /* the thread has started: set once, under wd_lock */
static uint64_t wd_last_arm;
static int wd_signo;

static void
wd_signal_handler(int signo)
{
	int saved = errno;

	(void)signo;
	mj__engine_on_deadline_signal();
	errno = saved;
}

static void *
wd_main(void *arg)
{
	struct timespec ts;
	mj__wd_slot *s;
	uint64_t now;

	(void)arg;
	pthread_mutex_lock(&wd_lock);
	wd_running = true;
	pthread_cond_broadcast(&wd_cond);
	for (;;) {
		now = mj_now_ns();
		for (s = wd_head; s != NULL; s = s->next) {
			if (s->deadline_ns <= now) {
				atomic_store(&s->fired, 1);
				/* Sent under the lock, so the slot is still armed; the handler
				 * re-checks in case the call ended meanwhile. Repeated every tick
				 * until the call ends, so a hook set on a thread that just
				 * stopped running cannot lose the deadline. */
				pthread_kill(s->thread, wd_signo);
			}
		}
		if (wd_head == NULL && now - wd_last_arm > WD_IDLE_NS) {
			wd_sleeping = true;
			while (wd_sleeping)
				pthread_cond_wait(&wd_cond, &wd_lock);
			continue;
		}
		mj_abs_time(CLOCK_MONOTONIC, &ts, WD_TICK_NS);
		pthread_cond_timedwait(&wd_cond, &wd_lock, &ts);
	}
	return NULL;
}

static void
wd_start(void)
{
	pthread_condattr_t ca;
	pthread_attr_t ta;
	struct sigaction sa;
	pthread_t tid;
	sigset_t all, old;

	wd_signo = SIGRTMIN + 2;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wd_signal_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(wd_signo, &sa, NULL) != 0) {
		wd_init_err = MJ_EINTERNAL;
		return;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wd_cond, &ca);
	pthread_condattr_destroy(&ca);

	pthread_attr_init(&ta);
	pthread_attr_setstacksize(&ta, 64 * 1024);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	/* The watchdog must never receive its own signal or the host's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&tid, &ta, wd_main, NULL) != 0)
		wd_init_err = MJ_ENOMEM;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&ta);
	/* A host that confines itself next (seccomp in the worker) needs the thread past its
	 * start-up syscalls first. */
	pthread_mutex_lock(&wd_lock);
	while (wd_init_err == MJ_OK && !wd_running)
		pthread_cond_wait(&wd_cond, &wd_lock);
	pthread_mutex_unlock(&wd_lock);
}

mj_err
mj_engine_global_init(void)
{
	pthread_once(&wd_once, wd_start);
	return wd_init_err;
}

mj_err
mj__wd_arm(mj__wd_slot *s, uint64_t deadline_ns)
{
	mj_err err;

	if ((err = mj_engine_global_init()) != MJ_OK)
		return err;
	s->thread = pthread_self();
	s->deadline_ns = deadline_ns;
	atomic_store(&s->fired, 0);
	pthread_mutex_lock(&wd_lock);
	s->prev = NULL;
	s->next = wd_head;
	if (wd_head != NULL)
		wd_head->prev = s;
	wd_head = s;
	s->linked = true;
	wd_last_arm = mj_now_ns();
	if (wd_sleeping) {
		wd_sleeping = false;
		pthread_cond_signal(&wd_cond);
	}
	pthread_mutex_unlock(&wd_lock);
	return MJ_OK;
}

void
mj__wd_disarm(mj__wd_slot *s)
{
	if (!s->linked)
		return;
	pthread_mutex_lock(&wd_lock);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		wd_head = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->linked = false;
	pthread_mutex_unlock(&wd_lock);
}
