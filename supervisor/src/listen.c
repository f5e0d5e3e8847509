/* The client listeners, and the watch that restarts one nng 1.5.2 has stopped serving. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/transport/ipc/ipc.h>

#include "supervisor.h"

/* nng 1.5.2 has a listener bug (nng issue 1518, fixed upstream in pull request 1519, not in
 * Debian 12): a peer that connects and closes before the SP handshake ends makes the
 * listener's accept loop stop. The transport still accepts connections and answers the
 * handshake, but no pipe reaches the socket, so every later client waits forever. One
 * `connect` and `close`, such as a TCP health check, is enough. nng has no call to restart the
 * loop, so a watch thread probes each listener: it connects as a REQ peer, completes the
 * handshake without sending a request, and waits for the pipe to reach moonjaild's socket. A
 * listener that gets no pipe in PROBE_WAIT_MS, from the probe or from anyone else, twice running,
 * is closed and opened again. Closing a listener also closes the connections it accepted: their
 * calls in flight are answered into the void, which the clients see as a dropped connection. */
#define PROBE_EVERY_MS 1000
#define PROBE_WAIT_MS 1000
#define PROBE_STRIKES 2

static nng_listener listeners[SV_MAX_LISTEN];
static char bound[SV_MAX_LISTEN][160];              /* the URL, tcp's with the port it got */
static struct sockaddr_storage addr[SV_MAX_LISTEN]; /* where the probe connects */
static socklen_t addrlen[SV_MAX_LISTEN];
static atomic_int ids[SV_MAX_LISTEN];    /* nng_listener_id of each, for the pipe callback */
static atomic_uint pipes[SV_MAX_LISTEN]; /* pipes each has accepted (ADD_PRE) */
static int nlisteners;

/* Client connections: every pipe counts in conns from its ADD_PRE event to its REM_POST,
 * which nng sends for each pipe that had the first; those past the cap also count in nover,
 * and the cap applies to conns less nover. A connection past the cap is not dropped at once:
 * its nng peer would dial again, and a peer that gives up during that redial's handshake sets
 * off nng issue 1518. It is let in, its requests are answered with an error
 * (sv_conn_refused), and sv_listeners_tick closes it OVER_GRACE_MS after its arrival or its
 * last refused call, if its peer has not hung up by then. At most SV_OVER_MAX such
 * connections at once (moonjaild's descriptor reserve counts them); past that, one is closed
 * at once. An entry whose REM_POST ran before its ADD_PRE had made it (nng's reaper does not
 * wait for the callback) is found gone at its expiry and dropped then. */
#define OVER_GRACE_MS 1000

static atomic_int conns;
static atomic_uint refused; /* calls refused, and connections closed at once, since start */
static pthread_mutex_t over_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint32_t id; /* the pipe's; 0 for a free entry */
	uint64_t since_ns;
} over[SV_OVER_MAX]; /* under over_mu */
static atomic_int nover;

/* The over-cap entry of pipe id, or -1. Called with over_mu held. */
static int
over_find(uint32_t id)
{
	int i;

	for (i = 0; i < SV_OVER_MAX; i++)
		if (over[i].id == id)
			return i;
	return -1;
}

static void
over_drop(uint32_t id)
{
	int i;

	pthread_mutex_lock(&over_mu);
	if ((i = over_find(id)) >= 0) {
		over[i].id = 0;
		atomic_fetch_sub(&nover, 1);
	}
	pthread_mutex_unlock(&over_mu);
}

bool
sv_conn_refused(nng_pipe p)
{
	bool found;
	int i;

	if (atomic_load(&nover) == 0)
		return false;
	pthread_mutex_lock(&over_mu);
	found = p.id != 0 && (i = over_find(p.id)) >= 0;
	if (found) /* its grace starts again, so that the answer is not cut off */
		over[i].since_ns = mj_now_ns();
	pthread_mutex_unlock(&over_mu);
	if (found)
		atomic_fetch_add(&refused, 1);
	return found;
}

/* Closes the connections past the cap that have had their grace. */
static void
over_expire(void)
{
	uint32_t due[SV_OVER_MAX];
	uint64_t now = mj_now_ns();
	int i, n = 0;
	nng_pipe p;

	if (atomic_load(&nover) == 0)
		return;
	pthread_mutex_lock(&over_mu);
	for (i = 0; i < SV_OVER_MAX; i++)
		if (over[i].id != 0 && now - over[i].since_ns >= OVER_GRACE_MS * 1000000ull)
			due[n++] = over[i].id;
	pthread_mutex_unlock(&over_mu);
	for (i = 0; i < n; i++) {
		p.id = due[i];
		/* Its REM_POST drops the entry. A pipe nng no longer knows, or has closed
		 * already, is dropped here: its REM_POST, if still to come, finds none. */
		if (nng_pipe_close(p) != 0)
			over_drop(due[i]);
	}
}

