/* Client calls: receive, check, route to the tenant's worker, and answer exactly once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/transport/ipc/ipc.h>

#include "mj/proto.h"
#include "mj/text.h"
#include "supervisor.h"

enum { C_RECV, C_WORKER, C_REPLY };

struct sv_call {
	int state;
	nng_ctx cctx;
	nng_aio *caio;
	int worker;
	uint64_t id;
	uint32_t index; /* in sv.calls; with gen, the tag of its frame */
	uint32_t gen;   /* bumped at each dispatch, so a late answer cannot match a later call */
	sv_call *prev, *next; /* on the worker's in-flight list, under sv.lock */
	bool linked;
	sv_call *done;          /* on one of the link thread's lists once taken */
	sv_out *frame;          /* the WorkerRequest frame, kept while no process has the slot */
	const uint8_t *payload; /* the worker's Response, once taken: in the link's buffer */
	size_t paylen;
	uint64_t deadline_ns; /* the hard deadline, once armed */
	uint64_t per_call_ms; /* the deadline's length; 0 for none */
	bool armed;           /* the deadline runs: the call may be running */
	uint64_t lane_key;    /* its engine, hashed */
	struct lane *lane;    /* the calls in flight to its engine, when it is among them */
	sv_call *lnext;
	char tenant[129];  /* for strikes when its worker dies */
	char culprit[129]; /* the tenant struck when this call's deadline kills the worker */
	pid_t worker_pid;  /* the process the call went to, 0 if none was running */
	bool quarantined;  /* routed to the quarantine pool; the reply says so */
};

/* The calls in flight to one engine, oldest first. The worker runs them one at a time, in
 * this order, so only the oldest can be running: the hard deadline of the next one starts
 * when it becomes the oldest. Keyed by a hash of tenant and engine name; a collision only
 * makes a deadline start later. Under sv.lock. */
typedef struct lane {
	struct lane *next;
	uint64_t key;
	sv_call *head, *tail;
} lane;

#define NLANES 1024
static lane *lanes[NLANES];

