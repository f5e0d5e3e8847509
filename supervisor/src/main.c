/* moonjaild: the supervisor. Listens for clients, runs workers, routes, never runs Lua. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mj/confine.h"
#include "mj/text.h"
#include "supervisor.h"

sv_state sv;

static const char usage[] =
    "usage: moonjaild [options]\n"
    "Runs untrusted Lua 5.4 scripts for many tenants: listens for clients (protobuf over\n"
    "nng REQ/REP), starts worker processes, routes each tenant to one worker. Runs with no\n"
    "config file, on embedded defaults.\n"
    "\n"
    "options:\n"
    "  --listen URL            listen on URL (ipc:// or tcp://; repeatable). Default:\n"
    "                          ipc://RUNTIME_DIR/moonjail.sock\n"
    "  --workers N             worker processes (default: one per CPU)\n"
    "  --executors N           executor threads per worker (default 2)\n"
    "  --io-threads N          threads nng runs moonjaild's socket callbacks on (default 2;\n"
    "                          1-16, an odd N rounded up)\n"
    "  --max-connections N     client connections at once (default 10000, lowered to what\n"
    "                          the open-file limit allows); past it, calls are refused and\n"
    "                          the connection is closed a second later (16 such at most;\n"
    "                          more are closed at once)\n"
    "  --worker-memory SIZE    Lua heap budget per worker before idle engines are evicted\n"
    "                          (default 1G)\n"
    "  --memory-limit SIZE     default Lua heap per engine (default 16M; K M G KiB MiB GiB)\n"
    "  --instruction-limit N   default VM instructions per call (default 100000000; 0 = none)\n"
    "  --timeout-ms N          default wall clock per call (default 1000; 0 = none)\n"
    "  --output-limit SIZE     default print output per call (default 1M)\n"
    "  --source-limit SIZE     default source per call and per load() (default 1M; requests\n"
    "                          are at most 16M)\n"
    "  --result-bytes SIZE     default bytes of strings in a call's results (default 1M)\n"
    "  --result-depth N        default nesting of returned tables (default 32; 1-64)\n"
    "  --result-items N        default values in a call's results, nested ones counted\n"
    "                          (default 100000)\n"
    "  --deadline-margin-ms N  the hard deadline is the timeout plus this margin (default\n"
    "                          2000); a worker past it is killed and replaced\n"
    "  --config FILE           tenant policies (INI: [defaults] and [tenant:NAME] sections;\n"
    "                          see docs/supervisor.md); limit flags override [defaults]\n"
    "  --runtime-dir DIR       private directory for sockets (default /run/moonjail as root,\n"
    "                          else $XDG_RUNTIME_DIR/moonjail or /tmp/moonjail-UID)\n"
    "  --worker-bin PATH       the worker program (default: moonjail-worker next to moonjaild)\n"
    "  --group NAME            also let group NAME reach the ipc socket (directory 0750,\n"
    "                          socket 0660; default: the owner only, 0700 and 0600)\n"
    "  --insecure-tcp          allow plain tcp:// listeners on non-loopback addresses\n"
    "  --worker-user NAME      as root: the account workers switch to before their first\n"
    "                          request (default moonjail, else nobody)\n"
    "  --no-namespaces         start workers in the host's namespaces (default: new user\n"
    "                          (unless root), PID, network, IPC, mount and UTS namespaces,\n"
    "                          with a logged fallback when the kernel refuses them)\n"
    "  --no-spare              do not keep a started spare worker to replace a dead one\n"
    "  --quarantine-workers N  the quarantine pool (default 1; 0 turns quarantine off)\n"
    "  --quarantine-strikes N  worker deaths with a tenant's calls in flight, within the\n"
    "                          window, that quarantine it (default 3; 1-16)\n"
    "  --quarantine-window-ms N  (default 60000)\n"
    "  --quarantine-ms N       how long a quarantine lasts (default 300000)\n"
    "  --log-format text|json  log format on stderr (default text)\n"
    "  -h, --help              this text\n"
    "\n"
    "signals: SIGTERM/SIGINT drain in-flight requests, then exit; SIGHUP reloads the config\n"
    "file (a bad file is logged and the previous policies stay).\n";

static int
die_usage(const char *msg, const char *arg)
{
	fprintf(stderr, "moonjaild: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	fprintf(stderr, "try 'moonjaild --help'\n");
	return 2;
}

static int
parse_int(const char *s, int lo, int hi, int *out)
{
	uint64_t v;

	if (mj_parse_u64(s, &v) != MJ_OK || v < (uint64_t)lo || v > (uint64_t)hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* A plain tcp:// listener is refused off loopback: this transport has no authentication. */
