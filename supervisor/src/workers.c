/* Worker processes: fork+exec with a socketpair, reaping, replacement and kills. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"

/* Replacements are immediate; only a worker that keeps dying right after start waits. */
#define FAST_DEATH_NS (1000 * 1000 * 1000ull)
#define MAX_BACKOFF_MS 1000

static const char *
slot_name(const sv_worker *w, char *buf, size_t cap)
{
	if (w->index == SV_SPARE)
		snprintf(buf, cap, "spare");
	else
		snprintf(buf, cap, "%d", w->index);
	return buf;
}

/* Passes one line of a worker's log on. A worker may be compromised: its line cannot pose as
 * moonjaild's (every line starts with the worker's prefix) or hide behind control
 * characters. */
static void
relay_line(char *line, size_t len)
{
	static const char prefix[] = "moonjail-worker[";
	char out[4200];
	size_t i, n = 0;

	if (len == 0)
		return;
	for (i = 0; i < len; i++)
		if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f)
			line[i] = '?';
	if (sv.cfg.log_json) {
		sv_log("worker-log", "%.*s", (int)len, line);
		return;
	}
	if (len < sizeof(prefix) - 1 || memcmp(line, prefix, sizeof(prefix) - 1) != 0) {
		memcpy(out, "moonjail-worker[?]: ", 20);
		n = 20;
	}
	if (len > sizeof(out) - n - 1)
		len = sizeof(out) - n - 1;
	memcpy(out + n, line, len);
	n += len;
	out[n++] = '\n';
	/* Through moonjaild's log queue: a stalled reader of stderr stalls no worker. */
	sv_log_line(out, n);
}

/* Copies a worker's stderr to ours, a whole line at a time, until the worker and everything
 * it started are gone. A line longer than the buffer is passed on in pieces. */
static void *
relay_log(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	size_t have = 0, start, i;
	ssize_t n;

	while ((n = read(fd, buf + have, sizeof(buf) - have)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		have += (size_t)n;
		for (start = 0, i = 0; i < have; i++) {
			if (buf[i] == '\n') {
				relay_line(buf + start, i - start);
				start = i + 1;
			}
		}
		if (start == 0 && have == sizeof(buf)) {
			relay_line(buf, have); /* no newline in a full buffer */
			have = 0;
		} else {
			memmove(buf, buf + start, have - start);
			have -= start;
		}
	}
	relay_line(buf, have);
	close(fd);
	return NULL;
}

static void
start_relay(int fd)
{
	pthread_attr_t attr;
	pthread_t t;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	if (pthread_create(&t, &attr, relay_log, (void *)(intptr_t)fd) != 0)
		close(fd); /* the worker then gets EPIPE on its log writes, nothing worse */
	pthread_attr_destroy(&attr);
}

/* The child side of a namespaced start: maps the supervisor's ids to root inside the new user
 * namespace (it then holds capabilities there only, enough to chroot itself). Only raw
 * syscalls: the parent is multithreaded. */
static int
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t len = (ssize_t)strlen(text);

	if (fd < 0)
		return -1;
	if (write(fd, text, (size_t)len) != len) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* fork(), or a clone into new namespaces. Falls back to fork() for good, with one warning, when
 * the kernel or the container refuses them. */
static pid_t
start_process(bool *in_userns)
{
	int flags = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWNS | CLONE_NEWUTS;
	pid_t pid;

	*in_userns = false;
	if (!sv.cfg.namespaces)
		return fork();
	/* Root creates the namespaces itself and the worker drops to --user after connecting;
	 * anyone else needs a user namespace to own them. */
	if (geteuid() != 0)
		flags |= CLONE_NEWUSER;
	pid = (pid_t)syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), NULL, NULL, NULL, 0UL);
	if (pid >= 0) {
		*in_userns = (flags & CLONE_NEWUSER) != 0;
		return pid;
	}
	/* Out of memory or processes for now: this start fails and is retried, with the
	 * namespaces. Any other refusal is the kernel's or the container's policy. */
	if (errno == EAGAIN || errno == ENOMEM)
		return -1;
	sv_log("warning",
	       "what=namespaces err=\"%s\" note=\"workers share the host's network, mount, PID "
	       "and IPC namespaces; seccomp, rlimits and the privilege drop still apply\"",
	       strerror(errno));
	sv.cfg.namespaces = false;
	return fork();
}

/* The descriptors of the next start (its log pipe and its socketpair), made ready after each
 * start, so that a replacement needs no new descriptor even when clients hold every one
 * moonjaild may open (connections still in their handshake are not capped). Used and
 * refilled by the main thread only. */
