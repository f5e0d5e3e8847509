/* Request flow: REP contexts decode and queue, executor threads run each engine in order. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "worker.h"

/* Lua needs at least 4 MiB of C stack per calling thread (see docs/engine.md). */
#define WK_EXEC_STACK ((size_t)8 << 20)

static void
ctx_set_state(wk_worker *w, wk_ctx *c, wk_state st)
{
	bool was = c->state == WK_DECODE || c->state == WK_JOB || c->state == WK_SEND;
	bool is = st == WK_DECODE || st == WK_JOB || st == WK_SEND;

	c->state = st;
	if (was && !is) {
		w->busy--;
		pthread_cond_broadcast(&w->idle_cv);
	} else if (!was && is) {
		w->busy++;
	}
}

/* Starts the next receive, unless the worker is stopping. Called without w->mu. */
static void
ctx_recv(wk_ctx *c)
{
	wk_worker *w = c->w;
	bool go;

	pthread_mutex_lock(&w->mu);
	go = !w->stopping;
	ctx_set_state(w, c, go ? WK_RECV : WK_IDLE);
	pthread_mutex_unlock(&w->mu);
	if (go)
		nng_ctx_recv(c->ctx, c->aio);
}

/* Sends buf as c's reply; a REP context must answer before it can receive again. */
static void
ctx_send(wk_ctx *c, uint8_t *buf, size_t len)
{
	wk_worker *w = c->w;
	nng_msg *msg = NULL;

	if (buf == NULL || nng_msg_alloc(&msg, len) != 0) {
		/* Without a reply the supervisor's request stays pending until its socket notices
		 * the worker is gone; that only happens when memory is exhausted. */
		mj_free(buf);
		wk_log("event=reply_lost reason=out_of_memory");
		ctx_recv(c);
		return;
	}
	memcpy(nng_msg_body(msg), buf, len);
	mj_free(buf);
	pthread_mutex_lock(&w->mu);
	ctx_set_state(w, c, WK_SEND);
	pthread_mutex_unlock(&w->mu);
	nng_aio_set_msg(c->aio, msg);
	nng_ctx_send(c->ctx, c->aio);
}

static void
ctx_reply_error(wk_ctx *c, uint64_t id, mj_kind kind, const char *msg)
{
	uint8_t *buf;
	size_t len;

	wk_ops_error(id, kind, msg, &buf, &len);
	ctx_send(c, buf, len);
}

static void
job_clear(wk_ctx *c)
{
	mj_proto_free(c->req != NULL ? &c->req->base : NULL);
	mj_proto_free(c->wreq != NULL ? &c->wreq->base : NULL);
	c->req = NULL;
	c->wreq = NULL;
}