static bool
tcp_loopback(const char *url)
{
	const char *host = strstr(url, "://") + 3;
	size_t n;

	/* 127.x.y.z as a literal address only: a name such as 127.example may resolve anywhere. */
	if (strncmp(host, "127.", 4) == 0) {
		n = strspn(host, "0123456789.");
		return host[n] == ':' || host[n] == '\0';
	}
	return strncmp(host, "localhost:", 10) == 0 || strncmp(host, "[::1]:", 6) == 0;
}

static int
make_dir(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) != 0 && errno != EEXIST)
		return -1;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
		errno = EPERM;
		return -1;
	}
	return chmod(path, mode);
}

/* Removes a socket file left by a dead server; false when a live server listens there. The
 * live one is spoken to as a REQ peer through the SP handshake before the hang-up: a hang-up
 * inside the handshake stalls nng 1.5.2's listener (see listen.c). nng's own listener would
 * probe a live path with a bare connect and close, so moonjaild must not try to listen there. */
static bool
remove_stale_socket(const char *url)
{
	static const unsigned char hello[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0};
	struct timeval tv = {1, 0};
	struct sockaddr_un sa;
	struct stat st;
	unsigned char reply[8];
	const char *path;
	size_t got = 0;
	bool live = false;
	ssize_t n;
	int fd;

	if (strncmp(url, "ipc://", 6) != 0)
		return true;
	path = url + 6;
	if (strlen(path) >= sizeof(sa.sun_path) || lstat(path, &st) != 0)
		return true;
	if (!S_ISSOCK(st.st_mode)) {
		/* nng would replace it with its socket. */
		fprintf(stderr, "moonjaild: %s exists and is not a socket\n", path);
		return false;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return true;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		/* Only a socket nobody listens on is stale: never remove another kind of file,
		 * and leave anything that answers otherwise (a full backlog, no permission) to
		 * refuse the start. */
		if (errno == ECONNREFUSED)
			unlink(path);
		else if (errno != ENOENT) {
			live = true;
			fprintf(stderr, "moonjaild: cannot check %s: %s\n", path, strerror(errno));
		}
	} else {
		live = true;
		fprintf(stderr, "moonjaild: a server already listens on %s\n", path);
		if (send(fd, hello, sizeof(hello), MSG_NOSIGNAL) == (ssize_t)sizeof(hello))
			while (got < sizeof(reply) &&
			       (n = recv(fd, reply + got, sizeof(reply) - got, 0)) > 0)
				got += (size_t)n;
	}
	close(fd);
	return !live;
}

static const char *
default_runtime_dir(char *buf, size_t cap)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (geteuid() == 0)
		snprintf(buf, cap, "/run/moonjail");
	else if (xdg != NULL && *xdg == '/')
		snprintf(buf, cap, "%s/moonjail", xdg);
	else
		snprintf(buf, cap, "/tmp/moonjail-%u", (unsigned)geteuid());
	return buf;
}

static const char *
default_worker_bin(char *buf, size_t cap)
{
	char self[PATH_MAX - 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n <= 0)
		return "moonjail-worker";
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) != NULL)
		*slash = '\0';
	snprintf(buf, cap, "%s/moonjail-worker", self);
	return buf;
}

static void
reload(void)
{
	char err[300];
	sv_policies *pol = sv_policies_load(sv.cfg.config_file, err, sizeof(err));

	if (pol == NULL) {
		sv_log("reload-failed", "reason=\"%s\" kept=previous", err);
		return;
	}
	sv_log("reload", "config=%s tenants=%zu", sv.cfg.config_file ? sv.cfg.config_file : "none",
	       sv_policies_count(pol));
	sv_policies_install(pol);
}

