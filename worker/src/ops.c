/* The worker's operations: request validation, tenant policy, running a request on an engine. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "worker.h"

#define WK_CHUNK_NAME_MAX 256
#define WK_MODULES_MAX 16

/* A Response under construction; it borrows the strings of res and owns the converted values. */
typedef struct reply {
	mj_response r;
	Moonjail__V1__Error err;
	Moonjail__V1__Stats stats;
	mj_result res; /* zeroed when there is none */
	char msg[1024];
} reply;

static void
reply_init(reply *rp, uint64_t id)
{
	memset(rp, 0, sizeof(*rp));
	moonjail__v1__response__init(&rp->r);
	moonjail__v1__error__init(&rp->err);
	moonjail__v1__stats__init(&rp->stats);
	rp->r.id = id;
	rp->r.status = MOONJAIL__V1__STATUS__STATUS_OK;
}

static void reply_fail(reply *rp, mj_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reply_fail(reply *rp, mj_kind kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rp->msg, sizeof(rp->msg), fmt, ap);
	va_end(ap);
	rp->r.status = MOONJAIL__V1__STATUS__STATUS_ERROR;
	rp->err.kind = mj_proto_kind(kind);
	rp->err.message = rp->msg;
	rp->err.line = 0;
	rp->err.traceback = NULL;
	rp->r.error = &rp->err;
}

static void
stats_from(Moonjail__V1__Stats *ps, const mj_stats *st)
{
	ps->instructions = st->instructions;
	ps->instruction_limit = st->instruction_limit;
	ps->memory_current = st->memory_current;
	ps->memory_peak = st->memory_peak;
	ps->memory_limit = st->memory_limit;
	ps->wall_us = st->wall_us;
	ps->timeout_ms = st->timeout_ms;
	ps->output_bytes = st->output_bytes;
	ps->output_limit = st->output_limit;
}

static void
reply_free_values(reply *rp)
{
	size_t i;

	for (i = 0; i < rp->r.n_values; i++)
		mj_proto_pvalue_free(rp->r.values[i]);
	mj_free(rp->r.values);
	rp->r.values = NULL;
	rp->r.n_values = 0;
}

/* Takes ownership of res and describes it in the reply. */
static void
reply_result(reply *rp, mj_result *res)
{
	size_t i;

	rp->res = *res;
	memset(res, 0, sizeof(*res));
	res = &rp->res;
	rp->r.output.data = (uint8_t *)res->output;
	rp->r.output.len = res->output_len;
	rp->r.output_truncated = res->output_truncated;
	rp->r.engine_reset = res->engine_reset;
	stats_from(&rp->stats, &res->stats);
	rp->r.stats = &rp->stats;
	if (res->kind != MJ_KIND_NONE) {
		rp->r.status = MOONJAIL__V1__STATUS__STATUS_ERROR;
		rp->err.kind = mj_proto_kind(res->kind);
		rp->err.message = res->message != NULL ? res->message : "";
		rp->err.line = res->line;
		rp->err.traceback = res->traceback != NULL ? res->traceback : "";
		rp->r.error = &rp->err;
		return;
	}
	if (res->nvalues == 0)
		return;
	if ((rp->r.values = mj_calloc(res->nvalues, sizeof(*rp->r.values))) == NULL)
		goto fail;
	for (i = 0; i < res->nvalues; i++) {
		if (mj_proto_from_value(&res->values[i], &rp->r.values[i]) != MJ_OK)
			goto fail;
		rp->r.n_values = i + 1;
	}
	return;

fail:
	reply_free_values(rp);
	reply_fail(rp, MJ_KIND_INTERNAL, "out of memory converting the returned values");
}

