/* Client calls: receive, check, route to the tenant's worker, and answer exactly once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/transport/ipc/ipc.h>

#include "mj/proto.h"
#include "supervisor.h"

#define MAX_MESSAGE ((16u << 20) + (64u << 10))

enum { C_RECV, C_FWD_SEND, C_FWD_RECV, C_REPLY };

struct sv_call {
	int state;
	nng_ctx cctx;
	nng_aio *caio;
	nng_ctx wctx;
	bool wopen;
	nng_aio *waio;
	int worker;
	uint64_t id;
	bool lost; /* under sv.lock: the worker died with this call in flight */
	sv_call *prev, *next;
	bool linked;
	struct lane *lane; /* the engine's lane while the call holds or waits for it */
	sv_call *qnext;    /* next call waiting in the lane */
	nng_msg *pending;  /* the WorkerRequest of a waiting call */
	nng_duration per_call;
	char tenant[129]; /* for strikes when its worker dies */
	pid_t worker_pid; /* the process the call went to, 0 if none was running */
	uint64_t seq;     /* under sv.lock: dispatch order, oldest lowest */
	bool quarantined; /* routed to the quarantine pool; the reply says so */
};

/* Calls to one engine go to its worker one at a time, in the order the supervisor received
 * them: the worker decodes on several threads, so two requests in flight to one engine could
 * otherwise run in either order. */
typedef struct lane {
	struct lane *next;
	char key[300];
	bool busy;
	sv_call *head, *tail;
} lane;

#define NLANES 1024
static lane *lanes[NLANES];

static nng_listener listeners[SV_MAX_LISTEN];
static int nlisteners;

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

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
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

static void
unlink_call(sv_call *c)
{
	sv_worker *w;

	pthread_mutex_lock(&sv.lock);
	if (c->linked) {
		w = &sv.workers[c->worker];
		if (c->prev != NULL)
			c->prev->next = c->next;
		else
			w->inflight = c->next;
		if (c->next != NULL)
			c->next->prev = c->prev;
		w->ninflight--;
		c->linked = false;
	}
	pthread_mutex_unlock(&sv.lock);
}

/* The hard deadline of one call once it runs: the tenant's timeout plus the margin. */
static nng_duration
deadline_for(const mj_tenant_policy *p)
{
	uint64_t ms;

	if (p->max.timeout_ms == 0)
		return NNG_DURATION_INFINITE;
	ms = (uint64_t)p->max.timeout_ms + sv.cfg.deadline_margin_ms;
	return ms > 3600000 ? 3600000 : (nng_duration)ms;
}

static void dispatch(sv_call *c, nng_msg *m);

/* Takes the engine's lane for c, or queues c behind the call holding it. Returns true when c
 * may be sent now. */
static bool
lane_enter(sv_call *c, const char *tenant, const char *engine, nng_msg *m)
{
	char key[300];
	unsigned h;
	lane *l;

	snprintf(key, sizeof(key), "%s/%s", tenant, engine && *engine ? engine : "default");
	h = (unsigned)(fnv1a(key) % NLANES);
	pthread_mutex_lock(&sv.lock);
	for (l = lanes[h]; l != NULL && strcmp(l->key, key) != 0; l = l->next)
		;
	if (l == NULL) {
		if ((l = calloc(1, sizeof(*l))) == NULL) {
			/* Without memory for a lane the call goes out unordered rather than not at
			 * all. */
			pthread_mutex_unlock(&sv.lock);
			c->lane = NULL;
			return true;
		}
		snprintf(l->key, sizeof(l->key), "%s", key);
		l->next = lanes[h];
		lanes[h] = l;
	}
	c->lane = l;
	if (!l->busy) {
		l->busy = true;
		pthread_mutex_unlock(&sv.lock);
		return true;
	}
	c->pending = m;
	c->qnext = NULL;
	if (l->tail != NULL)
		l->tail->qnext = c;
	else
		l->head = c;
	l->tail = c;
	pthread_mutex_unlock(&sv.lock);
	return false;
}

/* Releases c's lane and sends the next waiting call, if any. */
static void
lane_leave(sv_call *c)
{
	sv_call *n = NULL;
	lane *l = c->lane, **pp;

	if (l == NULL)
		return;
	c->lane = NULL;
	pthread_mutex_lock(&sv.lock);
	if ((n = l->head) != NULL) {
		l->head = n->qnext;
		if (l->head == NULL)
			l->tail = NULL;
	} else {
		l->busy = false;
		for (pp = &lanes[fnv1a(l->key) % NLANES]; *pp != l; pp = &(*pp)->next)
			;
		*pp = l->next;
		free(l);
	}
	pthread_mutex_unlock(&sv.lock);
	if (n != NULL) {
		nng_msg *m = n->pending;
		n->pending = NULL;
		dispatch(n, m);
	}
}