static int ready_log[2] = {-1, -1}, ready_sp[2] = {-1, -1};

static int
make_fds(int logp[2], int sp[2])
{
	if (pipe2(logp, O_CLOEXEC) != 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		close(logp[0]);
		close(logp[1]);
		return -1;
	}
	return 0;
}

/* The ready descriptors if there are, else new ones. */
static int
take_fds(int logp[2], int sp[2])
{
	if (ready_log[0] < 0)
		return make_fds(logp, sp);
	memcpy(logp, ready_log, sizeof(ready_log));
	memcpy(sp, ready_sp, sizeof(ready_sp));
	ready_log[0] = ready_log[1] = ready_sp[0] = ready_sp[1] = -1;
	return 0;
}

/* Descriptors of a start that failed: kept ready for the next one, when none are. */
static void
give_back(int logp[2], int sp[2])
{
	int i;

	if (ready_log[0] < 0) {
		memcpy(ready_log, logp, sizeof(ready_log));
		memcpy(ready_sp, sp, sizeof(ready_sp));
		return;
	}
	for (i = 0; i < 2; i++) {
		close(logp[i]);
		close(sp[i]);
	}
}

/* Made again on every tick until it works: a flood that holds every descriptor lets one go
 * now and then. */
static void
refill_fds(void)
{
	if (ready_log[0] < 0 && make_fds(ready_log, ready_sp) != 0)
		ready_log[0] = ready_log[1] = ready_sp[0] = ready_sp[1] = -1;
}

static int
spawn(sv_worker *w)
{
	char id[16], name[16], execs[16], mem[32], ids[40], uid_map[40], gid_map[40];
	char *argv[16];
	bool userns;
	pid_t pid, self, parent;
	int logp[2], sp[2];
	sv_link *link;
	struct rlimit rl;
	int n = 0, fdmax;

	/* A log label only; the worker takes 0-1000000. */
	snprintf(id, sizeof(id), "%u", sv.spawn_seq++ % 1000000u);
	snprintf(execs, sizeof(execs), "%d", sv.cfg.executors);
	snprintf(mem, sizeof(mem), "%zu", sv.cfg.worker_memory);
	argv[n++] = "moonjail-worker";
	argv[n++] = "--fd";
	argv[n++] = "3";
	argv[n++] = "--id";
	argv[n++] = id;
	argv[n++] = "--executors";
	argv[n++] = execs;
	argv[n++] = "--memory-budget";
	argv[n++] = mem;
	argv[n++] = "--chroot";
	argv[n++] = sv.chroot_dir;
	if (sv.drop_user) {
		snprintf(ids, sizeof(ids), "%u:%u", (unsigned)sv.worker_uid,
		         (unsigned)sv.worker_gid);
		argv[n++] = "--user";
		argv[n++] = ids;
	}
	argv[n] = NULL;
	snprintf(uid_map, sizeof(uid_map), "0 %u 1\n", (unsigned)geteuid());
	snprintf(gid_map, sizeof(gid_map), "0 %u 1\n", (unsigned)getegid());
	/* The worker's stderr is a pipe we relay: RLIMIT_FSIZE 0 would kill a worker writing to a
	 * log file, and a pipe keeps its lines apart from ours. Its only channel is a
	 * socketpair made here, so nothing else can ever reach its end. */
	if (take_fds(logp, sp) != 0)
		return -1;
	/* For the child, should close_range be missing. */
	fdmax =
	    getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
	if ((link = sv_link_new(sp[0], w->index)) == NULL) {
		give_back(logp, sp);
		errno = ENOMEM;
		return -1;
	}
	/* nng is not fork-safe: the child only sets itself up with raw syscalls and execs. The
	 * lock is held until the parent has recorded the child and its link. The child never
	 * touches the lock. */
	pthread_mutex_lock(&sv.lock);
	self = getpid();
	if ((pid = start_process(&userns)) < 0) {
		int err = errno;

		pthread_mutex_unlock(&sv.lock);
		link->fd = -1; /* sp[0] goes back with the rest */
		sv_link_free(link);
		give_back(logp, sp);
		errno = err;
		return -1;
	}
	if (pid == 0) {
		sigset_t none;

		/* The log pipe becomes stderr and the stream descriptor 3, open across exec;
		 * everything above is closed, which also leaves room to open the id maps when
		 * moonjaild's table is full. (moonjaild starts with 0-2 open, so neither end
		 * is 2.) */
		if (dup2(logp[1], STDERR_FILENO) < 0)
			_exit(126);
		if (sp[1] == 3 ? fcntl(3, F_SETFD, 0) != 0 : dup2(sp[1], 3) < 0)
			_exit(126);
		if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0) /* before Linux 5.9 */
			for (int fd = 4; fd < fdmax; fd++)
				close(fd);
		if (userns && (write_file("/proc/self/uid_map", uid_map) != 0 ||
		               write_file("/proc/self/setgroups", "deny") != 0 ||
		               write_file("/proc/self/gid_map", gid_map) != 0))
			_exit(126);
		/* Its own process group: a terminal's job-control signals (Ctrl-C reaches the
		 * whole foreground group) are moonjaild's to handle, and the kernel's SIGCONT to
		 * an orphaned group cannot resume a worker stopped on purpose. Not its own
		 * session: with scheduler autogroups, every session would get an equal share of
		 * the CPU, and a busy worker would starve moonjaild. */
		if (setpgid(0, 0) < 0)
			_exit(126);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* A worker must not outlive its supervisor. Workers are spawned from the main
		 * thread, which lives as long as the process. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* Orphaned before that: reparented. Not "is the parent 1": moonjaild may be PID 1
		 * itself, in a container. Inside a new PID namespace the parent shows as 0. */
		parent = getppid();
		if (parent != 0 && parent != self)
			_exit(127);
		execv(sv.cfg.worker_bin, argv);
		_exit(127);
	}
	link->pid = pid;
	w->link = link;
	w->pid = pid;
	w->started_ns = mj_now_ns();
	if (w->index != SV_SPARE)
		sv_router_worker_started(w->index, pid);
	pthread_mutex_unlock(&sv.lock);
	sv_links_wake();
	close(sp[1]);
	close(logp[1]);
	start_relay(logp[0]);
	refill_fds();
	sv_log(w->index == SV_SPARE ? "spare-started" : "worker-started",
	       "worker=%s pid=%d id=%s namespaces=%s", slot_name(w, name, sizeof(name)), (int)pid,
	       id,
	       sv.cfg.namespaces ? (userns ? "user,pid,net,ipc,mnt,uts" : "pid,net,ipc,mnt,uts")
	                         : "none");
	return 0;
}