bool
sv_tenant_name_ok(const char *s)
{
	size_t n;

	if (s == NULL)
		return false;
	for (n = 0; s[n] != '\0'; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return n >= 1 && n <= 128;
}

static void start_recv(sv_call *c);

/* Sends a supervisor-made response on the client context. */
static void
reply_error(sv_call *c, mj_kind kind, const char *msg)
{
	Moonjail__V1__Response res = MOONJAIL__V1__RESPONSE__INIT;
	Moonjail__V1__Error err = MOONJAIL__V1__ERROR__INIT;
	uint8_t *buf = NULL;
	nng_msg *m = NULL;
	size_t len;

	res.id = c->id;
	res.quarantined = c->quarantined;
	if (kind != MJ_KIND_NONE) {
		res.status = MOONJAIL__V1__STATUS__STATUS_ERROR;
		err.kind = mj_proto_kind(kind);
		err.message = (char *)msg;
		res.error = &err;
	}
	if (mj_proto_pack(&res.base, &buf, &len) != MJ_OK || nng_msg_alloc(&m, 0) != 0 ||
	    nng_msg_append(m, buf, len) != 0) {
		/* Without memory for an answer, the REP context is reset by receiving again; the
		 * client's own timeout reports it. */
		mj_free(buf);
		if (m != NULL)
			nng_msg_free(m);
		sv_log("error", "what=\"cannot build a reply\" id=%llu", (unsigned long long)c->id);
		atomic_fetch_sub(&sv.busy, 1);
		start_recv(c);
		return;
	}
	mj_free(buf);
	c->state = C_REPLY;
	nng_aio_set_msg(c->caio, m);
	nng_ctx_send(c->cctx, c->caio);
}

static void
reply_msg(sv_call *c, nng_msg *m)
{
	/* Response field 10, quarantined = true: appended to the worker's bytes, where a later
	 * field simply adds to the message. */
	static const uint8_t quarantined_field[] = {10 << 3, 1};

	if (c->quarantined && nng_msg_append(m, quarantined_field, sizeof(quarantined_field)) != 0)
		sv_log("error", "what=\"cannot mark a reply quarantined\" id=%llu",
		       (unsigned long long)c->id);
	c->state = C_REPLY;
	nng_aio_set_msg(c->caio, m);
	nng_ctx_send(c->cctx, c->caio);
}

static void
start_recv(sv_call *c)
{
	if (atomic_load(&sv.draining)) {
		c->state = -1;
		return;
	}
	c->state = C_RECV;
	nng_ctx_recv(c->cctx, c->caio);
}

/* Starts c's hard deadline: its own length, multiplied by the calls ahead of it per executor,
 * since it may also wait for an executor. Called with sv.lock held. */
static void
arm(sv_call *c, uint64_t now)
{
	const sv_worker *w = &sv.workers[c->worker];
	unsigned per = sv.cfg.executors > 0 ? (unsigned)sv.cfg.executors : 1;
	unsigned ahead = w->ninflight > 0 ? w->ninflight - 1 : 0;
	uint64_t d;

	if (c->armed || c->per_call_ms == 0)
		return;
	d = c->per_call_ms * (1 + ahead / per);
	c->deadline_ns = now + (d > 3600000 ? 3600000 : d) * 1000000ull;
	c->armed = true;
}

/* Puts c behind the calls in flight to its engine; arms its deadline when it is the first.
 * Called with sv.lock held. */
static void
lane_join(sv_call *c, uint64_t now)
{
	lane **slot = &lanes[c->lane_key % NLANES], *l;

	for (l = *slot; l != NULL && l->key != c->lane_key; l = l->next)
		;
	if (l == NULL && (l = calloc(1, sizeof(*l))) != NULL) {
		l->key = c->lane_key;
		l->next = *slot;
		*slot = l;
	}
	c->lane = l;
	c->lnext = NULL;
	if (l == NULL) {
		arm(c, now); /* out of memory: as if it ran at once */
		return;
	}
	if (l->tail != NULL) {
		l->tail->lnext = c;
	} else {
		l->head = c;
		arm(c, now);
	}
	l->tail = c;
}

/* Takes c out of its lane; the next call to the engine may run now. Called with sv.lock held.
 */
static void
lane_leave(sv_call *c)
{
	lane *l = c->lane, **pp;
	sv_call **cp, *prev = NULL;

	if (l == NULL)
		return;
	c->lane = NULL;
	for (cp = &l->head; *cp != NULL && *cp != c; cp = &(*cp)->lnext)
		prev = *cp;
	if (*cp == c) {
		*cp = c->lnext;
		if (l->tail == c)
			l->tail = prev;
	}
	c->lnext = NULL;
	if (l->head != NULL) {
		arm(l->head, mj_now_ns());
		return;
	}
	for (pp = &lanes[l->key % NLANES]; *pp != l; pp = &(*pp)->next)
		;
	*pp = l->next;
	free(l);
}

/* Takes c off its worker's in-flight list. Called with sv.lock held. */
static void
unlink_call(sv_call *c)
{
	sv_worker *w = &sv.workers[c->worker];

	if (!c->linked)
		return;
	lane_leave(c);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->inflight = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		w->inflight_tail = c->prev;
	c->prev = c->next = NULL;
	w->ninflight--;
	c->linked = false;
	free(c->frame);
	c->frame = NULL;
}

/* The hard deadline of one call once it runs, in ms: the tenant's timeout plus the margin; 0
 * for none. */
static uint64_t
deadline_for(const mj_tenant_policy *p)
{
	uint64_t ms;

	if (p->max.timeout_ms == 0)
		return 0;
	ms = (uint64_t)p->max.timeout_ms + sv.cfg.deadline_margin_ms;
	return ms > 3600000 ? 3600000 : ms;
}

static void dispatch(sv_call *c, sv_out *frame, uint64_t per_call_ms);

/* Appends v as a protobuf varint; returns the bytes written. */
static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	return n;
}

