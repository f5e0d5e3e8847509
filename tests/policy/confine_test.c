/* mj_confine: each case confines a forked child and checks what it may still do. */
#include <errno.h>
#include <linux/capability.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mj/confine.h"

/* Runs body in a child confined with opts; returns the child's wait status. The child exits
 * 0 when body returns true, 3 when it returns false, 4 when confinement itself failed. */
static int
run_confined(const mj_confine_opts *opts, bool (*body)(void *), void *arg)
{
	pid_t pid;
	int st = 0;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		mj_confine_report rep;
		char why[200];
		alarm(10);
		if (mj_confine(opts, &rep, why, sizeof(why)) != MJ_OK) {
			(void)!write(2, why, strlen(why));
			_exit(4);
		}
		_exit(body(arg) ? 0 : 3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

static void
assert_exit0(int st)
{
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("child: exited=%d status=%d signaled=%d signal=%d", WIFEXITED(st),
		         WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st),
		         WIFSIGNALED(st) ? WTERMSIG(st) : -1);
}

static void
assert_sigsys(int st, const char *what)
{
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSYS)
		fail_msg("%s: expected SIGSYS, got exited=%d status=%d signal=%d", what,
		         WIFEXITED(st), WIFEXITED(st) ? WEXITSTATUS(st) : -1,
		         WIFSIGNALED(st) ? WTERMSIG(st) : -1);
}

static mj_confine_opts
kill_opts(void)
{
	mj_confine_opts o;

	memset(&o, 0, sizeof(o));
	o.address_space = (size_t)4 << 30;
	return o;
}

/* ---- what a worker needs keeps working ---- */

static void *
spin_worker(void *arg)
{
	atomic_int *flag = arg;
	while (atomic_load(flag) == 0)
		sched_yield();
	atomic_store(flag, 2);
	return NULL;
}

static bool
steady_state(void *arg)
{
	atomic_int *flag = arg;
	struct timespec ts;
	char *p, rnd[16];

	/* Memory: small and large allocations, growth and release. */
	if ((p = malloc((size_t)64 << 20)) == NULL)
		return false;
	memset(p, 1, (size_t)64 << 20);
	free(p);
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0 || clock() == (clock_t)-1)
		return false;
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return false;
	if (write(2, "", 0) != 0)
		return false;
	/* A thread that existed before the filter runs and hands back. */
	atomic_store(flag, 1);
	while (atomic_load(flag) != 2)
		sched_yield();
	/* Path lookups fail with EPERM rather than killing. */
	errno = 0;
	if (open("/etc/passwd", O_RDONLY) != -1 || errno != EPERM)
		return false;
	return true;
}

static void
test_steady_state_allowed(void **state)
{
	mj_confine_opts o = kill_opts();
	static atomic_int flag;
	pthread_t t;
	int st;

	(void)state;
	/* The thread is created in the child, before confinement: fork copies only the caller. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		mj_confine_report rep;
		char why[200];
		alarm(10);
		if (pthread_create(&t, NULL, spin_worker, &flag) != 0)
			_exit(5);
		if (mj_confine(&o, &rep, why, sizeof(why)) != MJ_OK)
			_exit(4);
		_exit(steady_state(&flag) ? 0 : 3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_exit0(st);
}

/* ---- forbidden syscalls kill the whole process ---- */

typedef struct forbidden {
	const char *name;
	long (*call)(void);
} forbidden;

static long
do_socket(void)
{
	return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
}
static long
do_connect(void)
{
	return syscall(SYS_connect, 2, NULL, 0);
}
static long
do_bind(void)
{
	return syscall(SYS_bind, 2, NULL, 0);
}
static long
do_execve(void)
{
	static char *const argv[] = {"/bin/true", NULL};
	return syscall(SYS_execve, "/bin/true", argv, argv + 1);
}
static long
do_fork(void)
{
	return syscall(SYS_fork);
}
static long
do_clone(void)
{
	return syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, 0);
}
static long
do_ptrace(void)
{
	return syscall(SYS_ptrace, PTRACE_TRACEME, 0, NULL, NULL);
}
static long
do_kill_other(void)
{
	return syscall(SYS_kill, getppid(), 0);
}
static long
do_tgkill_other(void)
{
	return syscall(SYS_tgkill, 1, 1, 0);
}
static long
do_mount(void)
{
	return syscall(SYS_mount, "none", "/", "tmpfs", 0, NULL);
}
static long
do_unshare(void)
{
	return syscall(SYS_unshare, 0);
}
static long
do_mmap_exec(void)
{
	return (long)(intptr_t)mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
	                            -1, 0);
}
static long
do_mprotect_exec(void)
{
	static char page[8192] __attribute__((aligned(4096)));
	return syscall(SYS_mprotect, page, 4096, PROT_READ | PROT_EXEC);
}
static long
do_prctl_dumpable(void)
{
	return syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
}
static long
do_setuid(void)
{
	return syscall(SYS_setuid, 0);
}
static long
do_unlink(void)
{
	return syscall(SYS_unlinkat, AT_FDCWD, "/tmp/mj-confine-test", 0);
}
static long
do_dup(void)
{
	return syscall(SYS_dup, 2);
}
static long
do_sendmsg(void)
{
	/* Passing a descriptor to moonjaild (or receiving one) needs the message calls. */
	return syscall(SYS_sendmsg, 2, NULL, 0);
}
static long
do_recvmsg(void)
{
	return syscall(SYS_recvmsg, 2, NULL, 0);
}
static long
do_epoll(void)
{
	return syscall(SYS_epoll_create1, 0);
}
static long
do_prctl_name(void)
{
	return syscall(SYS_prctl, PR_SET_NAME, "x", 0, 0, 0);
}
static long
do_x32_socket(void)
{
	/* The x32 ABI's socket number: another ABI is not a way around the filter. */
	return syscall(0x40000000 | SYS_socket, AF_INET, SOCK_STREAM, 0);
}

