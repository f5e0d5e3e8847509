/* The link thread: frames to and from every worker's socketpair, and the hard deadlines. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"

/* How often deadlines are checked while calls are in flight, and otherwise. */
#define TICK_BUSY_MS 10
#define TICK_IDLE_MS 100
/* A worker whose stream ended but which has not been reaped after this long is still running,
 * with no way to answer: it is killed, so its slot gets a new process. */
#define EOF_GRACE_NS (1000 * 1000000ull)
/* Reads from one link per pass, so one busy worker cannot starve the others. */
#define READS_PER_PASS 8

static pthread_t thread;
static bool running;
static bool piped; /* sv.wake is open */
static bool quit;  /* under sv.lock */

void
sv_links_wake(void)
{
	static const char b = 1;

	/* A full pipe already holds a wake-up; after sv_links_fini there is nobody to wake. */
	if (!piped || write(sv.wake[1], &b, 1) < 0)
		return;
}

sv_link *
sv_link_new(int fd, int slot)
{
	sv_link *l;
	int fl;

	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
	    (l = calloc(1, sizeof(*l))) == NULL) {
		close(fd);
		return NULL;
	}
	if (mj_frame_reader_init(&l->in, SV_MAX_MESSAGE) != MJ_OK) {
		free(l);
		close(fd);
		return NULL;
	}
	if (pthread_mutex_init(&l->wmu, NULL) != 0) {
		mj_frame_reader_fini(&l->in);
		free(l);
		close(fd);
		return NULL;
	}
	atomic_init(&l->queued, false);
	l->fd = fd;
	l->slot = slot;
	return l;
}

void
sv_link_free(sv_link *l)
{
	sv_out *o;

	/* A dispatch that found the link before it was retired may still be writing. */
	pthread_mutex_lock(&l->wmu);
	pthread_mutex_unlock(&l->wmu);
	pthread_mutex_destroy(&l->wmu);
	if (l->fd >= 0)
		close(l->fd);
	mj_frame_reader_fini(&l->in);
	while ((o = l->outq) != NULL) {
		l->outq = o->next;
		free(o);
	}
	free(l);
}

/* Writes queued frames until the socket is full. false when the stream is broken. Called with
 * l->wmu held. */
static bool
flush(sv_link *l)
{
	sv_out *o;
	ssize_t n;

	while ((o = l->outq) != NULL) {
		n = write(l->fd, o->buf + o->off, o->len - o->off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK;
		}
		o->off += (size_t)n;
		if (o->off < o->len)
			continue;
		l->outq = o->next;
		if (l->outq == NULL) {
			l->outq_tail = NULL;
			atomic_store(&l->queued, false);
		}
		free(o);
	}
	return true;
}

sv_out *
sv_out_new(size_t len)
{
	sv_out *o = malloc(sizeof(*o) + len);

	if (o != NULL) {
		o->next = NULL;
		o->len = len;
		o->off = 0;
	}
	return o;
}

void
sv_link_send(sv_link *l, sv_out *o)
{
	ssize_t n;

	if (l->outq == NULL) {
		/* The common case: the socket takes the whole frame at once, with no hand-off. */
		do
			n = write(l->fd, o->buf, o->len);
		while (n < 0 && errno == EINTR);
		if (n > 0)
			o->off =
			    (size_t)n; /* else EAGAIN, or a broken stream the link thread sees */
		if (o->off == o->len) {
			free(o);
			return;
		}
	}
	/* The rest waits in the queue as it is: a dispatch holds the lock only for one write. */
	o->next = NULL;
	if (l->outq_tail != NULL) {
		l->outq_tail->next = o;
	} else {
		l->outq = o;
		atomic_store(&l->queued, true);
		sv_links_wake(); /* the link thread now waits for room on this socket */
	}
	l->outq_tail = o;
}

static sv_worker *
worker_of(const sv_link *l)
{
	return l->slot == SV_SPARE ? &sv.spare : &sv.workers[l->slot];
}

