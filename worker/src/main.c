/* moonjail-worker: the process that runs tenants' engines for the supervisor, over one stream. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mj/confine.h"
#include "mj/text.h"
#include "worker.h"

#include <linux/capability.h>
#include <sys/syscall.h>

/* SIGTERM lets running calls finish for at most this long. */
#define DRAIN_MS 10000

static const char usage[] =
    "usage: moonjail-worker --fd N --id N [options]\n"
    "Runs tenants' Lua engines for moonjaild. Started only by the supervisor (fork + exec),\n"
    "which hands it one end of a private stream socket: it reads framed WorkerRequests\n"
    "(internal.proto) and answers each with a Response, and holds no configuration: each\n"
    "request carries its tenant's policy.\n"
    "\n"
    "options:\n"
    "  --fd N                the inherited stream socket to the supervisor\n"
    "  --id N                this worker's number, shown in logs\n"
    "  --executors K         threads that run engines (default: number of CPUs, at least 2)\n"
    "  --memory-budget SIZE  Lua heap of all engines before idle ones are evicted, least\n"
    "                        recently used first (default 1G; suffixes K M G KiB MiB GiB)\n"
    "  --chroot DIR          an empty directory to make the root before the first request\n"
    "  --user UID:GID        the unprivileged ids to switch to (when started as root)\n"
    "  -h, --help            this text\n"
    "\n"
    "Before the first request the worker confines itself for good: rlimits, chroot, the\n"
    "privilege drop, no_new_privs and a seccomp allowlist (docs/SECURITY.md).\n"
    "Logs go to stderr, one line per event. SIGTERM or SIGINT: refuse new calls, let queued\n"
    "and running calls finish, exit 0. The end of the stream: exit 1.\n";

static unsigned log_id;

void
wk_log_set_id(unsigned id)
{
	log_id = id;
}

void
wk_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n, m;

	n = snprintf(line, sizeof(line), "moonjail-worker[%u]: ", log_id);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m < sizeof(line) - (size_t)n - 1 ? m : (int)(sizeof(line) - (size_t)n - 2);
	line[n++] = '\n';
	/* One write per line keeps lines from different threads whole. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static int
die_usage(const char *msg, const char *arg)
{
	fprintf(stderr, "moonjail-worker: %s%s%s\n%s", msg, arg ? ": " : "", arg ? arg : "", usage);
	return 2;
}

static bool
parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	uint64_t v;

	if (s == NULL || mj_parse_u64(s, &v) != MJ_OK || v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

/* Capabilities belong to each thread, and a thread starts with its creator's: before any
 * thread exists, keep only what confinement still uses (chroot, and the switch to --user),
 * which it then drops in this thread. The switch to --user clears every thread's; without it
 * (a worker in a user namespace) the other threads keep at most CAP_SYS_CHROOT, in that
 * namespace, where the filter refuses chroot anyway. */
static int
narrow_capabilities(const mj_confine_opts *o)
{
	int keep[3], n = 0;
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	char why[200];

	if (syscall(SYS_capget, &hdr, data) != 0) {
		wk_log("event=error what=capget error=\"%s\"", strerror(errno));
		return -1;
	}
	if (data[0].permitted == 0 && data[1].permitted == 0)
		return 0; /* an unprivileged worker: nothing to narrow */
	if (o->chroot_dir != NULL)
		keep[n++] = CAP_SYS_CHROOT;
	if (o->drop_to_user) {
		keep[n++] = CAP_SETUID;
		keep[n++] = CAP_SETGID;
	}
	if (mj_caps_keep(keep, (size_t)n, NULL, 0, false, why, sizeof(why)) != MJ_OK) {
		wk_log("event=error what=capabilities error=\"%s\"", why);
		return -1;
	}
	return 0;
}

/* Set once the filter is in place. */
static bool confined;

/* Confinement runs with the stream already connected (it was made before exec), after every
 * thread exists (the executors, the guard and the engine watchdog; TSYNC covers them and no
 * thread may start later), and before the first request is read. */