static const forbidden forbidden_calls[] = {
    {"socket", do_socket},
    {"connect", do_connect},
    {"bind", do_bind},
    {"execve", do_execve},
    {"fork", do_fork},
    {"clone", do_clone},
    {"ptrace", do_ptrace},
    {"kill another process", do_kill_other},
    {"tgkill another process", do_tgkill_other},
    {"mount", do_mount},
    {"unshare", do_unshare},
    {"mmap PROT_EXEC", do_mmap_exec},
    {"mprotect PROT_EXEC", do_mprotect_exec},
    {"prctl PR_SET_DUMPABLE", do_prctl_dumpable},
    {"prctl PR_SET_NAME", do_prctl_name},
    {"sendmsg", do_sendmsg},
    {"recvmsg", do_recvmsg},
    {"epoll_create1", do_epoll},
    {"setuid", do_setuid},
    {"unlinkat", do_unlink},
    {"dup", do_dup},
    {"x32 socket", do_x32_socket},
};

static bool
call_forbidden(void *arg)
{
	const forbidden *f = arg;
	f->call();
	return false; /* reaching here means the call returned */
}

static void
test_forbidden_syscalls_kill(void **state)
{
	mj_confine_opts o = kill_opts();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(forbidden_calls) / sizeof(forbidden_calls[0]); i++)
		assert_sigsys(run_confined(&o, call_forbidden, (void *)&forbidden_calls[i]),
		              forbidden_calls[i].name);
}

/* A thread that existed before confinement is covered too (TSYNC): it takes the process down. */
static atomic_int thread_go;

static void *
thread_socket(void *arg)
{
	(void)arg;
	while (atomic_load(&thread_go) == 0)
		sched_yield();
	syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
	atomic_store(&thread_go, 2);
	return NULL;
}

static void
test_filter_covers_existing_threads(void **state)
{
	mj_confine_opts o = kill_opts();
	pid_t pid;
	int st;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		mj_confine_report rep;
		char why[200];
		pthread_t t;
		alarm(10);
		if (pthread_create(&t, NULL, thread_socket, NULL) != 0)
			_exit(5);
		if (mj_confine(&o, &rep, why, sizeof(why)) != MJ_OK)
			_exit(4);
		atomic_store(&thread_go, 1);
		while (atomic_load(&thread_go) != 2)
			sched_yield();
		_exit(6); /* the thread's socket call returned */
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_sigsys(st, "socket from a thread created before the filter");
}

/* ---- the other layers, seen with the filter in log mode so each can be observed ---- */

typedef struct layered {
	int file_fd; /* a regular file opened before confinement */
	uid_t uid;
} layered;

/* Names the failed check on stderr, for a readable failure. */
static bool
step(int line)
{
	char msg[64];
	int n = snprintf(msg, sizeof(msg), "layers_hold: check at line %d failed\n", line);
	(void)!write(2, msg, (size_t)n);
	return false;
}