/* The work one pass collected under the lock, done after it. */
typedef struct pass {
	sv_call *replies, *lost, *expired;
	pid_t kill[SV_MAX_WORKERS + SV_MAX_QUARANTINE + 1];
	int kill_slot[SV_MAX_WORKERS + SV_MAX_QUARANTINE + 1];
	const char *kill_why[SV_MAX_WORKERS + SV_MAX_QUARANTINE + 1];
	int nkill;
} pass;

static void finish(pass *p);

static void
end_link(sv_link *l, pass *p)
{
	if (l->eof)
		return;
	l->eof = true;
	l->eof_ns = mj_now_ns();
	if (l->slot != SV_SPARE)
		p->lost = sv_calls_take_lost(worker_of(l), l->pid, p->lost);
}

static void
kill_later(pass *p, const sv_link *l, const char *why)
{
	if (p->nkill >= (int)(sizeof(p->kill) / sizeof(p->kill[0])))
		return;
	p->kill[p->nkill] = l->pid;
	p->kill_slot[p->nkill] = l->slot;
	p->kill_why[p->nkill] = why;
	p->nkill++;
}

/* Reads what l has and answers the calls its frames answer. Called without sv.lock: the
 * buffer is the link thread's own, and the lock is taken once per read. */
static void
read_link(sv_link *l)
{
	const uint8_t *payload;
	mj_frame_status st = MJ_FRAME_NONE;
	uint64_t tag;
	size_t len;
	ssize_t n;
	int reads;
	pass p;

	for (reads = 0; reads < READS_PER_PASS && !l->eof; reads++) {
		memset(&p, 0, sizeof(p));
		n = mj_frame_fill(&l->in, l->fd);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		pthread_mutex_lock(&sv.lock);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
			end_link(l, &p);
		} else {
			while ((st = mj_frame_next(&l->in, &tag, &payload, &len)) !=
			       MJ_FRAME_NONE) {
				if (st == MJ_FRAME_TOO_BIG || l->slot == SV_SPARE ||
				    !sv_call_take(worker_of(l), l->pid, tag, payload, len,
				                  &p.replies)) {
					/* An answer nobody asked for, or one over the limit: the
					 * worker is not trusted with more. */
					kill_later(&p, l,
					           st == MJ_FRAME_TOO_BIG ? "oversized-reply"
					                                  : "unexpected-reply");
					end_link(l, &p);
					l->killed = true; /* not again as stream-ended */
					break;
				}
			}
		}
		pthread_mutex_unlock(&sv.lock);
		/* Before the next read: the replies borrow the link's buffer. */
		finish(&p);
		/* Drained: poll says when there is more, without a read that finds nothing. */
		if (n <= 0 || l->in.short_read)
			return;
	}
}

/* Links ended while their process lives on get it killed. Called with sv.lock held. */
static void
check_ended(pass *p)
{
	uint64_t now = mj_now_ns();
	int i;

	for (i = -1; i < sv.nslots; i++) {
		sv_link *l = i < 0 ? sv.spare.link : sv.workers[i].link;
		if (l == NULL || l->killed)
			continue;
		if (l->eof && now - l->eof_ns >= EOF_GRACE_NS) {
			kill_later(p, l, "stream-ended");
			l->killed = true;
		}
	}
}

/* Every link the thread watches, with the events it waits for. Called with sv.lock held. */
static int
gather(struct pollfd *fds, sv_link **links, int cap)
{
	int i, n = 1;

	fds[0].fd = sv.wake[0];
	fds[0].events = POLLIN;
	links[0] = NULL;
	for (i = -1; i < sv.nslots && n < cap; i++) {
		sv_link *l = i < 0 ? sv.spare.link : sv.workers[i].link;
		if (l == NULL || l->eof)
			continue;
		fds[n].fd = l->fd;
		/* Not under wmu, which a dispatch holds through its write, while this holds
		 * sv.lock. A frame queued after this look wakes the thread for another. */
		fds[n].events = (short)(POLLIN | (atomic_load(&l->queued) ? POLLOUT : 0));
		fds[n].revents = 0;
		links[n++] = l;
	}
	return n;
}