void
sv_listeners_tick(bool last)
{
	static unsigned logged;
	static uint64_t logged_ns;
	uint64_t now_ns = mj_now_ns();
	unsigned now;

	over_expire();
	/* Refusals are logged at most once a second, counted, and once more at the end. */
	if ((now = atomic_load(&refused)) != logged &&
	    (last || now_ns - logged_ns >= 1000000000ull)) {
		sv_log("connections-refused", "count=%u max_connections=%d", now - logged,
		       sv.cfg.max_connections);
		logged = now;
		logged_ns = now_ns;
	}
}

static pthread_t watcher;
static bool watching;
static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_cv; /* on CLOCK_MONOTONIC, made in sv_listeners_start */
static bool watch_quit;         /* under watch_mu */

static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	int id, i;

	(void)arg;
	if (ev == NNG_PIPE_EV_REM_POST) {
		atomic_fetch_sub(&conns, 1);
		if (atomic_load(&nover) > 0)
			over_drop(p.id);
		return;
	}
	/* Any pipe, one past the cap too, shows that the listener's accept loop runs. */
	id = nng_listener_id(nng_pipe_listener(p));
	for (i = 0; i < SV_MAX_LISTEN; i++)
		if (id > 0 && atomic_load(&ids[i]) == id)
			atomic_fetch_add(&pipes[i], 1);
	if (atomic_fetch_add(&conns, 1) - atomic_load(&nover) < sv.cfg.max_connections)
		return;
	pthread_mutex_lock(&over_mu);
	if ((i = over_find(0)) >= 0) {
		over[i].id = p.id;
		over[i].since_ns = mj_now_ns();
		atomic_fetch_add(&nover, 1);
	}
	pthread_mutex_unlock(&over_mu);
	if (i < 0) {
		atomic_fetch_add(&refused, 1);
		nng_pipe_close(p);
	}
}

/* The address listener i listens on, in bound[i]: for tcp the one it bound, so that port 0
 * (any free one) shows the port it got. */
static void
find_bound(int i, const char *url)
{
	char host[INET6_ADDRSTRLEN];
	nng_sockaddr sa;

	if (url != bound[i])
		snprintf(bound[i], sizeof(bound[i]), "%s", url);
	addrlen[i] = 0;
	memset(&addr[i], 0, sizeof(addr[i]));
	if (strncmp(url, "ipc://", 6) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&addr[i];

		if (strlen(url + 6) < sizeof(un->sun_path)) {
			un->sun_family = AF_UNIX;
			memcpy(un->sun_path, url + 6, strlen(url + 6) + 1);
			addrlen[i] = sizeof(*un);
		}
		return;
	}
	if (nng_listener_get_addr(listeners[i], NNG_OPT_LOCADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET &&
	    inet_ntop(AF_INET, &sa.s_in.sa_addr, host, sizeof(host)) != NULL) {
		struct sockaddr_in *in = (struct sockaddr_in *)&addr[i];

		snprintf(bound[i], sizeof(bound[i]), "tcp://%s:%u", host,
		         (unsigned)ntohs(sa.s_in.sa_port));
		in->sin_family = AF_INET;
		in->sin_port = sa.s_in.sa_port; /* both in network order */
		in->sin_addr.s_addr = sa.s_in.sa_addr;
		addrlen[i] = sizeof(*in);
	} else if (sa.s_family == NNG_AF_INET6 &&
	           inet_ntop(AF_INET6, sa.s_in6.sa_addr, host, sizeof(host)) != NULL) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr[i];

		snprintf(bound[i], sizeof(bound[i]), "tcp://[%s]:%u", host,
		         (unsigned)ntohs(sa.s_in6.sa_port));
		in6->sin6_family = AF_INET6;
		in6->sin6_port = sa.s_in6.sa_port;
		memcpy(&in6->sin6_addr, sa.s_in6.sa_addr, sizeof(in6->sin6_addr));
		in6->sin6_scope_id = sa.s_in6.sa_scope;
		addrlen[i] = sizeof(*in6);
	}
}

/* Opens listener i on url (its configured URL, or on a restart the address it had bound, so
 * that port 0 keeps the port it got) and logs it; event names the log event. */
static int
open_listener(int i, const char *url, const char *event)
{
	int rv;

	if ((rv = nng_listener_create(&listeners[i], sv.front, url)) != 0) {
		sv_log("error", "what=\"listen\" url=%s err=\"%s\"", url, nng_strerror(rv));
		return rv;
	}
	if (strncmp(url, "ipc://", 6) == 0)
		nng_listener_set_int(listeners[i], NNG_OPT_IPC_PERMISSIONS,
		                     sv.cfg.group != NULL ? 0660 : 0600);
	if ((rv = nng_listener_start(listeners[i], 0)) != 0) {
		sv_log("error", "what=\"listen\" url=%s err=\"%s\"", url, nng_strerror(rv));
		nng_listener_close(listeners[i]);
		return rv;
	}
	atomic_store(&ids[i], nng_listener_id(listeners[i]));
	/* Admitting a group: the socket file joins it (the directory did at start). */
	if (sv.cfg.group != NULL && strncmp(url, "ipc://", 6) == 0 &&
	    chown(url + 6, (uid_t)-1, sv.cfg.gid) != 0) {
		sv_log("error", "what=\"chown socket\" url=%s group=%s", url, sv.cfg.group);
		return NNG_EPERM;
	}
	find_bound(i, url);
	if (strcmp(bound[i], sv.cfg.listen[i]) == 0)
		sv_log(event, "url=%s", bound[i]);
	else
		sv_log(event, "url=%s requested=%s", bound[i], sv.cfg.listen[i]);
	return 0;
}