/* Decodes a received WorkerRequest and queues it; every failure is answered at once. */
static void
ctx_received(wk_ctx *c, nng_msg *msg)
{
	wk_worker *w = c->w;
	mj_proto_caps caps;
	ProtobufCMessage *m = NULL;
	char why[256] = "";
	uint64_t id = 0;
	uint8_t *buf;
	size_t len;
	wk_slot *s;

	mj_proto_caps_default(&caps);
	caps.max_bytes = WK_RECV_MAX;
	caps.max_messages = 1u << 20;
	caps.memory_budget = 64u << 20;
	if (mj_proto_unpack(&moonjail__internal__v1__worker_request__descriptor, nng_msg_body(msg),
	                    nng_msg_len(msg), &caps, &m, why, sizeof(why)) != MJ_OK) {
		nng_msg_free(msg);
		goto bad;
	}
	nng_msg_free(msg);
	c->wreq = (Moonjail__Internal__V1__WorkerRequest *)m;
	caps.max_bytes = 16u << 20;
	if (mj_proto_unpack(&moonjail__v1__request__descriptor, c->wreq->request.data,
	                    c->wreq->request.len, &caps, &m, why, sizeof(why)) != MJ_OK)
		goto bad;
	c->req = (mj_request *)m;
	id = c->req->id;
	if (!wk_ops_validate(c->req, why, sizeof(why)))
		goto bad;
	if (!wk_ops_policy(c->wreq->policy, &c->defaults, &c->policy, why, sizeof(why)))
		goto bad;
	if (c->req->op_case == MOONJAIL__V1__REQUEST__OP_PING) {
		job_clear(c);
		wk_ops_ok(id, &buf, &len);
		ctx_send(c, buf, len);
		return;
	}
	pthread_mutex_lock(&w->mu);
	if (w->stopping) {
		pthread_mutex_unlock(&w->mu);
		job_clear(c);
		ctx_reply_error(c, id, MJ_KIND_ENGINE_LOST, "the worker is shutting down");
		return;
	}
	if ((s = wk_table_get(w, c->req->tenant, wk_ops_engine_name(c->req))) == NULL) {
		pthread_mutex_unlock(&w->mu);
		job_clear(c);
		ctx_reply_error(c, id, MJ_KIND_INTERNAL, "out of memory");
		return;
	}
	ctx_set_state(w, c, WK_JOB);
	c->next = NULL;
	if (s->tail != NULL)
		s->tail->next = c;
	else
		s->head = c;
	s->tail = c;
	if (!s->running && !s->ready) {
		s->ready = true;
		s->ready_next = NULL;
		if (w->ready_tail != NULL)
			w->ready_tail->ready_next = s;
		else
			w->ready_head = s;
		w->ready_tail = s;
		pthread_cond_signal(&w->work_cv);
	}
	pthread_mutex_unlock(&w->mu);
	return;

bad:
	/* Names in a bad request are not trusted enough to log. */
	wk_log("event=bad_request id=%llu reason=\"%s\"", (unsigned long long)id, why);
	job_clear(c);
	ctx_reply_error(c, id, MJ_KIND_BAD_REQUEST, why);
}

static void
ctx_cb(void *arg)
{
	wk_ctx *c = arg;
	wk_worker *w = c->w;
	int rv = nng_aio_result(c->aio);
	wk_state st;

	pthread_mutex_lock(&w->mu);
	st = c->state;
	if (st == WK_RECV && rv == 0)
		ctx_set_state(w, c, WK_DECODE);
	pthread_mutex_unlock(&w->mu);
	if (st == WK_SEND) {
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(c->aio));
		ctx_recv(c);
		return;
	}
	if (rv != 0) {
		/* Closed or stopped: this context is done. Anything else is transient. */
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
			pthread_mutex_lock(&w->mu);
			ctx_set_state(w, c, WK_IDLE);
			pthread_mutex_unlock(&w->mu);
			return;
		}
		ctx_recv(c);
		return;
	}
	ctx_received(c, nng_aio_get_msg(c->aio));
}

/* Takes the next ready slot, waiting for one; NULL when the executors must leave. */
static wk_slot *
ready_pop(wk_worker *w)
{
	wk_slot *s;

	while (w->ready_head == NULL && !w->quit)
		pthread_cond_wait(&w->work_cv, &w->mu);
	if ((s = w->ready_head) == NULL)
		return NULL;
	w->ready_head = s->ready_next;
	if (w->ready_head == NULL)
		w->ready_tail = NULL;
	s->ready_next = NULL;
	s->ready = false;
	s->running = true;
	return s;
}

