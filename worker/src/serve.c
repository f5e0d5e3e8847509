/* Request flow: executors take turns reading the stream (one at a time, so frames are decoded
 * and queued in order), run each engine's jobs in order and write the replies. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mj/clock.h"
#include "worker.h"

/* Lua needs at least 4 MiB of C stack per calling thread (see docs/engine.md). */
#define WK_EXEC_STACK ((size_t)8 << 20)
/* An executor that starts a job while other work waits (the stream unread, or another
 * engine's job ready) leaves that work for at most about this long before the guard wakes
 * another executor to take it. */
#define WK_HANDOFF_NS (2 * 1000 * 1000ull)
/* A reply held back to be written with the next one waits at most about this long: the guard
 * writes it when the job after it runs long. */
#define WK_OUT_HOLD_NS (1000 * 1000ull)
/* The guard ticks while requests arrive, and sleeps after this long without one. */
#define WK_GUARD_IDLE_NS (1000 * 1000 * 1000ull)

static bool
may_read(const wk_worker *w)
{
	return !w->reading && !w->eof && w->queued_bytes < WK_QUEUE_BYTES;
}

/* The stream to moonjaild failed outside a shutdown: nothing more can be answered, and a
 * confined worker cannot reconnect. moonjaild answers the calls in flight and starts a
 * replacement. */
static void
connection_lost(wk_worker *w, int err)
{
	bool stopping;

	pthread_mutex_lock(&w->mu);
	stopping = w->stopping;
	pthread_mutex_unlock(&w->mu);
	if (stopping)
		return;
	wk_log("event=exit reason=supervisor_connection_lost error=\"%s\"",
	       err != 0 ? strerror(err) : "end of stream");
	_exit(1);
}

/* Writes the held-back replies, then the frame (tag, buf, len) when buf is not NULL. Called
 * with w->wmu held. */
static int
write_out(wk_worker *w, uint64_t tag, const uint8_t *buf, size_t len)
{
	uint8_t hdr[MJ_FRAME_HEADER];
	struct iovec iov[3];
	int n = 0, rc;

	if (w->outlen > 0) {
		iov[n].iov_base = w->out;
		iov[n++].iov_len = w->outlen;
	}
	if (buf != NULL) {
		mj_frame_header(hdr, (uint32_t)len, tag);
		iov[n].iov_base = hdr;
		iov[n++].iov_len = sizeof(hdr);
		iov[n].iov_base = (void *)buf;
		iov[n++].iov_len = len;
	}
#ifdef MJ_TEST_HOOKS
	if (n > 0 && wk_test_trickle) {
		wk_test_trickle = false;
		rc = wk_test_write_trickled(w->fd, iov, n);
	} else
#endif
		rc = n > 0 ? mj_frame_writev(w->fd, iov, n) : 0;
	w->outlen = 0;
	atomic_store(&w->out_since, 0);
	return rc;
}

/* Writes buf (mj_malloc'd, taken) as the reply to tag, after any held-back replies. */
static void
send_reply(wk_worker *w, uint64_t tag, uint8_t *buf, size_t len)
{
	int rc, err;

	if (buf == NULL) {
		/* Only when memory is exhausted: the call then ends at moonjaild's hard deadline.
		 */
		wk_log("event=reply_lost reason=out_of_memory");
		return;
	}
	pthread_mutex_lock(&w->wmu);
	rc = write_out(w, tag, buf, len);
	err = errno;
	pthread_mutex_unlock(&w->wmu);
	mj_free(buf);
	if (rc != 0)
		connection_lost(w, err);
}

/* Holds buf back in w->out, to be written with the next reply, if it fits; true when it did
 * (buf is then freed). Called with w->mu held, so the guard, which stops ticking only when
 * nothing is held and checks that under w->mu, cannot miss it. */
static bool
hold_reply(wk_worker *w, uint64_t tag, uint8_t *buf, size_t len)
{
	bool held = false;

	if (buf == NULL)
		return false;
	pthread_mutex_lock(&w->wmu);
	if (len <= WK_OUT_BYTES - MJ_FRAME_HEADER - w->outlen) {
		mj_frame_header(w->out + w->outlen, (uint32_t)len, tag);
		memcpy(w->out + w->outlen + MJ_FRAME_HEADER, buf, len);
		w->outlen += MJ_FRAME_HEADER + len;
		if (atomic_load(&w->out_since) == 0)
			atomic_store(&w->out_since, mj_now_ns());
		held = true;
	}
	pthread_mutex_unlock(&w->wmu);
	if (held)
		mj_free(buf);
	return held;
}

