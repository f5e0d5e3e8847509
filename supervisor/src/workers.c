/* Worker processes: fork+exec, peer checks, reaping, replacement and kills. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/transport/ipc/ipc.h>

#include "supervisor.h"

/* Replacements are immediate; only a worker that keeps dying right after start waits. */
#define FAST_DEATH_NS (1000 * 1000 * 1000ull)
#define MAX_BACKOFF_MS 1000

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Accepts a connection on a worker socket only from the process started for it: anything
 * else that reaches the private directory is refused. */
static void
pipe_check(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	sv_worker *w = arg;
	uint64_t pid = 0;
	pid_t want;

	(void)ev;
	pthread_mutex_lock(&sv.lock);
	want = w->pid;
	pthread_mutex_unlock(&sv.lock);
	if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &pid) != 0 || want == 0 ||
	    pid != (uint64_t)want) {
		sv_log("worker-peer-refused", "worker=%d pid=%llu expected=%d", w->index,
		       (unsigned long long)pid, (int)want);
		nng_pipe_close(p);
	}
}

static int
open_socket(sv_worker *w)
{
	int rv;

	snprintf(w->url, sizeof(w->url), "ipc://%s/worker-%d.sock", sv.worker_dir, w->index);
	if ((rv = nng_req0_open(&w->sock)) != 0)
		return rv;
	/* A request must never be replayed to a replacement worker: it may be the one that
	 * killed the first. A dead peer fails the pending receive instead. */
	nng_socket_set_ms(w->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(w->sock, NNG_OPT_RECVMAXSZ, (16u << 20) + (64u << 10));
	nng_pipe_notify(w->sock, NNG_PIPE_EV_ADD_PRE, pipe_check, w);
	return nng_listen(w->sock, w->url, NULL, 0);
}

static int
spawn(sv_worker *w)
{
	char id[16], execs[16], mem[32];
	char *argv[12];
	pid_t pid;
	int n = 0;

	snprintf(id, sizeof(id), "%d", w->index);
	snprintf(execs, sizeof(execs), "%d", sv.cfg.executors);
	snprintf(mem, sizeof(mem), "%zu", sv.cfg.worker_memory);
	argv[n++] = "moonjail-worker";
	argv[n++] = "--connect";
	argv[n++] = w->url;
	argv[n++] = "--id";
	argv[n++] = id;
	argv[n++] = "--executors";
	argv[n++] = execs;
	argv[n++] = "--memory-budget";
	argv[n++] = mem;
	argv[n] = NULL;
	/* nng is not fork-safe: the child only closes descriptors and execs. */
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* A worker must not outlive its supervisor. Workers are spawned from the main
		 * thread, which lives as long as the process. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		syscall(SYS_close_range, 3u, ~0u, 0u);
		execv(sv.cfg.worker_bin, argv);
		_exit(127);
	}
	pthread_mutex_lock(&sv.lock);
	w->pid = pid;
	w->started_ns = now_ns();
	pthread_mutex_unlock(&sv.lock);
	sv_log("worker-started", "worker=%d pid=%d", w->index, (int)pid);
	return 0;
}

int
sv_workers_start(void)
{
	int i, rv;

	for (i = 0; i < sv.cfg.nworkers; i++) {
		sv_worker *w = &sv.workers[i];
		w->index = i;
		if ((rv = open_socket(w)) != 0) {
			sv_log("error", "what=\"worker socket\" url=%s err=\"%s\"", w->url,
			       nng_strerror(rv));
			return -1;
		}
		if (spawn(w) != 0) {
			sv_log("error", "what=\"fork\" err=\"%s\"", strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Called from the main thread after waitpid reported pid. */
void
sv_worker_reap(pid_t pid, int status)
{
	sv_worker *w = NULL;
	int i;

	pthread_mutex_lock(&sv.lock);
	for (i = 0; i < sv.cfg.nworkers; i++) {
		if (sv.workers[i].pid == pid) {
			w = &sv.workers[i];
			break;
		}
	}
	if (w == NULL) {
		pthread_mutex_unlock(&sv.lock);
		return;
	}
	w->pid = 0;
	w->restarts++;
	sv_router_worker_lost(w->index);
	pthread_mutex_unlock(&sv.lock);
	if (WIFSIGNALED(status))
		sv_log("worker-died", "worker=%d pid=%d signal=%d", w->index, (int)pid,
		       WTERMSIG(status));
	else
		sv_log("worker-exited", "worker=%d pid=%d status=%d", w->index, (int)pid,
		       WEXITSTATUS(status));
}

/* Starts a replacement for every slot without a process, unless draining. A worker that died
 * within a second of starting is replaced after a short pause, so a crash loop cannot spin. */
void
sv_workers_respawn_due(void)
{
	uint64_t now = now_ns();
	int i;

	if (atomic_load(&sv.draining))
		return;
	for (i = 0; i < sv.cfg.nworkers; i++) {
		sv_worker *w = &sv.workers[i];
		uint64_t age;

		if (w->pid != 0)
			continue;
		age = now - w->started_ns;
		if (age < FAST_DEATH_NS && w->restarts > 3 &&
		    age < (uint64_t)MAX_BACKOFF_MS * 1000000ull)
			continue;
		if (spawn(w) != 0)
			sv_log("error", "what=\"fork\" worker=%d err=\"%s\"", i, strerror(errno));
	}
}

void
sv_worker_kill(int index, const char *why)
{
	pid_t pid;

	pthread_mutex_lock(&sv.lock);
	pid = sv.workers[index].pid;
	pthread_mutex_unlock(&sv.lock);
	if (pid > 0) {
		sv_log("worker-kill", "worker=%d pid=%d reason=%s", index, (int)pid, why);
		kill(pid, SIGKILL);
	}
}

void
sv_workers_stop(void)
{
	int i, status;
	pid_t pid;

	for (i = 0; i < sv.cfg.nworkers; i++) {
		if (sv.workers[i].pid > 0)
			kill(sv.workers[i].pid, SIGTERM);
	}
	for (i = 0; i < sv.cfg.nworkers; i++) {
		int tries;
		if ((pid = sv.workers[i].pid) <= 0)
			continue;
		for (tries = 0; tries < 200; tries++) {
			if (waitpid(pid, &status, WNOHANG) == pid)
				break;
			usleep(10000);
		}
		if (tries == 200) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		}
		sv.workers[i].pid = 0;
	}
	for (i = 0; i < sv.cfg.nworkers; i++)
		nng_close(sv.workers[i].sock);
}