static void
forward(sv_call *c, nng_msg *req, const mj_request *r)
{
	uint8_t pol[SV_POLICY_WIRE_MAX], *q;
	sv_out *frame;
	size_t plen, rlen = nng_msg_len(req), len;
	mj_tenant_policy p;

	plen = sv_policy_for(r->tenant, &p, pol);
	snprintf(c->tenant, sizeof(c->tenant), "%s", r->tenant);
	c->lane_key = mj_fnv1a(mj_fnv1a(mj_fnv1a(MJ_FNV1A_INIT, r->tenant), "/"),
	                       r->engine != NULL && r->engine[0] != '\0' ? r->engine : "default");
	/* The WorkerRequest by hand, behind the frame header: field 1 the client's request
	 * bytes, field 2 the tenant's policy packed when the policies were loaded. */
	len = 1 + 10 + rlen + 1 + 10 + plen;
	if ((frame = sv_out_new(MJ_FRAME_HEADER + len)) == NULL) {
		reply_error(c, MJ_KIND_INTERNAL, "the supervisor is out of memory");
		return;
	}
	q = frame->buf + MJ_FRAME_HEADER;
	*q++ = 1 << 3 | 2;
	q += put_varint(q, rlen);
	memcpy(q, nng_msg_body(req), rlen);
	q += rlen;
	*q++ = 2 << 3 | 2;
	q += put_varint(q, plen);
	memcpy(q, pol, plen);
	q += plen;
	frame->len = (size_t)(q - frame->buf);
	dispatch(c, frame, deadline_for(&p));
}

/* Sends c's WorkerRequest frame to the process serving its worker slot, or keeps it for the
 * next process when the slot has none. Calls to one engine reach the worker in the order they
 * are dispatched: the stream keeps order and the worker runs an engine's calls in turn. */
static void
dispatch(sv_call *c, sv_out *frame, uint64_t per_call_ms)
{
	uint64_t tag, h = mj_fnv1a(MJ_FNV1A_INIT, c->tenant);
	sv_link *l = NULL;
	sv_worker *w;

	pthread_mutex_lock(&sv.lock);
	c->quarantined = sv.cfg.quarantine_workers > 0 && sv_quarantined(c->tenant);
	if (c->quarantined)
		c->worker = sv.cfg.nworkers + (int)(h % (uint64_t)sv.cfg.quarantine_workers);
	else
		c->worker = (int)(h % (uint64_t)sv.cfg.nworkers);
	w = &sv.workers[c->worker];
	c->gen++;
	tag = (uint64_t)c->gen << 32 | c->index;
	mj_frame_header(frame->buf, (uint32_t)(frame->len - MJ_FRAME_HEADER), tag);
	c->prev = w->inflight_tail;
	c->next = NULL;
	if (w->inflight_tail != NULL)
		w->inflight_tail->next = c;
	else
		w->inflight = c;
	w->inflight_tail = c;
	w->ninflight++;
	c->linked = true;
	c->state = C_WORKER;
	c->per_call_ms = per_call_ms;
	c->armed = false;
	c->deadline_ns = 0;
	lane_join(c, mj_now_ns());
	if (w->link != NULL && !w->link->eof && w->pid != 0) {
		/* The link's own lock, taken before ours is released: frames reach the stream
		 * in dispatch order, and the write happens outside the routing lock. */
		l = w->link;
		c->worker_pid = w->pid;
		pthread_mutex_lock(&l->wmu);
	} else {
		c->worker_pid = 0;
		c->frame = frame;
	}
	pthread_mutex_unlock(&sv.lock);
	if (l != NULL) {
		sv_link_send(l, frame);
		pthread_mutex_unlock(&l->wmu);
	}
}