/* Writes the held-back replies, if any. Called without w->mu. */
static void
flush_out(wk_worker *w)
{
	int rc = 0, err = 0;

	if (atomic_load(&w->out_since) == 0)
		return;
	pthread_mutex_lock(&w->wmu);
	if (w->outlen > 0) {
		rc = write_out(w, 0, NULL, 0);
		err = errno;
	}
	pthread_mutex_unlock(&w->wmu);
	if (rc != 0)
		connection_lost(w, err);
}

static void
reply_error(wk_worker *w, uint64_t tag, uint64_t id, mj_kind kind, const char *msg)
{
	uint8_t *buf;
	size_t len;

	wk_ops_error(id, kind, msg, &buf, &len);
	send_reply(w, tag, buf, len);
}

static void
job_free(wk_job *j)
{
	if (j == NULL)
		return;
	mj_proto_free(j->req != NULL ? &j->req->base : NULL);
	mj_proto_free(j->wreq != NULL ? &j->wreq->base : NULL);
	mj_free(j);
}

/* Puts slot s at the back of the ready queue. Called with w->mu held. */
static void
ready_push(wk_worker *w, wk_slot *s)
{
	s->ready = true;
	s->ready_next = NULL;
	if (w->ready_tail != NULL)
		w->ready_tail->ready_next = s;
	else
		w->ready_head = s;
	w->ready_tail = s;
}

/* Decodes one frame and queues it on its engine's slot; every failure is answered at once. */
static void
received(wk_worker *w, uint64_t tag, const uint8_t *payload, size_t len)
{
	mj_proto_caps caps;
	ProtobufCMessage *m = NULL;
	char why[256] = "";
	uint64_t id = 0;
	uint8_t *buf;
	size_t blen;
	wk_slot *s;
	wk_job *j;

	if ((j = mj_calloc(1, sizeof(*j))) == NULL) {
		reply_error(w, tag, 0, MJ_KIND_INTERNAL, "out of memory");
		return;
	}
	j->tag = tag;
	mj_proto_caps_default(&caps);
	caps.max_bytes = WK_RECV_MAX;
	caps.max_messages = 1u << 20;
	caps.memory_budget = 64u << 20;
	if (mj_proto_unpack(&moonjail__internal__v1__worker_request__descriptor, payload, len,
	                    &caps, &m, why, sizeof(why)) != MJ_OK)
		goto bad;
	j->wreq = (Moonjail__Internal__V1__WorkerRequest *)m;
	caps.max_bytes = 16u << 20;
	if (mj_proto_unpack(&moonjail__v1__request__descriptor, j->wreq->request.data,
	                    j->wreq->request.len, &caps, &m, why, sizeof(why)) != MJ_OK)
		goto bad;
	j->req = (mj_request *)m;
	id = j->req->id;
	if (!wk_ops_validate(j->req, why, sizeof(why)))
		goto bad;
	if (!wk_ops_policy(j->wreq->policy, &j->defaults, &j->policy, why, sizeof(why)))
		goto bad;
	/* The request is decoded on its own: the envelope's copy of its bytes can go now. */
	mj_proto_free(&j->wreq->base);
	j->wreq = NULL;
	j->size = len;
	if (j->req->op_case == MOONJAIL__V1__REQUEST__OP_PING) {
		job_free(j);
		wk_ops_ok(id, &buf, &blen);
		send_reply(w, tag, buf, blen);
		return;
	}
	pthread_mutex_lock(&w->mu);
	if (w->stopping) {
		pthread_mutex_unlock(&w->mu);
		job_free(j);
		reply_error(w, tag, id, MJ_KIND_ENGINE_LOST, "the worker is shutting down");
		return;
	}
	if ((s = wk_table_get(w, j->req->tenant, wk_ops_engine_name(j->req))) == NULL) {
		pthread_mutex_unlock(&w->mu);
		job_free(j);
		reply_error(w, tag, id, MJ_KIND_INTERNAL, "out of memory");
		return;
	}
	w->busy++;
	w->queued_bytes += j->size;
	if (s->tail != NULL)
		s->tail->next = j;
	else
		s->head = j;
	s->tail = j;
	if (!s->running && !s->ready)
		ready_push(w, s);
	pthread_mutex_unlock(&w->mu);
	return;

bad:
	/* Names in a bad request are not trusted enough to log. */
	wk_log("event=bad_request id=%llu reason=\"%s\"", (unsigned long long)id, why);
	job_free(j);
	reply_error(w, tag, id, MJ_KIND_BAD_REQUEST, why);
}

