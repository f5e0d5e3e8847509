/* Process confinement for workers: rlimits, privilege drop, no_new_privs and a seccomp allowlist.
 */
#ifndef MJ_CONFINE_H
#define MJ_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "mj/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What mj_confine applies. Zero-initialise, then set what is wanted. */
typedef struct mj_confine_opts {
	size_t address_space;   /* RLIMIT_AS in bytes; 0 leaves it unchanged */
	const char *chroot_dir; /* an empty directory to make the root, or NULL */
	bool drop_to_user;      /* switch to uid/gid (needs root); else only capabilities go */
	uid_t uid;
	gid_t gid;
	bool seccomp_log; /* debugging only: log forbidden syscalls instead of killing */
} mj_confine_opts;

/* What mj_confine did beyond the mandatory steps, for the caller's log. */
typedef struct mj_confine_report {
	bool chrooted;      /* false when chroot was refused (no CAP_SYS_CHROOT) */
	bool address_space; /* RLIMIT_AS was set (not under AddressSanitizer) */
	bool dropped_user;  /* now runs as opts->uid/gid */
	int chroot_errno;   /* why chroot failed, when it did */
	uid_t uid, gid;     /* the ids the process runs under from now on */
} mj_confine_report;

/* Confines the calling process for good, in this order: rlimits (address space, file size 0,
 * no new files, no new processes, no core dumps), chroot into opts->chroot_dir when allowed,
 * the privilege drop (supplementary groups, gid, uid when opts->drop_to_user, then every
 * capability), PR_SET_NO_NEW_PRIVS and not dumpable, and last the seccomp allowlist for every
 * thread (TSYNC) with kill-process as the default action. Call it once, after every thread
 * and file descriptor the process will ever need exists: no thread or descriptor can be
 * created afterwards. Returns MJ_OK and fills *report, or MJ_ESYSTEM with the failed step in why;
 * after a failure the process is partly confined and must exit. */
mj_err mj_confine(const mj_confine_opts *opts, mj_confine_report *report, char *why, size_t whylen);

/* Keeps only the capabilities listed in caps (CAP_* numbers) in this thread's permitted and
 * effective sets, and only those and the ones in bound in its bounding set (what a program it
 * execs as root starts with); none inheritable or ambient. With bound_permitted, the ones in
 * bound stay in the permitted set too, though not in the effective one: under no_new_privs a
 * program exec'd as root starts with no more than its parent's permitted set. Threads created
 * afterwards inherit them. The bounding set is narrowed only with CAP_SETPCAP (without it, the
 * permitted set still is). bound may be NULL. MJ_EINVAL for a bad number; MJ_ESYSTEM with the
 * reason in why. */
mj_err mj_caps_keep(const int *caps, size_t ncaps, const int *bound, size_t nbound,
                    bool bound_permitted, char *why, size_t whylen);

/* The syscalls the allowlist admits, by name, NULL-terminated; for documentation and tests. */
const char *const *mj_confine_allowed_syscalls(void);

#ifdef __cplusplus
}
#endif

#endif