static void
handle_request(sv_call *c, nng_msg *m)
{
	ProtobufCMessage *pm = NULL;
	mj_proto_caps caps;
	mj_request *r;
	char why[160], msg[256];
	mj_err err;

	atomic_fetch_add(&sv.busy, 1);
	c->id = 0;
	c->quarantined = false;
	mj_proto_caps_default(&caps);
	caps.memory_budget = 64u << 20;
	err = mj_proto_unpack(&moonjail__v1__request__descriptor, nng_msg_body(m), nng_msg_len(m),
	                      &caps, &pm, why, sizeof(why));
	if (err != MJ_OK) {
		nng_msg_free(m);
		snprintf(msg, sizeof(msg), "malformed request: %s", why);
		sv_log("bad-request", "reason=\"%s\"", why);
		reply_error(c, MJ_KIND_BAD_REQUEST, msg);
		return;
	}
	r = (mj_request *)pm;
	c->id = r->id;
	if (sv_conn_refused(nng_msg_get_pipe(m))) {
		mj_proto_free(pm);
		nng_msg_free(m);
		snprintf(msg, sizeof(msg),
		         "moonjaild is at its connection limit (max_connections=%d); the call did "
		         "not run, and this connection will be closed: try again later",
		         sv.cfg.max_connections);
		reply_error(c, MJ_KIND_INTERNAL, msg);
		return;
	}
	if (r->version != MJ_PROTO_VERSION) {
		snprintf(msg, sizeof(msg),
		         "unsupported protocol version %u (this server speaks %d)", r->version,
		         MJ_PROTO_VERSION);
		goto bad;
	}
	if (!sv_tenant_name_ok(r->tenant)) {
		snprintf(msg, sizeof(msg), "tenant must be 1-128 characters of A-Z a-z 0-9 . _ -");
		goto bad;
	}
	if (r->op_case == MOONJAIL__V1__REQUEST__OP__NOT_SET) {
		snprintf(msg, sizeof(msg), "the request has no operation");
		goto bad;
	}
	if (r->op_case == MOONJAIL__V1__REQUEST__OP_PING) {
		mj_proto_free(pm);
		nng_msg_free(m);
		reply_error(c, MJ_KIND_NONE, NULL);
		return;
	}
	if (atomic_load(&sv.draining)) {
		/* Received on a context posted before the drain began: refused, not run, so
		 * nothing reaches a worker once the drain has counted the calls in flight. */
		mj_proto_free(pm);
		nng_msg_free(m);
		reply_error(c, MJ_KIND_INTERNAL,
		            "moonjaild is shutting down; the call did not run");
		return;
	}
	forward(c, m, r);
	mj_proto_free(pm);
	nng_msg_free(m);
	return;

bad:
	sv_log("bad-request", "id=%llu reason=\"%s\"", (unsigned long long)c->id, msg);
	mj_proto_free(pm);
	nng_msg_free(m);
	reply_error(c, MJ_KIND_BAD_REQUEST, msg);
}

static void
client_cb(void *arg)
{
	sv_call *c = arg;
	int rv = nng_aio_result(c->caio);

	if (c->state == C_RECV) {
		if (rv != 0) {
			if (rv != NNG_ECLOSED && rv != NNG_ECANCELED)
				start_recv(c);
			return;
		}
		handle_request(c, nng_aio_get_msg(c->caio));
		return;
	}
	if (c->state == C_REPLY) {
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(c->caio));
		atomic_fetch_sub(&sv.busy, 1);
		if (rv != NNG_ECLOSED)
			start_recv(c);
	}
}

static bool
reply_ok(const uint8_t *buf, size_t len)
{
	mj_proto_caps caps;

	mj_proto_caps_default(&caps);
	return mj_proto_validate(&moonjail__v1__response__descriptor, buf, len, &caps, NULL, 0) ==
	       MJ_OK;
}

bool
sv_call_take(sv_worker *w, pid_t pid, uint64_t tag, const uint8_t *payload, size_t len,
             sv_call **list)
{
	uint32_t index = (uint32_t)tag;
	sv_call *c;

	if (index >= (uint32_t)sv.cfg.ncalls)
		return false;
	c = &sv.calls[index];
	if (!c->linked || c->gen != (uint32_t)(tag >> 32) || c->worker_pid != pid ||
	    &sv.workers[c->worker] != w)
		return false;
	unlink_call(c);
	c->payload = payload;
	c->paylen = len;
	c->done = *list;
	*list = c;
	return true;
}

sv_call *
sv_calls_take_lost(sv_worker *w, pid_t pid, sv_call *list)
{
	sv_call *c, *next;

	for (c = w->inflight; c != NULL; c = next) {
		next = c->next;
		if (c->worker_pid != pid || pid == 0)
			continue;
		/* The worker died with this call in flight: the call may be what killed it. */
		if (w->culprit_pid != pid)
			sv_quarantine_suspect(c->tenant, (uint64_t)pid);
		unlink_call(c);
		c->done = list;
		list = c;
	}
	return list;
}