/* Reads what the stream has (blocking until something arrives) and queues or answers every
 * whole frame. The caller holds the reader role, not w->mu. false at the end of the stream
 * during a shutdown; any other end of the stream ends the process. */
static bool
read_some(wk_worker *w)
{
	const uint8_t *payload;
	char msg[128];
	uint64_t tag;
	size_t len;
	ssize_t n;

	if ((n = mj_frame_fill(&w->in, w->fd)) <= 0) {
		if (n < 0 && errno == ENOMEM) {
			/* A frame within the limit that does not fit in memory: the stream cannot
			 * be resynchronised without reading it. */
			wk_log("event=exit reason=out_of_memory what=\"request buffer\"");
			_exit(1);
		}
		connection_lost(w, n < 0 ? errno : 0);
		return false;
	}
	for (;;) {
		switch (mj_frame_next(&w->in, &tag, &payload, &len)) {
		case MJ_FRAME_OK:
			received(w, tag, payload, len);
			continue;
		case MJ_FRAME_TOO_BIG:
			wk_log("event=bad_request reason=\"frame of %zu bytes\"", len);
			snprintf(msg, sizeof(msg),
			         "the request is %zu bytes; the largest accepted is %zu", len,
			         (size_t)WK_RECV_MAX);
			reply_error(w, tag, 0, MJ_KIND_BAD_REQUEST, msg);
			continue;
		case MJ_FRAME_NONE:
			return true;
		}
	}
}

/* Takes the next ready slot. Called with w->mu held and a slot ready. */
static wk_slot *
ready_pop(wk_worker *w)
{
	wk_slot *s = w->ready_head;

	w->ready_head = s->ready_next;
	if (w->ready_head == NULL)
		w->ready_tail = NULL;
	s->ready_next = NULL;
	s->ready = false;
	s->running = true;
	return s;
}

/* Runs one job of slot s and answers it. Called with w->mu held; returns with it held. */
static void
run_one(wk_worker *w, wk_slot *s)
{
	wk_slot *evicted;
	wk_job *j;
	uint8_t *buf;
	size_t len;
	bool stopping;

	j = s->head;
	s->head = j->next;
	if (s->head == NULL)
		s->tail = NULL;
	j->next = NULL;
	if (w->queued_bytes >= WK_QUEUE_BYTES && w->queued_bytes - j->size < WK_QUEUE_BYTES)
		pthread_cond_broadcast(&w->work_cv); /* reading may resume */
	w->queued_bytes -= j->size;
	stopping = w->stopping;
	pthread_mutex_unlock(&w->mu);

#ifdef MJ_TEST_HOOKS
	wk_test_tag = j->tag;    /* for hooks that forge this call's reply */
	wk_test_trickle = false; /* trickle_reply slows this call's reply only */
#endif
	if (stopping)
		wk_ops_error(j->req->id, MJ_KIND_ENGINE_LOST, "the worker is shutting down", &buf,
		             &len);
	else
		wk_ops_execute(w, s, j, &buf, &len);

	pthread_mutex_lock(&w->mu);
	s->running = false;
	if (s->engine != NULL)
		wk_table_update(w, s, mj_engine_memory(s->engine));
	if (s->head != NULL) {
		/* One job per turn: a tenant with a long queue waits behind the others. */
		ready_push(w, s);
	} else {
		wk_table_release(w, s);
	}
	evicted = wk_table_evict(w);
	/* This executor runs another job next: its reply may wait for that one's, and the guard
	 * writes it if that job runs long. */
	if (w->ready_head != NULL && !w->stopping && hold_reply(w, j->tag, buf, len)) {
		buf = NULL;
		if (!w->guard_active) {
			w->guard_active = true;
			pthread_cond_signal(&w->guard_cv);
		}
	}
	pthread_mutex_unlock(&w->mu);

	if (buf != NULL)
		send_reply(w, j->tag, buf, len);
	job_free(j);
	wk_table_free_evicted(evicted);
	pthread_mutex_lock(&w->mu);
	w->busy--;
	if (w->busy == 0)
		pthread_cond_broadcast(&w->idle_cv);
}

