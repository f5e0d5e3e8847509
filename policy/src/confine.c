/* Worker confinement: rlimits, chroot, privilege and capability drop, no_new_privs, seccomp. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "mj/confine.h"

#if defined(__SANITIZE_ADDRESS__)
#define MJ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MJ_ASAN 1
#endif
#endif

/* The steady state of a worker: read and write on the descriptors it already holds (its
 * stream to moonjaild and stderr), futexes for its threads, memory, time, randomness, signals
 * to itself and exit. Each entry is explained in docs/SECURITY.md. mmap, mprotect and tgkill
 * are admitted with argument conditions, added in add_rules. No message calls (sendmsg,
 * recvmsg): descriptors cannot be passed in either direction. */
static const char *const allowed[] = {
    /* I/O on existing descriptors: the stream (read; writev for a reply frame; shutdown at
     * SIGTERM), logs on stderr (write). */
    "read", "write", "writev", "close", "shutdown", "fstat",
    /* Threads that already exist: locks, condition variables, joins and exits. */
    "futex", "sched_yield", "exit", "exit_group", "gettid", "getpid", "restart_syscall",
    /* Memory: malloc arenas, Lua heaps, thread stacks being freed. */
    "brk", "munmap", "mremap", "madvise",
    /* Time: os.time, os.clock, deadlines and the watchdog's tick. */
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday",
    /* glibc draws its malloc key with it on the first allocation (after the filter, in a
     * thread started before it). */
    "getrandom",
    /* The watchdog's signal and sigwait in main. */
    "rt_sigreturn", "rt_sigprocmask", "rt_sigtimedwait", "sigaltstack",
    /* Start-up of a thread created before the filter but scheduled only after it: glibc's
     * per-thread registrations. No new thread can be created: clone is not allowed. */
    "rseq", "set_robust_list",
    /* Conditional: mmap and mprotect without PROT_EXEC, tgkill to this process only. */
    "mmap", "mprotect", "tgkill", NULL};

#ifdef MJ_ASAN
/* Sanitizer builds only: AddressSanitizer's start of a thread (one created before the filter
 * but first scheduled after it) reads the thread's stack bounds with pthread_getattr_np, which
 * asks for its CPU affinity. Seen killing the test suite's confined children. */
static const char *const allowed_asan[] = {"sched_getaffinity", NULL};
#endif

/* Path lookups fail with EPERM instead of killing: glibc touches a few files lazily (malloc
 * reads /proc/sys/vm/overcommit_memory the first time an arena shrinks) and copes with a
 * failure. Opening anything still cannot succeed. */
static const char *const refused[] = {
    "open",  "openat", "openat2",   "creat",      "stat",     "lstat",      "newfstatat",
    "statx", "access", "faccessat", "faccessat2", "readlink", "readlinkat", NULL};

const char *const *
mj_confine_allowed_syscalls(void)
{
	return allowed;
}

static mj_err
fail(char *why, size_t whylen, const char *step, int e)
{
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, "%s: %s", step, strerror(e));
	return MJ_ESYSTEM;
}

static int
set_limit(int resource, rlim_t value)
{
	struct rlimit rl = {value, value};

	return setrlimit(resource, &rl);
}

static int
apply_rlimits(const mj_confine_opts *o, mj_confine_report *r, const char **step)
{
	static const struct {
		int resource;
		const char *name;
	} zero[] = {
	    {RLIMIT_FSIZE, "RLIMIT_FSIZE"},     {RLIMIT_NOFILE, "RLIMIT_NOFILE"},
	    {RLIMIT_NPROC, "RLIMIT_NPROC"},     {RLIMIT_CORE, "RLIMIT_CORE"},
	    {RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"}, {RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"},
	    {RLIMIT_LOCKS, "RLIMIT_LOCKS"},
	};
	size_t i;

	for (i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
		if (set_limit(zero[i].resource, 0) != 0) {
			*step = zero[i].name;
			return -1;
		}
	}
	r->address_space = false;
#ifndef MJ_ASAN
	/* AddressSanitizer reserves terabytes of shadow memory up front, so a sanitizer build
	 * leaves the address space open. */
	if (o->address_space > 0) {
		if (set_limit(RLIMIT_AS, (rlim_t)o->address_space) != 0) {
			*step = "RLIMIT_AS";
			return -1;
		}
		r->address_space = true;
	}
#else
	(void)o;
#endif
	return 0;
}

/* Empties the bounding and ambient sets. It runs before the uid changes, while CAP_SETPCAP is
 * still held; a process without it has nothing in the sets it could use anyway. */
static int
drop_bounding_set(void)
{
	int cap;

	for (cap = 0; cap <= 63; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL && errno != EPERM)
			return -1;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
		return -1;
	return 0;
}

static int
drop_capabilities(void)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	return (int)syscall(SYS_capset, &hdr, data);
}