/* Whether a pipe reached the socket through listener i within PROBE_WAIT_MS of a connection.
 * The probe is a plain socket that completes the SP handshake as a REQ peer and sends
 * nothing more (an nng socket closed with its dial in progress leaks inside libnng 1.5.2). It
 * reads the listener's half of the handshake before it may hang up: a hang-up inside the
 * handshake is what sets off the bug. A probe that cannot connect, or gets no handshake, gives
 * no verdict. A pipe counts from before the first of a run of failed probes, so one that
 * arrives late still clears them. */
static bool
probe(int i, unsigned before)
{
	static const unsigned char hello[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0};
	struct timespec tick = {0, 10 * 1000 * 1000};
	/* Longer than nng's own 10 s handshake timeout: a listener too busy to answer the
	 * handshake is overloaded, not stalled (a stalled one answers it), and is left alone. */
	struct timeval tv = {12, 0};
	unsigned char reply[8];
	bool ok = false;
	size_t got = 0;
	ssize_t n;
	int fd, t;

	if (addrlen[i] == 0 || (fd = socket(addr[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return true;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&addr[i], addrlen[i]) != 0) {
		close(fd);
		return true;
	}
	if (send(fd, hello, sizeof(hello), MSG_NOSIGNAL) == (ssize_t)sizeof(hello))
		while (got < sizeof(reply) &&
		       (n = recv(fd, reply + got, sizeof(reply) - got, 0)) > 0)
			got += (size_t)n;
	if (got < sizeof(reply)) {
		close(fd);
		return true;
	}
	for (t = 0; t < PROBE_WAIT_MS / 10 && !ok; t++) {
		ok = atomic_load(&pipes[i]) != before;
		if (!ok)
			nanosleep(&tick, NULL);
	}
	close(fd);
	return ok;
}

static void *
watch(void *arg)
{
	int strikes[SV_MAX_LISTEN] = {0}, i;
	unsigned base[SV_MAX_LISTEN] = {0};
	bool down[SV_MAX_LISTEN] = {false}, quit;
	struct timespec until;

	(void)arg;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += PROBE_EVERY_MS / 1000;
		pthread_mutex_lock(&watch_mu);
		while (!watch_quit && pthread_cond_timedwait(&watch_cv, &watch_mu, &until) == 0)
			;
		quit = watch_quit;
		pthread_mutex_unlock(&watch_mu);
		if (quit)
			break;
		for (i = 0; i < nlisteners && !atomic_load(&sv.draining); i++) {
			if (!down[i]) {
				if (strikes[i] == 0)
					base[i] = atomic_load(&pipes[i]);
				strikes[i] = probe(i, base[i]) ? 0 : strikes[i] + 1;
				if (strikes[i] < PROBE_STRIKES)
					continue;
				strikes[i] = 0;
				sv_log("warning", "what=\"listener stalled\" url=%s action=restart",
				       bound[i]);
				atomic_store(&ids[i], 0);
				nng_listener_close(listeners[i]);
			}
			/* Tried again every tick until it opens. */
			down[i] = open_listener(i, bound[i], "listener-restarted") != 0;
		}
	}
	return NULL;
}

int
sv_listeners_start(void)
{
	int i, rv;

	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&watch_cv, &ca);
	pthread_condattr_destroy(&ca);
	nng_pipe_notify(sv.front, NNG_PIPE_EV_ADD_PRE, pipe_event, NULL);
	nng_pipe_notify(sv.front, NNG_PIPE_EV_REM_POST, pipe_event, NULL);
	for (i = 0; i < sv.cfg.nlisten; i++) {
		if ((rv = open_listener(i, sv.cfg.listen[i], "listening")) != 0)
			return rv;
		nlisteners++;
	}
	if (pthread_create(&watcher, NULL, watch, NULL) != 0)
		sv_log("warning", "what=\"listener watch\" err=\"cannot start\"");
	else
		watching = true;
	return 0;
}

void
sv_listeners_stop(void)
{
	int i;

	if (watching) {
		pthread_mutex_lock(&watch_mu);
		watch_quit = true;
		pthread_cond_signal(&watch_cv);
		pthread_mutex_unlock(&watch_mu);
		pthread_join(watcher, NULL);
		watching = false;
	}
	for (i = 0; i < nlisteners; i++)
		nng_listener_close(listeners[i]);
	nlisteners = 0;
}