/* Each executor runs ready jobs, or else reads the stream when no other executor is reading,
 * or else waits. The one that read runs a job it queued itself, so a call reaches Lua without
 * a thread hand-off. Other work waiting meanwhile is left to the guard: a long call never
 * leaves the stream unread or another engine's job waiting for long while an executor is
 * free. */
static void *
executor(void *arg)
{
	wk_worker *w = arg;

	pthread_mutex_lock(&w->mu);
	w->started++;
	pthread_cond_broadcast(&w->idle_cv);
	while (!w->go && !w->quit)
		pthread_cond_wait(&w->work_cv, &w->mu);
	while (!w->quit) {
		if (w->ready_head != NULL) {
			wk_slot *s = ready_pop(w);
			if (w->ready_head != NULL || may_read(w)) {
				/* Other work waits while this job runs. Most jobs are short and
				 * this executor takes that work next; waking another one now would
				 * cost a wake-up per request. The guard wakes one if this job runs
				 * long. */
				w->stalled_since = mj_now_ns();
				w->last_job_ns = w->stalled_since;
				if (!w->guard_active) {
					w->guard_active = true;
					pthread_cond_signal(&w->guard_cv);
				}
			}
			run_one(w, s);
			continue;
		}
		/* Requests waiting for their engine hold memory: past the cap, the socket holds
		 * the rest and moonjaild's queue behind it. */
		if (may_read(w)) {
			bool more;
			w->reading = true;
			w->stalled_since = 0;
			pthread_mutex_unlock(&w->mu);
			flush_out(w);
			more = read_some(w);
			pthread_mutex_lock(&w->mu);
			w->reading = false;
			if (!more) {
				w->eof = true;
				pthread_cond_broadcast(&w->work_cv);
			}
			continue;
		}
		if (atomic_load(&w->out_since) != 0) {
			/* Nothing this executor holds back may wait while it sleeps. */
			pthread_mutex_unlock(&w->mu);
			flush_out(w);
			pthread_mutex_lock(&w->mu);
			continue;
		}
		w->waiting++;
		pthread_cond_wait(&w->work_cv, &w->mu);
		w->waiting--;
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Wakes an executor when work (the stream, or a ready job) has waited for over WK_HANDOFF_NS
 * behind a running job, so a long call never stalls other engines while an executor is free.
 * It ticks only while requests keep arriving. */
static void *
guard(void *arg)
{
	wk_worker *w = arg;
	struct timespec ts;
	uint64_t now, held;

	pthread_mutex_lock(&w->mu);
	w->started++;
	pthread_cond_broadcast(&w->idle_cv);
	while (!w->quit) {
		if (!w->guard_active) {
			pthread_cond_wait(&w->guard_cv, &w->mu);
			continue;
		}
		now = mj_now_ns();
		held = atomic_load(&w->out_since);
		if (held != 0 && now - held >= WK_OUT_HOLD_NS) {
			pthread_mutex_unlock(&w->mu);
			flush_out(w);
			pthread_mutex_lock(&w->mu);
			continue;
		}
		if (w->stalled_since != 0 && now - w->stalled_since >= WK_HANDOFF_NS &&
		    (may_read(w) || w->ready_head != NULL) && w->waiting > 0) {
			/* One waiting executor per piece of waiting work (the stream, each ready
			 * slot), so a backlog on a many-core machine is spread at once rather
			 * than one executor per tick. */
			unsigned want = may_read(w) ? 1 : 0, k;
			const wk_slot *r;
			for (r = w->ready_head; r != NULL && want < w->waiting; r = r->ready_next)
				want++;
			for (k = 0; k < want; k++)
				pthread_cond_signal(&w->work_cv);
			w->stalled_since = 0;
		}
		if (now - w->last_job_ns > WK_GUARD_IDLE_NS && w->stalled_since == 0 && held == 0) {
			w->guard_active = false;
			continue;
		}
		mj_abs_time(CLOCK_MONOTONIC, &ts, WK_HANDOFF_NS);
		pthread_cond_timedwait(&w->guard_cv, &w->mu, &ts);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void
stop_threads(wk_worker *w)
{
	unsigned i;

	pthread_mutex_lock(&w->mu);
	w->quit = true;
	pthread_cond_broadcast(&w->work_cv);
	pthread_cond_broadcast(&w->idle_cv);
	pthread_cond_broadcast(&w->guard_cv);
	pthread_mutex_unlock(&w->mu);
	for (i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	w->nthreads = 0;
	if (w->have_guard)
		pthread_join(w->guard_thread, NULL);
	w->have_guard = false;
	flush_out(w);
}

mj_err
wk_serve_init(wk_worker *w)
{
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	pthread_attr_t attr;
	unsigned i, want;
	int rv, mrv;

	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
	mrv = pthread_mutex_init(&w->wmu, &ma);
	pthread_mutexattr_destroy(&ma);
	if (mrv != 0)
		return MJ_ENOMEM;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	mrv = pthread_cond_init(&w->guard_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (mrv != 0)
		goto fail_guard_cv;
	if (mj_frame_reader_init(&w->in, WK_RECV_MAX) != MJ_OK)
		goto fail_reader_buf;
	if ((w->threads = mj_calloc(w->nexec, sizeof(*w->threads))) == NULL)
		goto fail_threads;
	if (pthread_attr_init(&attr) != 0)
		goto fail_attr;
	pthread_attr_setstacksize(&attr, WK_EXEC_STACK);
	for (i = 0; i < w->nexec; i++) {
		if ((rv = pthread_create(&w->threads[i], &attr, executor, w)) != 0) {
			wk_log("event=error what=pthread_create error=\"%s\"", strerror(rv));
			goto fail_create;
		}
		w->nthreads++;
	}
	pthread_attr_setstacksize(&attr, (size_t)64 << 10);
	if ((rv = pthread_create(&w->guard_thread, &attr, guard, w)) != 0) {
		wk_log("event=error what=pthread_create error=\"%s\"", strerror(rv));
		goto fail_create;
	}
	w->have_guard = true;
	pthread_attr_destroy(&attr);
	/* Confinement follows, and a thread that has not run yet would meet the filter in its
	 * own start-up: wait until each thread is in its loop. */
	want = w->nthreads + 1;
	pthread_mutex_lock(&w->mu);
	while (w->started < want)
		pthread_cond_wait(&w->idle_cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	return MJ_OK;

fail_create:
	pthread_attr_destroy(&attr);
	stop_threads(w);
fail_attr:
	mj_free(w->threads);
	w->threads = NULL;
fail_threads:
	mj_frame_reader_fini(&w->in);
fail_reader_buf:
	pthread_cond_destroy(&w->guard_cv);
fail_guard_cv:
	pthread_mutex_destroy(&w->wmu);
	return MJ_ENOMEM;
}

void
wk_serve_start(wk_worker *w)
{
	pthread_mutex_lock(&w->mu);
	w->go = true;
	pthread_cond_broadcast(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
}

bool
wk_serve_stop(wk_worker *w, unsigned wait_ms)
{
	struct timespec deadline;
	bool drained = true;

	mj_abs_time(CLOCK_REALTIME, &deadline, (uint64_t)wait_ms * 1000000u);
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_broadcast(&w->work_cv);
	while (w->busy > 0) {
		if (pthread_cond_timedwait(&w->idle_cv, &w->mu, &deadline) == ETIMEDOUT) {
			drained = w->busy == 0;
			break;
		}
	}
	pthread_mutex_unlock(&w->mu);
	if (!drained)
		return false;
	/* Ends a read in progress: the reader sees the end of the stream while stopping. */
	shutdown(w->fd, SHUT_RD);
	stop_threads(w);
	return true;
}

void
wk_serve_fini(wk_worker *w)
{
	mj_free(w->threads);
	w->threads = NULL;
	mj_frame_reader_fini(&w->in);
	pthread_cond_destroy(&w->guard_cv);
	pthread_mutex_destroy(&w->wmu);
}