static int
worker_confine(const mj_confine_opts *opts)
{
	mj_confine_report rep;
	char why[256];

	confined = true; /* a failure may leave part of it in place */
	if (mj_confine(opts, &rep, why, sizeof(why)) != MJ_OK) {
		wk_log("event=error what=confine error=\"%s\"", why);
		return -1;
	}
	if (opts->chroot_dir != NULL && !rep.chrooted)
		wk_log(
		    "event=warning what=chroot error=\"%s\" note=\"the filesystem stays visible; "
		    "seccomp still refuses every path lookup\"",
		    strerror(rep.chroot_errno));
	wk_log("event=confined uid=%ld gid=%ld chroot=%s address_space=%s seccomp=%s",
	       (long)rep.uid, (long)rep.gid, rep.chrooted ? "yes" : "no",
	       rep.address_space ? "limited" : "open", opts->seccomp_log ? "log" : "kill");
	return 0;
}

/* Descriptors a worker does not need are closed: what remains at confinement is stderr and
 * the stream. stdin and stdout become /dev/null so a stray write cannot reach the supervisor's
 * terminal or pipe. */
static int
close_inherited(int keep)
{
	int fd;

	if ((keep > 3 && syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u) != 0) ||
	    syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) != 0) {
		for (fd = 3; fd < 1024; fd++)
			if (fd != keep)
				close(fd);
	}
	if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		return -1;
	if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0) {
		close(fd);
		return -1;
	}
	if (fd > STDERR_FILENO)
		close(fd);
	return 0;
}