static bool
any_in_flight(void)
{
	int i;

	for (i = 0; i < sv.nslots; i++)
		if (sv.workers[i].inflight != NULL)
			return true;
	return false;
}

static void
drain_wake(void)
{
	char buf[64];

	while (read(sv.wake[0], buf, sizeof(buf)) > 0)
		;
}

static void
finish(pass *p)
{
	sv_call *c, *next;
	int i;

	for (i = 0; i < p->nkill; i++)
		sv_worker_kill(p->kill_slot[i], p->kill[i], p->kill_why[i]);
	for (c = p->replies; c != NULL; c = next) {
		next = sv_call_next(c);
		sv_call_finish_reply(c);
	}
	for (c = p->lost; c != NULL; c = next) {
		next = sv_call_next(c);
		sv_call_finish_lost(c);
	}
	for (c = p->expired; c != NULL; c = next) {
		next = sv_call_next(c);
		sv_call_finish_expired(c);
	}
}

static void *
link_thread(void *arg)
{
	enum { CAP = SV_MAX_WORKERS + SV_MAX_QUARANTINE + 2 };
	static struct pollfd fds[CAP];
	static sv_link *links[CAP];
	uint64_t next_tick = 0, now;
	sv_link *l, *rnext;
	int n, i, timeout;
	pass p;

	(void)arg;
	for (;;) {
		memset(&p, 0, sizeof(p));
		pthread_mutex_lock(&sv.lock);
		if (quit) {
			pthread_mutex_unlock(&sv.lock);
			break;
		}
		/* Retired links: their processes are reaped; whatever they still held is lost. */
		for (l = sv.retired; l != NULL; l = rnext) {
			rnext = l->next;
			end_link(l, &p);
			sv_link_free(l);
		}
		sv.retired = NULL;
		check_ended(&p);
		n = gather(fds, links, CAP);
		timeout = any_in_flight() ? TICK_BUSY_MS : TICK_IDLE_MS;
		pthread_mutex_unlock(&sv.lock);
		finish(&p);

		if (poll(fds, (nfds_t)n, timeout) < 0 && errno != EINTR)
			continue;
		memset(&p, 0, sizeof(p));
		if (fds[0].revents != 0)
			drain_wake();
		for (i = 1; i < n; i++) {
			bool broken = false;
			l = links[i];
			if (fds[i].revents == 0 || l->eof)
				continue;
			if ((fds[i].revents & POLLOUT) != 0) {
				pthread_mutex_lock(&l->wmu);
				broken = !flush(l);
				pthread_mutex_unlock(&l->wmu);
			}
			if (broken) {
				pthread_mutex_lock(&sv.lock);
				end_link(l, &p);
				pthread_mutex_unlock(&sv.lock);
			} else if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
				read_link(l);
			}
		}
		pthread_mutex_lock(&sv.lock);
		now = mj_now_ns();
		if (now >= next_tick) {
			next_tick = now + TICK_BUSY_MS * 1000000ull;
			for (i = 0; i < sv.nslots; i++)
				if (sv.workers[i].inflight != NULL)
					p.expired =
					    sv_calls_take_expired(&sv.workers[i], now, p.expired);
		}
		pthread_mutex_unlock(&sv.lock);
		finish(&p);
	}
	return NULL;
}

int
sv_links_start(void)
{
	int i, fl;

	if (pipe2(sv.wake, O_CLOEXEC) != 0)
		return -1;
	piped = true;
	for (i = 0; i < 2; i++)
		if ((fl = fcntl(sv.wake[i], F_GETFL)) < 0 ||
		    fcntl(sv.wake[i], F_SETFL, fl | O_NONBLOCK) != 0)
			return -1;
	if (pthread_create(&thread, NULL, link_thread, NULL) != 0)
		return -1;
	running = true;
	return 0;
}

void
sv_links_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&sv.lock);
	quit = true;
	pthread_mutex_unlock(&sv.lock);
	sv_links_wake();
	pthread_join(thread, NULL);
	running = false;
}

void
sv_links_fini(void)
{
	sv_links_stop();
	if (piped) {
		close(sv.wake[0]);
		close(sv.wake[1]);
		piped = false;
	}
}