static void
reply_pack(reply *rp, uint8_t **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (mj_proto_pack(&rp->r.base, out, outlen) == MJ_OK && *outlen <= WK_SEND_MAX)
		goto done;
	if (*out != NULL) {
		/* The result limits allow more than one message can carry: say so instead. */
		size_t n = *outlen;
		mj_free(*out);
		*out = NULL;
		reply_free_values(rp);
		rp->r.output.len = 0;
		rp->r.output.data = NULL;
		reply_fail(rp, MJ_KIND_OUTPUT,
		           "the response would be %zu bytes, over the %zu-byte message limit", n,
		           WK_SEND_MAX);
	} else {
		reply_free_values(rp);
		rp->r.output.len = 0;
		reply_fail(rp, MJ_KIND_INTERNAL, "cannot encode the response");
	}
	if (mj_proto_pack(&rp->r.base, out, outlen) != MJ_OK) {
		*out = NULL;
		*outlen = 0;
	}
done:
	reply_free_values(rp);
	mj_result_free(&rp->res);
}

void
wk_ops_error(uint64_t id, mj_kind kind, const char *msg, uint8_t **out, size_t *outlen)
{
	reply rp;

	reply_init(&rp, id);
	reply_fail(&rp, kind, "%s", msg);
	reply_pack(&rp, out, outlen);
}

void
wk_ops_ok(uint64_t id, uint8_t **out, size_t *outlen)
{
	reply rp;

	reply_init(&rp, id);
	reply_pack(&rp, out, outlen);
}