static bool
parse_ids(const char *s, mj_confine_opts *o)
{
	char buf[64], *colon;
	unsigned u, g;

	if (s == NULL || strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	if ((colon = strchr(buf, ':')) == NULL)
		return false;
	*colon = '\0';
	if (!parse_uint(buf, 1, 4294967294u, &u) || !parse_uint(colon + 1, 1, 4294967294u, &g))
		return false;
	o->uid = (uid_t)u;
	o->gid = (gid_t)g;
	o->drop_to_user = true;
	return true;
}

/* The address-space ceiling: the engines' budget twice over (fragmentation) plus room for
 * thread stacks and malloc arenas, saturating instead of wrapping. */
static size_t
address_space_for(size_t budget)
{
	const size_t room = (size_t)2 << 30;

	if (budget > (SIZE_MAX - room) / 2)
		return 0;
	return budget * 2 + room;
}

/* The stream must be a connected socket that only this process and moonjaild hold. */
static bool
stream_ok(int fd)
{
	struct stat st;
	int type = 0;
	socklen_t tl = sizeof(type);

	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
	       getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM;
}

int
main(int argc, char **argv)
{
	wk_worker w;
	mj_confine_opts copts;
	unsigned fd = 0;
	bool have_id = false, have_fd = false;
	sigset_t sigs;
	size_t nengines;
	long ncpu;
	int sig, a, rc = 1;

	memset(&w, 0, sizeof(w));
	memset(&copts, 0, sizeof(copts));
#ifdef MJ_SECCOMP_LOG
	copts.seccomp_log = true;
#endif
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	w.nexec = ncpu < 2 ? 2 : ncpu > 256 ? 256 : (unsigned)ncpu;
	w.budget = (size_t)1 << 30;
	for (a = 1; a < argc; a++) {
		const char *o = argv[a];
		const char *v = a + 1 < argc ? argv[a + 1] : NULL;
		if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			fputs(usage, stdout);
			return 0;
		} else if (strcmp(o, "--fd") == 0 && v) {
			if (!parse_uint(v, 3, 65535, &fd))
				return die_usage("bad descriptor (3-65535)", v);
			have_fd = true, a++;
		} else if (strcmp(o, "--id") == 0 && v) {
			if (!parse_uint(v, 0, 1000000, &w.id))
				return die_usage("bad worker id", v);
			have_id = true, a++;
		} else if (strcmp(o, "--executors") == 0 && v) {
			if (!parse_uint(v, 1, 256, &w.nexec))
				return die_usage("bad executor count (1-256)", v);
			a++;
		} else if (strcmp(o, "--memory-budget") == 0 && v) {
			if (mj_parse_size(v, &w.budget) != MJ_OK || w.budget == 0)
				return die_usage("bad size", v);
			a++;
		} else if (strcmp(o, "--chroot") == 0 && v) {
			copts.chroot_dir = v, a++;
		} else if (strcmp(o, "--user") == 0 && v) {
			if (!parse_ids(v, &copts))
				return die_usage("bad --user (UID:GID, not 0)", v);
			a++;
		} else {
			return die_usage("unknown or incomplete option", o);
		}
	}
	if (!have_fd || !have_id)
		return die_usage("--fd and --id are required", NULL);
	wk_log_set_id(w.id);
	copts.address_space = address_space_for(w.budget);
	w.fd = (int)fd;
	if (!stream_ok(w.fd)) {
		wk_log("event=error what=stream fd=%d error=\"not a stream socket\"", w.fd);
		return 1;
	}
	if (close_inherited(w.fd) != 0) {
		wk_log("event=error what=descriptors error=\"%s\"", strerror(errno));
		return 1;
	}
	/* glibc re-reads /etc/localtime on every mktime unless TZ is set; with TZ set the zone is
	 * read once here, before the filesystem goes away. */
	if (getenv("TZ") == NULL)
		setenv("TZ", ":/etc/localtime", 1);
	tzset();

	/* Blocked before any thread starts, so every thread inherits the mask and main alone
	 * takes the signals with sigwait. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Once confined the file size limit is 0: a log line written to a regular file (stderr
	 * not a pipe, as when run by hand) then fails with EFBIG instead of killing the worker. */
	signal(SIGXFSZ, SIG_IGN);
	if (narrow_capabilities(&copts) != 0)
		return 1;

	{
		/* Held for a few queue operations at a time by executors on other cores:
		 * spinning briefly beats a futex sleep and wake-up. */
		pthread_mutexattr_t ma;
		int rv;

		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
		rv = pthread_mutex_init(&w.mu, &ma);
		pthread_mutexattr_destroy(&ma);
		if (rv != 0)
			return 1;
	}
	if (pthread_cond_init(&w.work_cv, NULL) != 0)
		goto fail_work_cv;
	if (pthread_cond_init(&w.idle_cv, NULL) != 0)
		goto fail_idle_cv;
	if (wk_table_init(&w) != MJ_OK)
		goto fail_table;
	if (mj_engine_global_init() != MJ_OK) {
		wk_log("event=error what=engine_global_init");
		goto fail_engine;
	}
	if (wk_serve_init(&w) != MJ_OK)
		goto fail_engine;
	if (worker_confine(&copts) != 0)
		goto fail_serve;
	wk_serve_start(&w);
	wk_log("event=start pid=%ld executors=%u memory_budget=%zu", (long)getpid(), w.nexec,
	       w.budget);

	for (;;) {
		if (sigwait(&sigs, &sig) == 0)
			break;
	}
	pthread_mutex_lock(&w.mu);
	nengines = w.nengines;
	pthread_mutex_unlock(&w.mu);
	wk_log("event=shutdown signal=%d engines=%zu", sig, nengines);
	if (!wk_serve_stop(&w, DRAIN_MS)) {
		/* A call is stuck past its limits; the process exit is what ends it. */
		wk_log("event=shutdown_forced reason=calls_still_running");
		_exit(1);
	}
	rc = 0;
	wk_log("event=exit status=0");

fail_serve:
	if (rc != 0)
		wk_serve_stop(&w, 0);
	wk_serve_fini(&w);
fail_engine:
	wk_table_fini(&w);
fail_table:
	pthread_cond_destroy(&w.idle_cv);
fail_idle_cv:
	pthread_cond_destroy(&w.work_cv);
fail_work_cv:
	pthread_mutex_destroy(&w.mu);
	/* Exit handlers may make syscalls the filter forbids (LeakSanitizer's exit-time check
	 * stops the world with ptrace, for one): a confined worker skips them. Nothing is
	 * buffered: stdout is /dev/null and stderr unbuffered. */
	if (confined)
		_exit(rc);
	return rc;
}