static void
cleanup_dirs(void)
{
	rmdir(sv.chroot_dir);
	rmdir(sv.worker_dir);
}

/* Whether id is mapped in this process's user namespace, by /proc/self/uid_map or gid_map
 * (map). Unreadable: assumed mapped. */
static bool
id_mapped(const char *map, unsigned long id)
{
	unsigned long inside, outside, count;
	bool mapped = false;
	FILE *f = fopen(map, "re");

	if (f == NULL)
		return true;
	while (!mapped && fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3)
		mapped = id >= inside && id - inside < count;
	fclose(f);
	return mapped;
}

/* As root, workers switch to an unprivileged account after connecting: the one named, else
 * "moonjail", else "nobody". Root itself is refused, and so is an account the user namespace
 * moonjaild runs in does not map (root of `unshare -r`, say): no worker could switch to it. */
static int
resolve_worker_user(void)
{
	const char *name = sv.cfg.worker_user != NULL ? sv.cfg.worker_user : "moonjail";
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	if ((pw = getpwnam(name)) == NULL && sv.cfg.worker_user == NULL)
		pw = getpwnam(name = "nobody");
	if (pw == NULL || pw->pw_uid == 0 || pw->pw_gid == 0) {
		fprintf(stderr, "moonjaild: worker user %s: %s\n", name,
		        pw == NULL ? "no such account" : "must not be root");
		return -1;
	}
	if (!id_mapped("/proc/self/uid_map", pw->pw_uid) ||
	    !id_mapped("/proc/self/gid_map", pw->pw_gid)) {
		fprintf(
		    stderr,
		    "moonjaild: worker user %s (uid %lu, gid %lu) is not mapped in the user "
		    "namespace moonjaild runs in, so no worker could switch to it; map it, name "
		    "a mapped account with --worker-user, or run moonjaild as a user other than "
		    "root\n",
		    name, (unsigned long)pw->pw_uid, (unsigned long)pw->pw_gid);
		return -1;
	}
	sv.drop_user = true;
	sv.worker_uid = pw->pw_uid;
	sv.worker_gid = pw->pw_gid;
	return 0;
}

/* Seconds the teardown after a drain may take. Every call has been answered by then; nng's
 * teardown has been seen to hang now and then after workers were killed under load (not yet
 * understood), and a service asked to stop must stop. */
#define TEARDOWN_S 5

static atomic_bool router_stopped;

static void *
teardown_watchdog(void *arg)
{
	struct timespec ts = {TEARDOWN_S, 0};

	(void)arg;
	nanosleep(&ts, NULL);
	if (atomic_load(&router_stopped))
		return NULL;
	sv_log("stop", "clean=0 reason=\"nng teardown took over %d s; workers die with us\"",
	       TEARDOWN_S);
	sv_log_stop();
	_exit(0);
	return NULL;
}

/* Whether a tcp listener asks for a port below 1024. */
static bool
low_tcp_port(void)
{
	const char *u, *colon;
	int i;

	for (i = 0; i < sv.cfg.nlisten; i++) {
		u = sv.cfg.listen[i];
		if (strncmp(u, "tcp", 3) == 0 && (colon = strrchr(u, ':')) != NULL &&
		    atoi(colon + 1) > 0 && atoi(colon + 1) < 1024)
			return true;
	}
	return false;
}

static const struct {
	int cap;
	const char *name;
} cap_names[] = {
    {CAP_KILL, "kill"},
    {CAP_SYS_ADMIN, "sys_admin"},
    {CAP_CHOWN, "chown"},
    {CAP_NET_BIND_SERVICE, "net_bind_service"},
    {CAP_SETUID, "setuid"},
    {CAP_SETGID, "setgid"},
    {CAP_SYS_CHROOT, "sys_chroot"},
};