mj_err
mj_caps_keep(const int *caps, size_t ncaps, const int *bound, size_t nbound, bool bound_permitted,
             char *why, size_t whylen)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	uint64_t mask = 0, bmask;
	size_t i;
	int cap;

	for (i = 0; i < ncaps; i++) {
		if (caps[i] < 0 || caps[i] > 63)
			return MJ_EINVAL;
		mask |= (uint64_t)1 << caps[i];
	}
	bmask = mask;
	for (i = 0; bound != NULL && i < nbound; i++) {
		if (bound[i] < 0 || bound[i] > 63)
			return MJ_EINVAL;
		bmask |= (uint64_t)1 << bound[i];
	}
	for (cap = 0; cap <= 63; cap++) {
		if ((bmask >> cap & 1) == 0 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 &&
		    errno != EINVAL && errno != EPERM)
			return fail(why, whylen, "bounding set", errno);
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
		return fail(why, whylen, "ambient set", errno);
	if (syscall(SYS_capget, &hdr, data) != 0)
		return fail(why, whylen, "capget", errno);
	data[0].effective = data[0].permitted & (uint32_t)mask;
	data[1].effective = data[1].permitted & (uint32_t)(mask >> 32);
	if (!bound_permitted)
		bmask = mask;
	data[0].permitted &= (uint32_t)bmask;
	data[1].permitted &= (uint32_t)(bmask >> 32);
	data[0].inheritable = data[1].inheritable = 0;
	if (syscall(SYS_capset, &hdr, data) != 0)
		return fail(why, whylen, "capset", errno);
	return MJ_OK;
}

static int
drop_user(const mj_confine_opts *o)
{
	uid_t ru, eu, su;

	if (setgroups(0, NULL) != 0 || setresgid(o->gid, o->gid, o->gid) != 0 ||
	    setresuid(o->uid, o->uid, o->uid) != 0)
		return -1;
	/* A drop that can be undone is no drop. */
	if (getresuid(&ru, &eu, &su) != 0 || ru != o->uid || eu != o->uid || su != o->uid ||
	    (o->uid != 0 && setuid(0) == 0)) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

static int
add_rules(scmp_filter_ctx ctx, const char *const *names, uint32_t action)
{
	int rc;

	for (; *names != NULL; names++) {
		int nr = seccomp_syscall_resolve_name(*names);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		if (strcmp(*names, "mmap") == 0 || strcmp(*names, "mprotect") == 0) {
			rc = seccomp_rule_add(ctx, action, nr, 1,
			                      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
		} else if (strcmp(*names, "tgkill") == 0) {
			rc = seccomp_rule_add(ctx, action, nr, 1,
			                      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
		} else {
			rc = seccomp_rule_add(ctx, action, nr, 0);
		}
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
load_seccomp(bool log_only)
{
	uint32_t deny = log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
	scmp_filter_ctx ctx;
	int rc;

	if ((ctx = seccomp_init(deny)) == NULL)
		return -ENOMEM;
	/* Every thread (nng's, the executors, the watchdog) gets the filter, and a syscall
	 * through another ABI (int 0x80, x32) ends the process too. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) != 0 ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) != 0 ||
	    (rc = add_rules(ctx, allowed, SCMP_ACT_ALLOW)) != 0 ||
	    (rc = add_rules(ctx, refused, SCMP_ACT_ERRNO(EPERM))) != 0)
		goto out;
#ifdef MJ_ASAN
	if ((rc = add_rules(ctx, allowed_asan, SCMP_ACT_ALLOW)) != 0)
		goto out;
#endif
	rc = seccomp_load(ctx);
out:
	seccomp_release(ctx);
	return rc;
}

mj_err
mj_confine(const mj_confine_opts *o, mj_confine_report *r, char *why, size_t whylen)
{
	const char *step = NULL;
	int rc;

	if (o == NULL || r == NULL)
		return MJ_EINVAL;
	memset(r, 0, sizeof(*r));
	if (apply_rlimits(o, r, &step) != 0)
		return fail(why, whylen, step, errno);
	if (o->chroot_dir != NULL) {
		if (chdir(o->chroot_dir) != 0)
			return fail(why, whylen, "chdir", errno);
		if (chroot(".") == 0) {
			r->chrooted = true;
		} else if (errno == EPERM) {
			r->chroot_errno = errno; /* no CAP_SYS_CHROOT: the caller logs it */
		} else {
			return fail(why, whylen, "chroot", errno);
		}
		if (chdir("/") != 0)
			return fail(why, whylen, "chdir /", errno);
	}
	if (drop_bounding_set() != 0)
		return fail(why, whylen, "bounding set", errno);
	if (o->drop_to_user) {
		if (drop_user(o) != 0)
			return fail(why, whylen, "drop user", errno);
		r->dropped_user = true;
	}
	r->uid = getuid();
	r->gid = getgid();
	if (drop_capabilities() != 0)
		return fail(why, whylen, "drop capabilities", errno);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return fail(why, whylen, "no_new_privs", errno);
	/* Not dumpable: no core, and no ptrace attach even from the same uid. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return fail(why, whylen, "dumpable", errno);
	if ((rc = load_seccomp(o->seccomp_log)) != 0)
		return fail(why, whylen, "seccomp", -rc);
	return MJ_OK;
}