static bool
name_ok(const char *s, bool empty_ok)
{
	size_t n = 0;

	if (s == NULL)
		return empty_ok;
	for (; s[n] != '\0'; n++) {
		char ch = s[n];
		if (n >= WK_NAME_MAX)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return n > 0 || empty_ok;
}

bool
wk_ops_validate(const mj_request *req, char *why, size_t whylen)
{
	const char *chunk = NULL;

	if (req->version != MJ_PROTO_VERSION) {
		snprintf(why, whylen, "unsupported protocol version %u (this worker speaks %d)",
		         req->version, MJ_PROTO_VERSION);
		return false;
	}
	if (req->tenant == NULL || req->tenant[0] == '\0') {
		snprintf(why, whylen, "missing tenant");
		return false;
	}
	if (!name_ok(req->tenant, false)) {
		snprintf(why, whylen, "bad tenant name: use 1-%d bytes of [A-Za-z0-9._-]",
		         WK_NAME_MAX);
		return false;
	}
	if (!name_ok(req->engine, true)) {
		snprintf(why, whylen, "bad engine name: use 1-%d bytes of [A-Za-z0-9._-]",
		         WK_NAME_MAX);
		return false;
	}
	switch (req->op_case) {
	case MOONJAIL__V1__REQUEST__OP_EVAL:
		chunk = req->eval->chunk_name;
		break;
	case MOONJAIL__V1__REQUEST__OP_RUN:
		chunk = req->run->chunk_name;
		break;
	case MOONJAIL__V1__REQUEST__OP_CREATE:
		if (req->create->n_modules > WK_MODULES_MAX) {
			snprintf(why, whylen, "too many modules (at most %d)", WK_MODULES_MAX);
			return false;
		}
		break;
	case MOONJAIL__V1__REQUEST__OP_RESET:
	case MOONJAIL__V1__REQUEST__OP_DESTROY:
	case MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE:
	case MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE:
	case MOONJAIL__V1__REQUEST__OP_STATS:
	case MOONJAIL__V1__REQUEST__OP_PING:
		break;
	default:
		snprintf(why, whylen, "missing or unknown operation");
		return false;
	}
	if (chunk != NULL && strlen(chunk) > WK_CHUNK_NAME_MAX) {
		snprintf(why, whylen, "chunk name longer than %d bytes", WK_CHUNK_NAME_MAX);
		return false;
	}
	return true;
}

bool
wk_ops_policy(const Moonjail__Internal__V1__TenantPolicy *tp, mj_limits *defaults,
              mj_tenant_policy *p, char *why, size_t whylen)
{
	mj_limits d, max;
	const char *reason = "";

	mj_limits_default(&d);
	if (tp != NULL)
		mj_proto_limits_apply(tp->defaults, &d);
	max = d;
	if (tp != NULL)
		mj_proto_limits_apply(tp->max, &max);
	mj_policy_default(p, &max);
	/* mj_policy_default multiplies; a huge ceiling must not wrap the quota to a small one. */
	if (max.memory > SIZE_MAX / 64)
		p->max_memory = SIZE_MAX;
	if (tp != NULL && tp->max_engines != 0)
		p->max_engines = tp->max_engines;
	if (tp != NULL && tp->max_memory != 0)
		p->max_memory = tp->max_memory > SIZE_MAX ? SIZE_MAX : (size_t)tp->max_memory;
	if (mj_policy_clamp(p, &d, defaults, &reason) != MJ_OK) {
		snprintf(why, whylen, "bad tenant policy: %s", reason);
		return false;
	}
	return true;
}

const char *
wk_ops_engine_name(const mj_request *req)
{
	return req->engine != NULL && req->engine[0] != '\0' ? req->engine : "default";
}

static const char *
chunk_name(const char *name)
{
	return name != NULL && name[0] != '\0' ? name : "script";
}

/* Creates s's engine with cfg under the tenant's quotas. The reply is filled on failure. */
static bool
engine_create(wk_worker *w, wk_slot *s, wk_job *c, const mj_engine_config *cfg, reply *rp)
{
	char why[256];
	mj_err err;

	pthread_mutex_lock(&w->mu);
	err = wk_table_reserve(w, s, &c->policy, why, sizeof(why));
	pthread_mutex_unlock(&w->mu);
	if (err != MJ_OK) {
		wk_log("event=quota tenant=%s engine=%s reason=create", s->tenant->name, s->name);
		reply_fail(rp, MJ_KIND_QUOTA, "%s", why);
		return false;
	}
	if ((err = mj_engine_new(&s->engine, cfg)) != MJ_OK) {
		pthread_mutex_lock(&w->mu);
		wk_table_drop(w, s);
		pthread_mutex_unlock(&w->mu);
		if (err == MJ_ENOMEM)
			reply_fail(rp, MJ_KIND_MEMORY,
			           "cannot create the engine: its state does not fit in %zu bytes",
			           cfg->limits.memory);
		else
			reply_fail(rp, MJ_KIND_BAD_REQUEST, "cannot create the engine: %s",
			           mj_err_str(err));
		return false;
	}
#ifdef MJ_TEST_HOOKS
	wk_test_hooks_install(s->engine);
#endif
	s->limits = cfg->limits;
	rp->r.engine_created = true;
	pthread_mutex_lock(&w->mu);
	wk_table_update(w, s, mj_engine_memory(s->engine));
	pthread_mutex_unlock(&w->mu);
	wk_log("event=engine_created tenant=%s engine=%s memory_limit=%zu", s->tenant->name,
	       s->name, cfg->limits.memory);
	return true;
}

static void
engine_destroy(wk_worker *w, wk_slot *s)
{
	mj_engine_free(s->engine);
	s->engine = NULL;
	pthread_mutex_lock(&w->mu);
	wk_table_drop(w, s);
	pthread_mutex_unlock(&w->mu);
}

static void
op_create(wk_worker *w, wk_slot *s, wk_job *c, reply *rp)
{
	const Moonjail__V1__Create *cr = c->req->create;
	const char *const *known = mj_engine_known_modules();
	mj_engine_config cfg;
	mj_limits want;
	const char *reason = "";
	mj_result res;
	size_t i, j;

	if (s->engine != NULL) {
		reply_fail(rp, MJ_KIND_BAD_REQUEST, "engine %s already exists", s->name);
		return;
	}
	want = c->defaults;
	mj_proto_limits_apply(cr->limits, &want);
	mj_engine_config_default(&cfg);
	if (mj_policy_clamp(&c->policy, &want, &cfg.limits, &reason) != MJ_OK) {
		reply_fail(rp, MJ_KIND_BAD_REQUEST, "bad limits: %s", reason);
		return;
	}
	for (i = 0; i < cr->n_modules; i++) {
		for (j = 0; known[j] != NULL; j++)
			if (strcmp(cr->modules[i], known[j]) == 0)
				break;
		if (known[j] == NULL) {
			reply_fail(rp, MJ_KIND_BAD_REQUEST, "unknown module \"%.64s\"",
			           cr->modules[i]);
			return;
		}
	}
	cfg.modules = (const char *const *)cr->modules;
	cfg.nmodules = cr->n_modules;
	if (!engine_create(w, s, c, &cfg, rp))
		return;
	if (cr->prelude.len == 0)
		return;
	if (mj_engine_run(s->engine, (const char *)cr->prelude.data, cr->prelude.len, "prelude",
	                  &res) != MJ_OK) {
		engine_destroy(w, s);
		rp->r.engine_created = false;
		reply_fail(rp, MJ_KIND_INTERNAL, "cannot run the prelude");
		return;
	}
	if (res.kind != MJ_KIND_NONE) {
		/* A half-initialised engine would surprise every later call: it is not kept. */
		engine_destroy(w, s);
		reply_result(rp, &res);
		rp->r.engine_created = false;
		rp->r.engine_reset = false;
		return;
	}
	mj_result_free(&res);
}

/* The engine a state-changing operation works on, created on first use with the defaults. */
static bool
engine_ensure(wk_worker *w, wk_slot *s, wk_job *c, reply *rp)
{
	mj_engine_config cfg;
	char why[256];
	mj_err err;

	if (s->engine != NULL) {
		pthread_mutex_lock(&w->mu);
		err = wk_table_check_memory(w, s, &c->policy, why, sizeof(why));
		pthread_mutex_unlock(&w->mu);
		if (err != MJ_OK) {
			wk_log("event=quota tenant=%s engine=%s reason=memory", s->tenant->name,
			       s->name);
			reply_fail(rp, MJ_KIND_QUOTA, "%s", why);
			return false;
		}
		return true;
	}
	mj_engine_config_default(&cfg);
	cfg.limits = c->defaults;
	return engine_create(w, s, c, &cfg, rp);
}

/* An engine whose reset failed cannot run anything: it is dropped and made again next time. */
static void
engine_lost(wk_worker *w, wk_slot *s, reply *rp, const char *what)
{
	wk_log("event=engine_lost tenant=%s engine=%s reason=%s", s->tenant->name, s->name, what);
	engine_destroy(w, s);
	reply_fail(rp, MJ_KIND_ENGINE_LOST,
	           "the engine could not be rebuilt (%s); its state is gone and the next call "
	           "creates it again",
	           what);
}

static void
op_code(wk_worker *w, wk_slot *s, wk_job *c, reply *rp, bool eval)
{
	const ProtobufCBinaryData *src = eval ? &c->req->eval->source : &c->req->run->source;
	const char *name = chunk_name(eval ? c->req->eval->chunk_name : c->req->run->chunk_name);
	const char *text = src->data != NULL ? (const char *)src->data : "";
	bool created;
	mj_result res;
	mj_err err;

	if (!engine_ensure(w, s, c, rp))
		return;
	created = rp->r.engine_created;
	err = eval ? mj_engine_eval(s->engine, text, src->len, name, &res)
	           : mj_engine_run(s->engine, text, src->len, name, &res);
	if (err == MJ_ESTATE) {
		engine_lost(w, s, rp, "reset failed");
		return;
	}
	if (err != MJ_OK) {
		reply_fail(rp, err == MJ_ENOMEM ? MJ_KIND_INTERNAL : MJ_KIND_BAD_REQUEST, "%s",
		           mj_err_str(err));
		return;
	}
	reply_result(rp, &res);
	rp->r.engine_created = created;
}

/* The engine's detail for a failed management call, or the error's name when it left none. */
static const char *
engine_detail(const mj_engine *e, mj_err err)
{
	const char *m = mj_engine_errmsg(e);

	return m[0] != '\0' ? m : mj_err_str(err);
}

static void
op_namespace(wk_worker *w, wk_slot *s, wk_job *c, reply *rp, bool set)
{
	char why[256] = "";
	mj_value v;
	mj_err err;

	if (!engine_ensure(w, s, c, rp))
		return;
	if (!set) {
		err = mj_engine_unset_namespace(s->engine, c->req->unset_namespace->name);
		if (err == MJ_ENOENT)
			reply_fail(rp, MJ_KIND_BAD_REQUEST, "no namespace \"%.128s\"",
			           c->req->unset_namespace->name);
		else if (err != MJ_OK)
			reply_fail(rp, MJ_KIND_BAD_REQUEST, "cannot remove namespace: %s",
			           engine_detail(s->engine, err));
		return;
	}
	if ((err = mj_proto_to_value(c->req->set_namespace->value, &v, why, sizeof(why))) !=
	    MJ_OK) {
		reply_fail(rp, MJ_KIND_BAD_REQUEST, "bad namespace value: %s", why);
		return;
	}
	err = mj_engine_set_namespace(s->engine, c->req->set_namespace->name, &v);
	mj_value_free(&v);
	if (err == MJ_ELIMIT)
		reply_fail(rp, MJ_KIND_MEMORY, "the namespace does not fit in the memory limit: %s",
		           engine_detail(s->engine, err));
	else if (err == MJ_ENOMEM)
		reply_fail(rp, MJ_KIND_INTERNAL, "out of memory");
	else if (err != MJ_OK)
		reply_fail(rp, MJ_KIND_BAD_REQUEST, "cannot install namespace \"%.128s\": %s",
		           c->req->set_namespace->name, engine_detail(s->engine, err));
}

static void
op_stats(wk_worker *w, wk_slot *s, reply *rp)
{
	Moonjail__V1__Stats *ps = &rp->stats;

	if (s->engine != NULL) {
		ps->memory_current = mj_engine_memory(s->engine);
		ps->memory_peak = ps->memory_current;
		ps->memory_limit = s->limits.memory;
		ps->instruction_limit = s->limits.instructions;
		ps->timeout_ms = s->limits.timeout_ms;
		ps->output_limit = s->limits.output;
	}
	pthread_mutex_lock(&w->mu);
	ps->engines = s->tenant->engines;
	/* Without an engine, the figures are the tenant's. */
	if (s->engine == NULL)
		ps->memory_current = s->tenant->memory;
	pthread_mutex_unlock(&w->mu);
	rp->r.stats = ps;
}

void
wk_ops_execute(wk_worker *w, wk_slot *s, wk_job *c, uint8_t **out, size_t *outlen)
{
	const mj_request *req = c->req;
	reply rp;

	reply_init(&rp, req->id);
	switch (req->op_case) {
	case MOONJAIL__V1__REQUEST__OP_EVAL:
		op_code(w, s, c, &rp, true);
		break;
	case MOONJAIL__V1__REQUEST__OP_RUN:
		op_code(w, s, c, &rp, false);
		break;
	case MOONJAIL__V1__REQUEST__OP_RESET:
		if (s->engine == NULL) {
			/* A missing engine is created fresh, which is what a reset promises. */
			engine_ensure(w, s, c, &rp);
			break;
		}
		if (mj_engine_reset(s->engine) != MJ_OK) {
			engine_lost(w, s, &rp, "reset failed");
			break;
		}
		rp.r.engine_reset = true;
		break;
	case MOONJAIL__V1__REQUEST__OP_DESTROY:
		if (s->engine != NULL) {
			engine_destroy(w, s);
			wk_log("event=engine_destroyed tenant=%s engine=%s", s->tenant->name,
			       s->name);
		}
		break;
	case MOONJAIL__V1__REQUEST__OP_CREATE:
		op_create(w, s, c, &rp);
		break;
	case MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE:
		op_namespace(w, s, c, &rp, true);
		break;
	case MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE:
		op_namespace(w, s, c, &rp, false);
		break;
	case MOONJAIL__V1__REQUEST__OP_STATS:
		op_stats(w, s, &rp);
		break;
	default:
		/* wk_ops_validate let only known operations through. */
		reply_fail(&rp, MJ_KIND_INTERNAL, "unexpected operation %d", (int)req->op_case);
		break;
	}
	if (rp.r.stats != NULL) {
		pthread_mutex_lock(&w->mu);
		rp.stats.engines = s->tenant->engines;
		pthread_mutex_unlock(&w->mu);
	}
	reply_pack(&rp, out, outlen);
}