/* The names of the capabilities of cap_names in mask, comma-separated ("none" for none). */
static void
cap_list(uint64_t mask, char *out, size_t cap)
{
	size_t i, len = 0;

	out[0] = '\0';
	for (i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
		if ((mask >> cap_names[i].cap & 1) != 0 && len < cap)
			len += (size_t)snprintf(out + len, cap - len, "%s%s", len > 0 ? "," : "",
			                        cap_names[i].name);
	if (len == 0)
		snprintf(out, cap, "none");
}

/* What moonjaild holds when it runs as root: namespaces for workers (CAP_SYS_ADMIN, unless
 * --no-namespaces), killing workers that run under another uid (CAP_KILL), and for its
 * listeners, giving the socket to --group (CAP_CHOWN) and a port below 1024
 * (CAP_NET_BIND_SERVICE) when asked for. A worker exec'd as root starts with moonjaild's
 * bounding set, so CAP_SETUID, CAP_SETGID and CAP_SYS_CHROOT (its chroot and switch to
 * --worker-user) stay in the bounding set only. Under no_new_privs (systemd's
 * NoNewPrivileges=, Docker's no-new-privileges, Kubernetes' allowPrivilegeEscalation: false)
 * an exec'd program starts with no more than its parent's permitted set, so those three stay
 * permitted too, though not effective. Capabilities belong to each thread: this runs before
 * nng starts any, so every thread of the process has only these. -1 when workers could not
 * switch to their user (CAP_SETUID or CAP_SETGID out of their reach): each would die at start. */
static int
drop_own_privileges(void)
{
	static const int bound[] = {CAP_SETUID, CAP_SETGID, CAP_SYS_CHROOT};
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	const uint64_t need = 1ull << CAP_SETUID | 1ull << CAP_SETGID;
	uint64_t eff, prm, reach = 0;
	char held[160], also[64], missing[64];
	bool nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
	int keep[8];
	size_t n = 0, i;
	char why[200];

	if (geteuid() != 0)
		return 0;
	keep[n++] = CAP_KILL;
	if (sv.cfg.namespaces)
		keep[n++] = CAP_SYS_ADMIN;
	if (sv.cfg.group != NULL)
		keep[n++] = CAP_CHOWN;
	if (low_tcp_port())
		keep[n++] = CAP_NET_BIND_SERVICE;
	if (mj_caps_keep(keep, n, bound, sizeof(bound) / sizeof(bound[0]), nnp, why, sizeof(why)) !=
	    MJ_OK)
		sv_log("warning", "what=capabilities err=\"%s\"", why);
	/* What this process and the workers it execs really have: a service manager or a
	 * container may have withheld some. */
	if (syscall(SYS_capget, &hdr, data) != 0)
		return 0;
	eff = (uint64_t)data[1].effective << 32 | data[0].effective;
	prm = (uint64_t)data[1].permitted << 32 | data[0].permitted;
	for (i = 0; i < sizeof(bound) / sizeof(bound[0]); i++)
		if (prctl(PR_CAPBSET_READ, bound[i], 0, 0, 0) == 1 &&
		    (!nnp || (prm >> bound[i] & 1) != 0))
			reach |= 1ull << bound[i];
	cap_list(eff, held, sizeof(held));
	cap_list(reach, also, sizeof(also));
	sv_log("capabilities", "held=%s %s=%s no_new_privs=%d", held,
	       nnp ? "permitted_also" : "bounding_also", also, nnp ? 1 : 0);
	if ((reach & need) != need) {
		cap_list(need & ~reach, missing, sizeof(missing));
		fprintf(
		    stderr,
		    "moonjaild: workers started as root switch to their user (--worker-user) and "
		    "need CAP_SETUID and CAP_SETGID for it, and moonjaild's %s lacks %s: every "
		    "worker would die at start. Give moonjaild those capabilities (systemd: "
		    "CapabilityBoundingSet=, Docker: --cap-add) or run it as an unprivileged "
		    "user\n",
		    nnp ? "permitted set (it runs under no_new_privs)" : "bounding set", missing);
		return -1;
	}
	if ((reach >> CAP_SYS_CHROOT & 1) == 0)
		sv_log("warning", "what=capabilities err=\"no CAP_SYS_CHROOT for workers\" "
		                  "note=\"workers cannot chroot into their empty directory; the "
		                  "rest of their confinement still applies\"");
	return 0;
}

/* Descriptors moonjaild keeps for itself beside its clients' connections: nng's, the logger's,
 * the listeners', the next worker start's (made ready), and the connections past the cap that
 * are being answered; and per worker process its link, its log pipe and two to spare. */
#define FD_RESERVE (64 + SV_OVER_MAX)
#define FD_RESERVE_PER_WORKER 4
#define DEFAULT_CONNECTIONS 10000

/* Raises the soft open-file limit to the hard one and fits max_connections under it with the
 * reserve to spare, so that clients holding every connection they may still leave moonjaild
 * the descriptors to replace a worker. Sets *fds to the limit in force. 0, or 2 (after a
 * message) when the limit leaves no room for a single connection. */
static int
fit_connections(long *fds)
{
	struct rlimit rl;
	long reserve = FD_RESERVE + FD_RESERVE_PER_WORKER *
	                                (long)(sv.cfg.nworkers + sv.cfg.quarantine_workers + 1),
	     room;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		rl.rlim_cur = rl.rlim_max = 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = {rl.rlim_max, rl.rlim_max};

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl.rlim_cur = up.rlim_cur;
	}
	*fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)INT_MAX ? INT_MAX
	                                                                     : (long)rl.rlim_cur;
	room = *fds - reserve;
	if (room < 1) {
		fprintf(
		    stderr,
		    "moonjaild: the open-file limit (%ld) leaves no room for client connections "
		    "beside the %ld descriptors moonjaild keeps for itself and its workers; "
		    "raise it (ulimit -n) or lower --workers\n",
		    *fds, reserve);
		return 2;
	}
	if (sv.cfg.max_connections == 0) {
		sv.cfg.max_connections =
		    (int)(room < DEFAULT_CONNECTIONS ? room : DEFAULT_CONNECTIONS);
	} else if (sv.cfg.max_connections > room) {
		sv_log("warning",
		       "what=\"max_connections lowered to fit the open-file limit\" requested=%d "
		       "max_connections=%ld open_files=%ld",
		       sv.cfg.max_connections, room, *fds);
		sv.cfg.max_connections = (int)room;
	}
	return 0;
}