int
sv_workers_start(void)
{
	int i;

	sv.nslots = sv.cfg.nworkers + sv.cfg.quarantine_workers;
	sv.spare.index = SV_SPARE;
	if (sv_links_start() != 0) {
		sv_log("error", "what=\"link thread\" err=\"%s\"", strerror(errno));
		return -1;
	}
	for (i = 0; i < sv.nslots; i++) {
		sv_worker *w = &sv.workers[i];
		w->index = i;
		if (spawn(w) != 0) {
			sv_log("error", "what=\"fork\" err=\"%s\"", strerror(errno));
			return -1;
		}
	}
	if (sv.cfg.spare && spawn(&sv.spare) != 0) {
		sv_log("error", "what=\"fork\" err=\"%s\"", strerror(errno));
		return -1;
	}
	return 0;
}

/* Puts the spare process and its link in slot w, whose process just died; the calls waiting
 * for the slot go to it. Called with sv.lock held. */
static bool
promote_spare(sv_worker *w)
{
	if (sv.spare.link == NULL || sv.spare.link->eof || sv.spare.pid == 0)
		return false;
	w->link = sv.spare.link;
	w->link->slot = w->index;
	w->pid = sv.spare.pid;
	w->started_ns = sv.spare.started_ns;
	sv.spare.link = NULL;
	sv.spare.pid = 0;
	sv_router_worker_started(w->index, w->pid);
	return true;
}

/* Hands the link of a reaped process to the link thread, which answers what it still held.
 * Called with sv.lock held. */
static void
retire_link(sv_worker *w)
{
	if (w->link == NULL)
		return;
	w->link->next = sv.retired;
	sv.retired = w->link;
	w->link = NULL;
}

