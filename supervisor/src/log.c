/* Structured event logging for moonjaild: one line per event on stderr, written by a logger
 * thread so that a slow or stalled reader of stderr never stalls routing. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mj/text.h"
#include "supervisor.h"

#define LOG_LINES 512
#define LOG_LINE_MAX 2048
/* How long the logger waits for stderr to take a line once moonjaild is stopping. */
#define LOG_STOP_WAIT_MS 1000
/* How often a write waiting for room checks whether moonjaild is stopping. */
#define LOG_POLL_MS 100

static struct {
	char text[LOG_LINE_MAX];
	size_t len;
} ring[LOG_LINES];
static size_t head, count; /* the queued lines, oldest at head */
static uint64_t dropped;   /* lines lost to a full queue since the last report */
static bool async_on, stopping, done;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_cv = PTHREAD_COND_INITIALIZER;

static size_t format_line(char *out, size_t cap, const char *event, const char *msg);

static bool
is_stopping(void)
{
	bool s;

	pthread_mutex_lock(&log_mu);
	s = stopping;
	pthread_mutex_unlock(&log_mu);
	return s;
}

/* Writes one whole line to stderr, waiting for room as long as it takes, except once
 * moonjaild is stopping: then it gives up (false) after LOG_STOP_WAIT_MS without room, even
 * in a write that began earlier, so a reader that went away cannot hold moonjaild's exit.
 * Called without log_mu. */
static bool
write_line(const char *p, size_t len)
{
	struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
	unsigned stalled_ms = 0;
	ssize_t n;

	while (len > 0) {
		if (poll(&pfd, 1, LOG_POLL_MS) == 0) {
			if (is_stopping() && (stalled_ms += LOG_POLL_MS) >= LOG_STOP_WAIT_MS)
				return false;
			continue;
		}
		n = write(STDERR_FILENO, p, len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static void enqueue(const char *line, size_t len, size_t limit);

static size_t
format_line(char *out, size_t cap, const char *event, const char *msg)
{
	char ts[64];
	struct timespec now;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         now.tv_nsec / 1000000);
	if (sv.cfg.log_json) {
		size_t len = 0, mlen = strlen(msg);
		int attempt;
		/* An escaped byte takes at most 6: a detail too long for one line is cut to what
		 * fits, rather than the line being lost. */
		for (attempt = 0; attempt < 2 && len == 0; attempt++) {
			mj_buf b = {0};
			if (attempt == 1 && cap > 256 && mlen > (cap - 256) / 6)
				mlen = (cap - 256) / 6;
			mj_buf_printf(&b, "{\"ts\":\"%s\",\"event\":", ts);
			mj_buf_json_string(&b, event, strlen(event));
			mj_buf_append(&b, ",\"detail\":", 10);
			mj_buf_json_string(&b, msg, mlen);
			mj_buf_append(&b, "}\n", 2);
			if (!b.failed && b.len < cap) {
				memcpy(out, b.ptr, b.len);
				len = b.len;
			}
			mj_buf_free(&b);
		}
		return len;
	}
	n = snprintf(out, cap, "%s moonjaild: event=%s %s\n", ts, event, msg);
	if (n < 0)
		return 0;
	if ((size_t)n >= cap) {
		out[cap - 2] = '\n';
		return cap - 1;
	}
	return (size_t)n;
}

void
sv_log(const char *event, const char *fmt, ...)
{
	char msg[1024], line[LOG_LINE_MAX];
	size_t len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((len = format_line(line, sizeof(line), event, msg)) == 0)
		return;
	enqueue(line, len, LOG_LINES);
}

void
sv_log_line(const char *line, size_t len)
{
	/* Worker lines get half the queue: a worker flooding its log cannot crowd out
	 * moonjaild's own events (a kill, a quarantine). */
	enqueue(line, len, LOG_LINES / 2);
}

static void
enqueue(const char *line, size_t len, size_t limit)
{
	char cut[LOG_LINE_MAX];

	if (len > LOG_LINE_MAX) {
		/* Cut, still one line. */
		memcpy(cut, line, LOG_LINE_MAX - 1);
		cut[LOG_LINE_MAX - 1] = '\n';
		line = cut;
		len = LOG_LINE_MAX;
	}
	pthread_mutex_lock(&log_mu);
	if (!async_on || done) {
		/* Before the logger starts (start-up) and after it has stopped: in place. */
		pthread_mutex_unlock(&log_mu);
		write_line(line, len);
		return;
	}
	if (count >= limit) {
		dropped++;
	} else {
		size_t i = (head + count) % LOG_LINES;
		memcpy(ring[i].text, line, len);
		ring[i].len = len;
		count++;
		pthread_cond_signal(&log_cv);
	}
	pthread_mutex_unlock(&log_mu);
}

static void *
logger(void *arg)
{
	char line[LOG_LINE_MAX], note[LOG_LINE_MAX], msg[128];
	uint64_t lost;
	size_t len;
	bool ok = true;

	(void)arg;
	pthread_mutex_lock(&log_mu);
	for (;;) {
		while (count == 0 && dropped == 0 && !stopping)
			pthread_cond_wait(&log_cv, &log_mu);
		if (count == 0 && dropped == 0)
			break;
		lost = dropped;
		dropped = 0;
		len = 0;
		if (count > 0) {
			len = ring[head].len;
			memcpy(line, ring[head].text, len);
			head = (head + 1) % LOG_LINES;
			count--;
		}
		pthread_mutex_unlock(&log_mu);
		if (lost > 0) {
			size_t nlen;
			snprintf(msg, sizeof(msg),
			         "lines=%llu reason=\"stderr was not read fast enough\"",
			         (unsigned long long)lost);
			if ((nlen = format_line(note, sizeof(note), "log-dropped", msg)) > 0)
				ok = write_line(note, nlen);
		}
		if (ok && len > 0)
			ok = write_line(line, len);
		pthread_mutex_lock(&log_mu);
		if (!ok && stopping) {
			/* Nobody reads stderr any more: the rest is lost. */
			count = 0;
			dropped = 0;
		}
	}
	done = true;
	pthread_cond_broadcast(&log_cv);
	pthread_mutex_unlock(&log_mu);
	return NULL;
}

int
sv_log_start(void)
{
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, (size_t)128 << 10);
	rc = pthread_create(&t, &attr, logger, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		return -1; /* lines are then written in place, as before the start */
	pthread_mutex_lock(&log_mu);
	async_on = true;
	pthread_mutex_unlock(&log_mu);
	return 0;
}

void
sv_log_stop(void)
{
	pthread_mutex_lock(&log_mu);
	if (async_on) {
		stopping = true;
		pthread_cond_broadcast(&log_cv);
		while (!done)
			pthread_cond_wait(&log_cv, &log_mu);
	}
	pthread_mutex_unlock(&log_mu);
}