static void *
executor(void *arg)
{
	wk_worker *w = arg;
	wk_slot *s, *evicted;
	wk_ctx *c;
	uint8_t *buf;
	size_t len;
	bool stopping;

	pthread_mutex_lock(&w->mu);
	w->started++;
	pthread_cond_broadcast(&w->idle_cv);
	while ((s = ready_pop(w)) != NULL) {
		c = s->head;
		s->head = c->next;
		if (s->head == NULL)
			s->tail = NULL;
		c->next = NULL;
		stopping = w->stopping;
		pthread_mutex_unlock(&w->mu);

		if (stopping)
			wk_ops_error(c->req->id, MJ_KIND_ENGINE_LOST, "the worker is shutting down",
			             &buf, &len);
		else
			wk_ops_execute(w, s, c, &buf, &len);
		job_clear(c);

		pthread_mutex_lock(&w->mu);
		s->running = false;
		if (s->engine != NULL)
			wk_table_update(w, s, mj_engine_memory(s->engine));
		if (s->head != NULL) {
			/* One job per turn: a tenant with a long queue waits behind the others. */
			s->ready = true;
			if (w->ready_tail != NULL)
				w->ready_tail->ready_next = s;
			else
				w->ready_head = s;
			w->ready_tail = s;
			pthread_cond_signal(&w->work_cv);
		} else {
			wk_table_release(w, s);
		}
		evicted = wk_table_evict(w);
		pthread_mutex_unlock(&w->mu);

		ctx_send(c, buf, len);
		wk_table_free_evicted(evicted);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

mj_err
wk_serve_init(wk_worker *w)
{
	pthread_attr_t attr;
	unsigned i;
	int rv;

	if ((w->ctxs = mj_calloc(w->nctx, sizeof(*w->ctxs))) == NULL)
		return MJ_ENOMEM;
	if ((w->threads = mj_calloc(w->nexec, sizeof(*w->threads))) == NULL)
		goto fail;
	for (i = 0; i < w->nctx; i++) {
		wk_ctx *c = &w->ctxs[i];
		c->w = w;
		if ((rv = nng_ctx_open(&c->ctx, w->sock)) != 0) {
			wk_log("event=error what=nng_ctx_open error=\"%s\"", nng_strerror(rv));
			goto fail;
		}
		c->opened = true;
		if ((rv = nng_aio_alloc(&c->aio, ctx_cb, c)) != 0) {
			wk_log("event=error what=nng_aio_alloc error=\"%s\"", nng_strerror(rv));
			goto fail;
		}
	}
	if (pthread_attr_init(&attr) != 0)
		goto fail;
	pthread_attr_setstacksize(&attr, WK_EXEC_STACK);
	for (i = 0; i < w->nexec; i++) {
		if ((rv = pthread_create(&w->threads[i], &attr, executor, w)) != 0) {
			wk_log("event=error what=pthread_create error=\"%s\"", strerror(rv));
			pthread_attr_destroy(&attr);
			goto fail;
		}
		w->nthreads++;
	}
	pthread_attr_destroy(&attr);
	/* Confinement follows, and a thread that has not run yet would meet the filter in its
	 * own start-up: wait until each executor is in its loop. */
	pthread_mutex_lock(&w->mu);
	while (w->started < w->nthreads)
		pthread_cond_wait(&w->idle_cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	return MJ_OK;

fail:
	/* Nothing has been received yet, so stopping is only joining and freeing. */
	pthread_mutex_lock(&w->mu);
	w->quit = true;
	pthread_cond_broadcast(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
	for (i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	wk_serve_fini(w);
	return MJ_ENOMEM;
}

void
wk_serve_start(wk_worker *w)
{
	unsigned i;

	for (i = 0; i < w->nctx; i++)
		ctx_recv(&w->ctxs[i]);
}

bool
wk_serve_stop(wk_worker *w, unsigned wait_ms)
{
	struct timespec deadline;
	unsigned i;
	bool drained = true;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += wait_ms / 1000;
	deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
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
	/* No context is busy and none will start: every aio is idle or receiving. */
	for (i = 0; i < w->nctx; i++)
		nng_aio_stop(w->ctxs[i].aio);
	pthread_mutex_lock(&w->mu);
	w->quit = true;
	pthread_cond_broadcast(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
	for (i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	w->nthreads = 0;
	return true;
}

void
wk_serve_fini(wk_worker *w)
{
	unsigned i;

	if (w->ctxs != NULL) {
		for (i = 0; i < w->nctx; i++) {
			wk_ctx *c = &w->ctxs[i];
			if (c->aio != NULL) {
				nng_aio_stop(c->aio);
				nng_aio_free(c->aio);
			}
			if (c->opened)
				nng_ctx_close(c->ctx);
			job_clear(c);
		}
	}
	mj_free(w->ctxs);
	mj_free(w->threads);
	w->ctxs = NULL;
	w->threads = NULL;
}