/* Called from the main thread after waitpid reported pid. */
void
sv_worker_reap(pid_t pid, int status)
{
	sv_worker *w = NULL;
	bool promoted = false;
	pid_t now_pid = 0;
	char name[16];
	int i;

	pthread_mutex_lock(&sv.lock);
	if (sv.spare.pid == pid && pid != 0) {
		w = &sv.spare;
	} else {
		for (i = 0; i < sv.nslots; i++) {
			if (sv.workers[i].pid == pid) {
				w = &sv.workers[i];
				break;
			}
		}
	}
	if (w == NULL) {
		pthread_mutex_unlock(&sv.lock);
		return;
	}
	w->pid = 0;
	w->restarts++;
	retire_link(w);
	sv_quarantine_verdict((uint64_t)pid, status);
	if (w->index != SV_SPARE && !atomic_load(&sv.draining) && (promoted = promote_spare(w)))
		now_pid = w->pid;
	pthread_mutex_unlock(&sv.lock);
	sv_links_wake();
	slot_name(w, name, sizeof(name));
	if (WIFSIGNALED(status))
		sv_log("worker-died", "worker=%s pid=%d signal=%d", name, (int)pid,
		       WTERMSIG(status));
	else
		sv_log("worker-exited", "worker=%s pid=%d status=%d", name, (int)pid,
		       WEXITSTATUS(status));
	if (promoted)
		sv_log("worker-started", "worker=%s pid=%d spare=promoted", name, (int)now_pid);
}

static void
respawn_one(sv_worker *w, uint64_t now)
{
	uint64_t age;
	char name[16];

	if (w->pid != 0)
		return;
	age = now - w->started_ns;
	if (age < FAST_DEATH_NS && w->restarts > 3 && age < (uint64_t)MAX_BACKOFF_MS * 1000000ull)
		return;
	if (spawn(w) == 0) {
		w->spawn_err_ns = 0;
		w->spawn_errs = 0;
		return;
	}
	/* Tried again every tick (50 ms); logged at most once a second, with the failures
	 * since the last line. */
	w->spawn_errs++;
	if (w->spawn_err_ns == 0 || now - w->spawn_err_ns >= 1000000000ull) {
		sv_log("error", "what=\"fork\" worker=%s err=\"%s\" failures=%u",
		       slot_name(w, name, sizeof(name)), strerror(errno), w->spawn_errs);
		w->spawn_err_ns = now;
		w->spawn_errs = 0;
	}
}

/* Starts a replacement for every slot without a process, then the spare, unless draining. A
 * worker that died within a second of starting is replaced after a short pause, so a crash
 * loop cannot spin. */
void
sv_workers_respawn_due(void)
{
	uint64_t now = mj_now_ns();
	int i;

	if (atomic_load(&sv.draining))
		return;
	for (i = 0; i < sv.nslots; i++)
		respawn_one(&sv.workers[i], now);
	if (sv.cfg.spare)
		respawn_one(&sv.spare, now);
	refill_fds();
}

static void
kill_worker(int index, pid_t pid, const char *why, const char *tenant)
{
	sv_worker *w;
	bool ours;

	pthread_mutex_lock(&sv.lock);
	/* Killed under the lock: the reap, which takes it too, cannot free the pid for reuse
	 * between the check and the kill. */
	w = index == SV_SPARE ? &sv.spare : &sv.workers[index];
	ours = pid > 0 && w->pid == pid;
	if (ours) {
		/* One strike per death, however many calls pass their deadline on it. */
		if (tenant != NULL && w->culprit_pid != pid) {
			w->culprit_pid = pid;
			sv_quarantine_strike(tenant, (uint64_t)pid);
		}
		kill(pid, SIGKILL);
	}
	pthread_mutex_unlock(&sv.lock);
	if (ours)
		sv_log("worker-kill", "worker=%d pid=%d reason=%s%s%s", index, (int)pid, why,
		       tenant ? " tenant=" : "", tenant ? tenant : "");
}

void
sv_worker_kill(int index, pid_t pid, const char *why)
{
	kill_worker(index, pid, why, NULL);
}

void
sv_worker_kill_for(int index, pid_t pid, const char *why, const char *tenant)
{
	kill_worker(index, pid, why, tenant);
}

void
sv_workers_stop(void)
{
	sv_worker *all[SV_MAX_WORKERS + SV_MAX_QUARANTINE + 1];
	int i, n = 0, status;
	sv_link *l, *next;
	pid_t pid;

	sv_links_stop();
	for (i = 0; i < sv.nslots; i++)
		all[n++] = &sv.workers[i];
	if (sv.cfg.spare)
		all[n++] = &sv.spare;
	for (i = 0; i < n; i++) {
		if (all[i]->pid > 0)
			kill(all[i]->pid, SIGTERM);
	}
	for (i = 0; i < n; i++) {
		int tries;
		if ((pid = all[i]->pid) <= 0)
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
		all[i]->pid = 0;
	}
	for (i = 0; i < n; i++) {
		if (all[i]->link != NULL)
			sv_link_free(all[i]->link);
		all[i]->link = NULL;
	}
	for (l = sv.retired; l != NULL; l = next) {
		next = l->next;
		sv_link_free(l);
	}
	sv.retired = NULL;
	sv_links_fini();
}