static int
parse_args(int argc, char **argv, char *rtbuf, size_t rtcap, char *wbuf, size_t wcap)
{
	sv_config *c = &sv.cfg;
	const char *want;
	char msg[80];
	uint64_t u;
	int a, lim;

	for (a = 1; a < argc; a++) {
		const char *o = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
		if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			fputs(usage, stdout);
			exit(0);
		} else if (strcmp(o, "--insecure-tcp") == 0) {
			c->insecure_tcp = true;
			continue;
		} else if (strcmp(o, "--no-namespaces") == 0) {
			c->namespaces = false;
			continue;
		} else if (strcmp(o, "--no-spare") == 0) {
			c->spare = false;
			continue;
		}
		if (v == NULL)
			return die_usage("unknown option or missing value", o);
		a++;
		if (strcmp(o, "--listen") == 0) {
			if (c->nlisten == SV_MAX_LISTEN)
				return die_usage("too many --listen options", NULL);
			c->listen[c->nlisten++] = v;
		} else if (strcmp(o, "--workers") == 0) {
			if (parse_int(v, 1, SV_MAX_WORKERS, &c->nworkers) != 0)
				return die_usage("--workers wants 1-256", v);
		} else if (strcmp(o, "--executors") == 0) {
			if (parse_int(v, 1, 64, &c->executors) != 0)
				return die_usage("--executors wants 1-64", v);
		} else if (strcmp(o, "--io-threads") == 0) {
			if (parse_int(v, 1, 16, &c->io_threads) != 0)
				return die_usage("--io-threads wants 1-16", v);
		} else if (strcmp(o, "--max-connections") == 0) {
			if (parse_int(v, 1, SV_MAX_CONNECTIONS, &c->max_connections) != 0)
				return die_usage(
				    "--max-connections wants 1-" SV_XSTR(SV_MAX_CONNECTIONS), v);
		} else if (strcmp(o, "--worker-memory") == 0) {
			if (mj_parse_size(v, &c->worker_memory) != MJ_OK)
				return die_usage("bad size", v);
		} else if ((lim = sv_limit_flag(o, v, &c->defaults, &c->flag_set, &want)) != 0) {
			if (lim < 0) {
				snprintf(msg, sizeof(msg), "%s wants %s", o, want);
				return die_usage(msg, v);
			}
		} else if (strcmp(o, "--group") == 0) {
			c->group = v;
		} else if (strcmp(o, "--worker-user") == 0) {
			c->worker_user = v;
		} else if (strcmp(o, "--quarantine-workers") == 0) {
			if (parse_int(v, 0, SV_MAX_QUARANTINE, &c->quarantine_workers) != 0)
				return die_usage("--quarantine-workers wants 0-16", v);
		} else if (strcmp(o, "--quarantine-strikes") == 0) {
			if (mj_parse_u64(v, &u) != MJ_OK || u < 1 || u > 16)
				return die_usage("--quarantine-strikes wants 1-16", v);
			c->quarantine_strikes = (unsigned)u;
		} else if (strcmp(o, "--quarantine-window-ms") == 0) {
			if (mj_parse_u64(v, &u) != MJ_OK || u < 1 || u > 86400000)
				return die_usage("--quarantine-window-ms wants 1-86400000", v);
			c->quarantine_window_ms = (uint32_t)u;
		} else if (strcmp(o, "--quarantine-ms") == 0) {
			if (mj_parse_u64(v, &u) != MJ_OK || u < 1 || u > 86400000)
				return die_usage("--quarantine-ms wants 1-86400000", v);
			c->quarantine_ms = (uint32_t)u;
		} else if (strcmp(o, "--config") == 0) {
			c->config_file = v;
		} else if (strcmp(o, "--deadline-margin-ms") == 0) {
			if (mj_parse_u64(v, &u) != MJ_OK || u > 3600000)
				return die_usage("--deadline-margin-ms wants 0-3600000", v);
			c->deadline_margin_ms = (uint32_t)u;
		} else if (strcmp(o, "--runtime-dir") == 0) {
			c->runtime_dir = v;
		} else if (strcmp(o, "--worker-bin") == 0) {
			c->worker_bin = v;
		} else if (strcmp(o, "--log-format") == 0) {
			if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0)
				return die_usage("--log-format wants text or json", v);
			c->log_json = strcmp(v, "json") == 0;
		} else {
			return die_usage("unknown option", o);
		}
	}
	if (c->runtime_dir == NULL)
		c->runtime_dir = default_runtime_dir(rtbuf, rtcap);
	if (c->worker_bin == NULL)
		c->worker_bin = default_worker_bin(wbuf, wcap);
	return 0;
}