static void
forward(sv_call *c, nng_msg *req, const mj_request *r)
{
	Moonjail__Internal__V1__WorkerRequest wr = MOONJAIL__INTERNAL__V1__WORKER_REQUEST__INIT;
	Moonjail__Internal__V1__TenantPolicy pol = MOONJAIL__INTERNAL__V1__TENANT_POLICY__INIT;
	Moonjail__V1__Limits *defaults = NULL, *max = NULL;
	mj_tenant_policy p;
	mj_limits defs;
	uint8_t *buf = NULL;
	nng_msg *m = NULL;
	size_t len;

	sv_policy_for(r->tenant, &p, &defs);
	snprintf(c->tenant, sizeof(c->tenant), "%s", r->tenant);
	pthread_mutex_lock(&sv.lock);
	c->quarantined = sv.cfg.quarantine_workers > 0 && sv_quarantined(r->tenant);
	pthread_mutex_unlock(&sv.lock);
	if (c->quarantined)
		c->worker =
		    sv.cfg.nworkers + (int)(fnv1a(r->tenant) % (uint64_t)sv.cfg.quarantine_workers);
	else
		c->worker = (int)(fnv1a(r->tenant) % (uint64_t)sv.cfg.nworkers);
	if (mj_proto_limits_from(&defs, &defaults) != MJ_OK ||
	    mj_proto_limits_from(&p.max, &max) != MJ_OK)
		goto fail;
	pol.defaults = defaults;
	pol.max = max;
	pol.max_engines = p.max_engines;
	pol.max_memory = p.max_memory;
	wr.request.data = nng_msg_body(req);
	wr.request.len = nng_msg_len(req);
	wr.policy = &pol;
	if (mj_proto_pack(&wr.base, &buf, &len) != MJ_OK || nng_msg_alloc(&m, 0) != 0 ||
	    nng_msg_append(m, buf, len) != 0)
		goto fail;
	mj_free(buf);
	mj_proto_free(&defaults->base);
	mj_proto_free(&max->base);
	c->per_call = deadline_for(&p);
	if (lane_enter(c, r->tenant, r->engine, m))
		dispatch(c, m);
	return;

fail:
	mj_free(buf);
	if (m != NULL)
		nng_msg_free(m);
	if (defaults != NULL)
		mj_proto_free(&defaults->base);
	if (max != NULL)
		mj_proto_free(&max->base);
	reply_error(c, MJ_KIND_INTERNAL, "the supervisor is out of memory");
}

static uint64_t dispatch_seq; /* under sv.lock */