static bool
layers_hold(void *arg)
{
	layered *l = arg;
	struct sigaction sa;
	void *p;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGXFSZ, &sa, NULL);
	/* RLIMIT_FSIZE 0: no byte reaches a file. */
	errno = 0;
	if (write(l->file_fd, "x", 1) != -1 || errno != EFBIG)
		return step(__LINE__);
	/* RLIMIT_NOFILE 0: no new descriptor. */
	errno = 0;
	if (dup(2) != -1 || errno != EMFILE)
		return step(__LINE__);
	/* RLIMIT_NPROC 0, and the uid is an unprivileged one: no new process. */
	errno = 0;
	if (fork() != -1 || errno != EAGAIN)
		return step(__LINE__);
	/* RLIMIT_AS: 1 GiB here. */
	p = mmap(NULL, (size_t)2 << 30, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
#if !defined(__SANITIZE_ADDRESS__)
	if (p != MAP_FAILED)
		return step(__LINE__);
#else
	if (p != MAP_FAILED)
		munmap(p, (size_t)2 << 30);
#endif
	/* The privilege drop cannot be undone, and no capability is left. */
	if (getuid() != l->uid || geteuid() != l->uid || setuid(0) == 0)
		return step(__LINE__);
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
		return step(__LINE__);
	if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0)
		return step(__LINE__);
	return true;
}

static void
test_rlimits_and_privilege_drop(void **state)
{
	char path[] = "/tmp/mj-confine-XXXXXX";
	char root[] = "/tmp/mj-root-XXXXXX";
	mj_confine_opts o;
	layered l;
	int st;

	(void)state;
	if (geteuid() != 0)
		skip();
	memset(&o, 0, sizeof(o));
	o.seccomp_log = true;
	o.address_space = (size_t)1 << 30;
	o.drop_to_user = true;
	o.uid = 65534;
	o.gid = 65534;
	assert_non_null(mkdtemp(root));
	o.chroot_dir = root;
	l.uid = 65534;
	assert_true((l.file_fd = mkstemp(path)) >= 0);
	st = run_confined(&o, layers_hold, &l);
	close(l.file_fd);
	unlink(path);
	rmdir(root);
	assert_exit0(st);
}

/* In a child: caps 0 (CAP_KILL) kept, CAP_SETUID in the bounding set; with bound_permitted
 * also permitted, never effective. Exits 0 when the sets are as documented. */
static bool
caps_as_documented(bool bound_permitted)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	const int keep = CAP_KILL, bound = CAP_SETUID;
	const uint32_t want_eff = 1u << CAP_KILL;
	const uint32_t want_prm = want_eff | (bound_permitted ? 1u << CAP_SETUID : 0);

	if (mj_caps_keep(&keep, 1, &bound, 1, bound_permitted, NULL, 0) != MJ_OK ||
	    syscall(SYS_capget, &hdr, data) != 0)
		return false;
	return data[0].effective == want_eff && data[0].permitted == want_prm &&
	       data[1].effective == 0 && data[1].permitted == 0 && data[0].inheritable == 0 &&
	       prctl(PR_CAPBSET_READ, CAP_SETUID, 0, 0, 0) == 1 &&
	       prctl(PR_CAPBSET_READ, CAP_SETGID, 0, 0, 0) == 0;
}

static void
test_caps_keep(void **state)
{
	int flag, st;
	pid_t pid;

	(void)state;
	if (geteuid() != 0)
		skip(); /* nothing to keep */
	for (flag = 0; flag < 2; flag++) {
		assert_true((pid = fork()) >= 0);
		if (pid == 0)
			_exit(caps_as_documented(flag == 1) ? 0 : 3);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_exit0(st);
	}
}

static void
test_bad_arguments(void **state)
{
	mj_confine_report rep;
	mj_confine_opts o;
	const char *const *names;
	int keep = 64;

	(void)state;
	memset(&o, 0, sizeof(o));
	assert_int_equal(mj_confine(NULL, &rep, NULL, 0), MJ_EINVAL);
	assert_int_equal(mj_confine(&o, NULL, NULL, 0), MJ_EINVAL);
	assert_int_equal(mj_caps_keep(&keep, 1, NULL, 0, false, NULL, 0), MJ_EINVAL);
	keep = -1;
	assert_int_equal(mj_caps_keep(NULL, 0, &keep, 1, false, NULL, 0), MJ_EINVAL);
	/* The documented allowlist names no dangerous call. */
	for (names = mj_confine_allowed_syscalls(); *names != NULL; names++) {
		assert_string_not_equal(*names, "socket");
		assert_string_not_equal(*names, "execve");
		assert_string_not_equal(*names, "openat");
		assert_string_not_equal(*names, "clone");
		assert_string_not_equal(*names, "ptrace");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_steady_state_allowed),
	    cmocka_unit_test(test_forbidden_syscalls_kill),
	    cmocka_unit_test(test_filter_covers_existing_threads),
	    cmocka_unit_test(test_rlimits_and_privilege_drop),
	    cmocka_unit_test(test_caps_keep),
	    cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