sv_call *
sv_calls_take_expired(sv_worker *w, uint64_t now, sv_call *list)
{
	sv_call *c, *o, *before = list;
	bool draining = atomic_load(&sv.draining);

	/* Every culprit is found before any call leaves the list: otherwise, when two calls of
	 * one process expire in the same pass, the later one would blame the tenant behind the
	 * stuck call. */
	for (c = w->inflight; c != NULL; c = c->next) {
		/* No process will take a draining slot's waiting calls. */
		if (!(c->armed && now >= c->deadline_ns) && !(draining && c->worker_pid == 0))
			continue;
		/* A process past a hard deadline is most likely stuck on its oldest call: the call
		 * that timed out first may only have waited behind it, with a shorter timeout. */
		for (o = w->inflight; o != NULL && o->worker_pid != c->worker_pid; o = o->next)
			;
		snprintf(c->culprit, sizeof(c->culprit), "%s", o != NULL ? o->tenant : c->tenant);
		c->done = list;
		list = c;
	}
	for (c = list; c != before; c = c->done)
		unlink_call(c);
	return list;
}

sv_call *
sv_call_next(const sv_call *c)
{
	return c->done;
}

void
sv_call_finish_reply(sv_call *c)
{
	nng_msg *m = NULL;

	if (!reply_ok(c->payload, c->paylen)) {
		/* A worker that sends garbage is not trusted with more requests. */
		sv_worker_kill(c->worker, c->worker_pid, "malformed-reply");
		reply_error(c, MJ_KIND_ENGINE_LOST,
		            "the worker sent a malformed reply and was replaced; the engine's "
		            "state is lost");
		return;
	}
	if (nng_msg_alloc(&m, c->paylen) != 0) {
		reply_error(c, MJ_KIND_INTERNAL, "the supervisor is out of memory");
		return;
	}
	memcpy(nng_msg_body(m), c->payload, c->paylen);
	reply_msg(c, m);
}

void
sv_call_finish_lost(sv_call *c)
{
	reply_error(c, MJ_KIND_ENGINE_LOST,
	            "the worker holding this engine died; the engine's state is lost");
}

void
sv_call_finish_expired(sv_call *c)
{
	if (c->worker_pid == 0) {
		if (atomic_load(&sv.draining))
			reply_error(c, MJ_KIND_ENGINE_LOST, "the service is shutting down");
		else
			reply_error(c, MJ_KIND_TIMEOUT,
			            "no worker could take the call before its hard deadline");
		return;
	}
	sv_worker_kill_for(c->worker, c->worker_pid, "hard-deadline", c->culprit);
	reply_error(c, MJ_KIND_TIMEOUT,
	            "the call overran the hard deadline; its worker was replaced and the "
	            "engine's state is lost");
}

void
sv_router_worker_started(int index, pid_t pid)
{
	sv_worker *w = &sv.workers[index];
	sv_call *c;

	for (c = w->inflight; c != NULL; c = c->next) {
		if (c->worker_pid != 0 || c->frame == NULL)
			continue;
		c->worker_pid = pid;
		pthread_mutex_lock(&w->link->wmu);
		sv_link_send(w->link, c->frame);
		pthread_mutex_unlock(&w->link->wmu);
		c->frame = NULL;
	}
}

int
sv_router_start(void)
{
	int i, rv;

	if ((rv = nng_rep0_open(&sv.front)) != 0)
		return rv;
	nng_socket_set_size(sv.front, NNG_OPT_RECVMAXSZ, SV_MAX_MESSAGE);
	if ((rv = sv_listeners_start()) != 0)
		return rv;
	if ((sv.calls = calloc((size_t)sv.cfg.ncalls, sizeof(sv_call))) == NULL)
		return NNG_ENOMEM;
	for (i = 0; i < sv.cfg.ncalls; i++) {
		sv_call *c = &sv.calls[i];
		c->index = (uint32_t)i;
		if ((rv = nng_aio_alloc(&c->caio, client_cb, c)) != 0 ||
		    (rv = nng_ctx_open(&c->cctx, sv.front)) != 0)
			return rv;
	}
	for (i = 0; i < sv.cfg.ncalls; i++)
		start_recv(&sv.calls[i]);
	return 0;
}

void
sv_router_stop(void)
{
	int i;

	sv_listeners_stop();
	if (sv.calls != NULL) {
		for (i = 0; i < sv.cfg.ncalls; i++) {
			nng_aio_stop(sv.calls[i].caio);
		}
	}
	nng_close(sv.front);
	if (sv.calls != NULL) {
		for (i = 0; i < sv.cfg.ncalls; i++) {
			nng_aio_free(sv.calls[i].caio);
			free(sv.calls[i].frame);
		}
		free(sv.calls);
		sv.calls = NULL;
	}
}