/* Sends c's WorkerRequest m to its worker. */
static void
dispatch(sv_call *c, nng_msg *m)
{
	sv_worker *w = &sv.workers[c->worker];
	unsigned queued, per = sv.cfg.executors > 0 ? (unsigned)sv.cfg.executors : 1;
	nng_duration d;

	/* The socket is read and the call linked in one step: promoting the spare swaps a slot's
	 * socket, and a call must be in flight on the process its context reaches. */
	pthread_mutex_lock(&sv.lock);
	if (nng_ctx_open(&c->wctx, w->ws->sock) != 0) {
		pthread_mutex_unlock(&sv.lock);
		nng_msg_free(m);
		lane_leave(c);
		reply_error(c, MJ_KIND_INTERNAL, "the supervisor cannot reach the worker");
		return;
	}
	c->wopen = true;
	c->lost = false;
	c->worker_pid = w->pid;
	c->seq = ++dispatch_seq;
	c->prev = NULL;
	c->next = w->inflight;
	if (w->inflight != NULL)
		w->inflight->prev = c;
	w->inflight = c;
	queued = w->ninflight++;
	c->linked = true;
	pthread_mutex_unlock(&sv.lock);
	/* The worker runs `executors` calls at once; a call queued behind others there may wait
	 * for them, so the hard deadline grows with that queue instead of killing a healthy
	 * worker. */
	d = c->per_call;
	if (d != NNG_DURATION_INFINITE)
		d = (nng_duration)((int64_t)d * (1 + queued / per) > 3600000
		                       ? 3600000
		                       : (int64_t)d * (1 + queued / per));
	c->state = C_FWD_SEND;
	nng_aio_set_timeout(c->waio, d);
	nng_aio_set_msg(c->waio, m);
	nng_ctx_send(c->wctx, c->waio);
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

/* The tenant of the oldest call, c included, still in flight on the process c went to. A
 * process past a hard deadline is most likely stuck on its oldest call: the call that timed
 * out first may only have waited behind it, with a shorter timeout. */
static void
oldest_tenant(const sv_call *c, char *out, size_t cap)
{
	const sv_call *o = c, *x;

	pthread_mutex_lock(&sv.lock);
	for (x = sv.workers[c->worker].inflight; x != NULL; x = x->next)
		if (x->worker_pid == c->worker_pid && x->seq < o->seq)
			o = x;
	snprintf(out, cap, "%s", o->tenant);
	pthread_mutex_unlock(&sv.lock);
}

static void
worker_cb(void *arg)
{
	sv_call *c = arg;
	int rv = nng_aio_result(c->waio);
	nng_msg *m;
	bool lost;

	if (c->state == C_FWD_SEND && rv == 0) {
		c->state = C_FWD_RECV;
		nng_ctx_recv(c->wctx, c->waio);
		return;
	}
	if (c->state == C_FWD_SEND)
		nng_msg_free(nng_aio_get_msg(c->waio));
	pthread_mutex_lock(&sv.lock);
	lost = c->lost;
	pthread_mutex_unlock(&sv.lock);
	unlink_call(c);
	nng_ctx_close(c->wctx);
	c->wopen = false;
	lane_leave(c);
	if (rv == 0) {
		m = nng_aio_get_msg(c->waio);
		if (!reply_ok(nng_msg_body(m), nng_msg_len(m))) {
			/* A worker that sends garbage is not trusted with more requests. */
			nng_msg_free(m);
			sv_worker_kill(c->worker, c->worker_pid, "malformed-reply");
			reply_error(c, MJ_KIND_ENGINE_LOST,
			            "the worker sent a malformed reply and was "
			            "replaced; the engine's state is lost");
			return;
		}
		reply_msg(c, m);
		return;
	}
	if (rv == NNG_ETIMEDOUT && !lost) {
		char culprit[sizeof(c->tenant)];

		oldest_tenant(c, culprit, sizeof(culprit));
		sv_worker_kill_for(c->worker, c->worker_pid, "hard-deadline", culprit);
		reply_error(c, MJ_KIND_TIMEOUT,
		            "the call overran the hard deadline; its worker was replaced and the "
		            "engine's state is lost");
		return;
	}
	if (rv == NNG_ECLOSED && atomic_load(&sv.draining)) {
		reply_error(c, MJ_KIND_ENGINE_LOST, "the service is shutting down");
		return;
	}
	/* The worker died with this call in flight: the call may be what killed it. */
	pthread_mutex_lock(&sv.lock);
	if (c->worker_pid != 0 && sv.workers[c->worker].culprit_pid != c->worker_pid)
		sv_quarantine_suspect(c->tenant, (uint64_t)c->worker_pid);
	pthread_mutex_unlock(&sv.lock);
	reply_error(c, MJ_KIND_ENGINE_LOST,
	            "the worker holding this engine died; the engine's state is lost");
}

void
sv_router_worker_lost(int index)
{
	sv_call *c;

	for (c = sv.workers[index].inflight; c != NULL; c = c->next) {
		c->lost = true;
		nng_aio_cancel(c->waio);
	}
}

void
sv_router_worker_started(int index, pid_t pid)
{
	sv_call *c;

	for (c = sv.workers[index].inflight; c != NULL; c = c->next)
		if (c->worker_pid == 0)
			c->worker_pid = pid;
}

int
sv_router_start(void)
{
	int i, rv;

	if ((rv = nng_rep0_open(&sv.front)) != 0)
		return rv;
	nng_socket_set_size(sv.front, NNG_OPT_RECVMAXSZ, MAX_MESSAGE);
	for (i = 0; i < sv.cfg.nlisten; i++) {
		const char *url = sv.cfg.listen[i];
		if ((rv = nng_listener_create(&listeners[i], sv.front, url)) != 0) {
			sv_log("error", "what=\"listen\" url=%s err=\"%s\"", url, nng_strerror(rv));
			return rv;
		}
		if (strncmp(url, "ipc://", 6) == 0)
			nng_listener_set_int(listeners[i], NNG_OPT_IPC_PERMISSIONS,
			                     sv.cfg.group != NULL ? 0660 : 0600);
		if ((rv = nng_listener_start(listeners[i], 0)) != 0) {
			sv_log("error", "what=\"listen\" url=%s err=\"%s\"", url, nng_strerror(rv));
			return rv;
		}
		nlisteners++;
		/* Admitting a group: the socket file joins it (the directory did at start). */
		if (sv.cfg.group != NULL && strncmp(url, "ipc://", 6) == 0 &&
		    chown(url + 6, (uid_t)-1, sv.cfg.gid) != 0) {
			sv_log("error", "what=\"chown socket\" url=%s group=%s", url, sv.cfg.group);
			return NNG_EPERM;
		}
		sv_log("listening", "url=%s", url);
	}
	if ((sv.calls = calloc((size_t)sv.cfg.ncalls, sizeof(sv_call))) == NULL)
		return NNG_ENOMEM;
	for (i = 0; i < sv.cfg.ncalls; i++) {
		sv_call *c = &sv.calls[i];
		if ((rv = nng_aio_alloc(&c->caio, client_cb, c)) != 0 ||
		    (rv = nng_aio_alloc(&c->waio, worker_cb, c)) != 0 ||
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

	for (i = 0; i < nlisteners; i++)
		nng_listener_close(listeners[i]);
	if (sv.calls != NULL) {
		for (i = 0; i < sv.cfg.ncalls; i++) {
			nng_aio_stop(sv.calls[i].caio);
			nng_aio_stop(sv.calls[i].waio);
		}
	}
	nng_close(sv.front);
	if (sv.calls != NULL) {
		for (i = 0; i < sv.cfg.ncalls; i++) {
			nng_aio_free(sv.calls[i].caio);
			nng_aio_free(sv.calls[i].waio);
		}
		free(sv.calls);
		sv.calls = NULL;
	}
}