int
main(int argc, char **argv)
{
	static char rtbuf[256], wbuf[PATH_MAX], defurl[320];
	const char *why = NULL;
	struct timespec tick = {0, 50 * 1000 * 1000};
	sigset_t set;
	siginfo_t si;
	long fds;
	int i, rc, status, sig;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	pid_t pid;

	/* Descriptors 0-2 open, on /dev/null when they were closed: otherwise the first sockets
	 * and pipes would take their numbers, and a worker's end could become its stderr. */
	for (i = 0; i < 3; i++)
		if (fcntl(i, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != i)
			return 2;
	{
		/* Held for a few list operations at a time by nng's threads and the link
		 * thread: spinning briefly beats a futex sleep and wake-up. */
		pthread_mutexattr_t ma;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
		pthread_mutex_init(&sv.lock, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	mj_limits_default(&sv.cfg.defaults);
	sv.cfg.nworkers = ncpu > 0 ? (int)(ncpu > SV_MAX_WORKERS ? SV_MAX_WORKERS : ncpu) : 1;
	sv.cfg.executors = 2;
	sv.cfg.worker_memory = (size_t)1 << 30;
	sv.cfg.ncalls = 256;
	sv.cfg.io_threads = 2;
	sv.cfg.deadline_margin_ms = 2000;
	sv.cfg.namespaces = true;
	sv.cfg.spare = true;
	sv.cfg.quarantine_workers = 1;
	sv.cfg.quarantine_strikes = 3;
	sv.cfg.quarantine_window_ms = 60000;
	sv.cfg.quarantine_ms = 300000;
	if ((rc = parse_args(argc, argv, rtbuf, sizeof(rtbuf), wbuf, sizeof(wbuf))) != 0)
		return rc;
	if (mj_limits_check(&sv.cfg.defaults, &why) != MJ_OK)
		return die_usage("bad default limits", why);
	if ((rc = fit_connections(&fds)) != 0)
		return rc;
	{
		char err[300];
		sv_policies *pol = sv_policies_load(sv.cfg.config_file, err, sizeof(err));
		if (pol == NULL) {
			fprintf(stderr, "moonjaild: config: %s\n", err);
			return 2;
		}
		sv_policies_install(pol);
	}
	if (access(sv.cfg.worker_bin, X_OK) != 0) {
		fprintf(stderr, "moonjaild: cannot run the worker program %s: %s\n",
		        sv.cfg.worker_bin, strerror(errno));
		return 2;
	}
	/* Listeners are checked before anything is made on disk: a refusal leaves nothing. */
	if (sv.cfg.nlisten == 0) {
		snprintf(defurl, sizeof(defurl), "ipc://%s/moonjail.sock", sv.cfg.runtime_dir);
		sv.cfg.listen[sv.cfg.nlisten++] = defurl;
	}
	for (i = 0; i < sv.cfg.nlisten; i++) {
		const char *u = sv.cfg.listen[i];
		/* nng also has ws://, wss://, tls+tcp:// and others; none is set up here. */
		if (strncmp(u, "ipc://", 6) != 0 && strncmp(u, "tcp://", 6) != 0 &&
		    strncmp(u, "tcp4://", 7) != 0 && strncmp(u, "tcp6://", 7) != 0) {
			fprintf(stderr,
			        "moonjaild: refusing %s: listeners are ipc:// or tcp:// (tcp4://, "
			        "tcp6://)\n",
			        u);
			return 2;
		}
		if (strncmp(u, "tcp", 3) == 0 && !tcp_loopback(u) && !sv.cfg.insecure_tcp) {
			fprintf(stderr,
			        "moonjaild: refusing plain %s: not a loopback address and the "
			        "transport "
			        "has no authentication (pass --insecure-tcp to allow it)\n",
			        u);
			return 2;
		}
	}
	/* Signals are taken synchronously by the main thread; every thread nng starts
	 * inherits this mask, so it must be set before the first nng call. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (sv.cfg.group != NULL) {
		struct group *g = getgrnam(sv.cfg.group);
		if (g == NULL) {
			fprintf(stderr, "moonjaild: no such group: %s\n", sv.cfg.group);
			return 2;
		}
		sv.cfg.gid = g->gr_gid;
	}
	if (make_dir(sv.cfg.runtime_dir, sv.cfg.group != NULL ? 0750 : 0700) != 0 ||
	    (sv.cfg.group != NULL && chown(sv.cfg.runtime_dir, (uid_t)-1, sv.cfg.gid) != 0)) {
		fprintf(stderr, "moonjaild: runtime directory %s: %s\n", sv.cfg.runtime_dir,
		        strerror(errno));
		return 2;
	}
	snprintf(sv.worker_dir, sizeof(sv.worker_dir), "%s/workers-%d", sv.cfg.runtime_dir,
	         (int)getpid());
	snprintf(sv.chroot_dir, sizeof(sv.chroot_dir), "%s/root", sv.worker_dir);
	if (make_dir(sv.worker_dir, 0700) != 0 || make_dir(sv.chroot_dir, 0555) != 0) {
		fprintf(stderr, "moonjaild: %s: %s\n", sv.worker_dir, strerror(errno));
		cleanup_dirs();
		return 2;
	}
	if (resolve_worker_user() != 0) {
		cleanup_dirs();
		return 2;
	}
	for (i = 0; i < sv.cfg.nlisten; i++) {
		if (!remove_stale_socket(sv.cfg.listen[i])) {
			fprintf(stderr, "moonjaild: refusing to listen on %s\n", sv.cfg.listen[i]);
			cleanup_dirs();
			return 2;
		}
	}
	{
		/* The limits in force: the config file's [defaults] under the flags, and the
		 * ceilings of tenants without a section (no tenant is named ""). */
		uint8_t wire[SV_POLICY_WIRE_MAX];
		mj_tenant_policy pol;
		mj_limits d;

		sv_policies_defaults(&d);
		sv_policy_for("", &pol, wire);
		sv_log("start",
		       "workers=%d executors=%d io_threads=%d max_connections=%d open_files=%ld "
		       "memory_limit=%zu instruction_limit=%llu timeout_ms=%u output_limit=%zu "
		       "source_limit=%zu result_bytes=%zu result_depth=%u result_items=%zu "
		       "max_engines=%u max_memory=%zu runtime_dir=%s",
		       sv.cfg.nworkers, sv.cfg.executors, (sv.cfg.io_threads + 1) / 2 * 2,
		       sv.cfg.max_connections, fds, d.memory, (unsigned long long)d.instructions,
		       d.timeout_ms, d.output, d.source, d.result_bytes, d.result_depth,
		       d.result_items, pol.max_engines, pol.max_memory, sv.cfg.runtime_dir);
	}
	if (drop_own_privileges() != 0) {
		cleanup_dirs();
		return 2;
	}
	/* Again without the capabilities just dropped (root reads past file modes only with
	 * CAP_DAC_OVERRIDE): otherwise every worker start would fail at exec. */
	if (access(sv.cfg.worker_bin, X_OK) != 0) {
		fprintf(stderr,
		        "moonjaild: cannot run the worker program %s once capabilities are "
		        "dropped: %s\n",
		        sv.cfg.worker_bin, strerror(errno));
		cleanup_dirs();
		return 2;
	}
	/* From here on a stalled reader of stderr cannot stall routing: events queue for the
	 * logger thread (started after the capability drop, like every other thread). */
	if (sv_log_start() != 0)
		sv_log("warning", "what=\"logger thread\" err=\"cannot start; logging in place\"");
	rc = sv_workers_start();
	if (rc == 0) {
		/* The router makes moonjaild's first nng call, which starts nng's threads. */
		sv_nng_threads_begin(sv.cfg.io_threads);
		rc = sv_router_start();
		sv_nng_threads_end();
	}
	if (rc != 0) {
		sv_workers_stop();
		cleanup_dirs();
		sv_log_stop();
		return 1;
	}
	for (;;) {
		sig = sigtimedwait(&set, &si, &tick);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig == SIGHUP)
			reload();
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			sv_worker_reap(pid, status);
		sv_workers_respawn_due();
		sv_listeners_tick(false);
	}
	/* Drain: no new calls start; answer the ones in progress, bounded by the longest
	 * possible call. */
	sv_listeners_tick(true);
	sv_log("draining", "busy=%u", atomic_load(&sv.busy));
	atomic_store(&sv.draining, true);
	for (i = 0; i < 600 && atomic_load(&sv.busy) > 0; i++) {
		nanosleep(&tick, NULL);
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			sv_worker_reap(pid, status);
	}
	{
		pthread_t t;
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, teardown_watchdog, NULL) != 0)
			sv_log("warning", "what=\"teardown watchdog\" err=\"cannot start\"");
		pthread_attr_destroy(&attr);
	}
	/* Nothing answers a call after this: the calls' aios go next. */
	sv_links_stop();
	sv_router_stop();
	atomic_store(&router_stopped, true);
	sv_workers_stop();
	cleanup_dirs();
	for (i = 0; i < sv.cfg.nlisten; i++)
		if (strncmp(sv.cfg.listen[i], "ipc://", 6) == 0)
			unlink(sv.cfg.listen[i] + 6);
	sv_policies_install(NULL);
	sv_quarantine_fini();
	sv_log("stop", "clean=1");
	sv_log_stop();
	return 0;
}
