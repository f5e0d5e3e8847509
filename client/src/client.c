/* libmoonjail: request encoding, one REQ context per call in flight, and bounded decoding. */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "mj/client.h"
#include "mj/proto.h"

#define DEFAULT_TIMEOUT_MS 30000u
#define DEFAULT_MAX_MESSAGE (16u << 20)
/* Idle contexts kept for reuse. nng 1.5.2 degrades with thousands of REQ contexts, so the
 * pool stays small; contexts beyond it are closed when their call ends. */
#define MAX_IDLE 64
/* The REQ header (a 4-byte request id) travels inside nng's size check. */
#define NNG_HEADER_SLACK 64
#define NAME_MAX_LEN 128

typedef struct slot {
	nng_ctx ctx;
	nng_aio *aio;
	struct slot *next;
} slot;

struct mj_client {
	nng_socket sock;
	mj_client_options opts;
	char url[256];
	atomic_uint_fast64_t next_id;
	pthread_mutex_t mu; /* guards idle and n_idle */
	slot *idle;
	size_t n_idle;
};

/* Calls run on many threads at once, so the detail of a failure belongs to the thread. */
static _Thread_local struct {
	const mj_client *c;
	char msg[512];
} last_error;

static mj_err fail(const mj_client *c, mj_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static mj_err
fail(const mj_client *c, mj_err err, const char *fmt, ...)
{
	va_list ap;

	last_error.c = c;
	va_start(ap, fmt);
	vsnprintf(last_error.msg, sizeof(last_error.msg), fmt, ap);
	va_end(ap);
	return err;
}

const char *
mj_client_errmsg(const mj_client *c)
{
	if (last_error.c != c || last_error.msg[0] == '\0')
		return "no error";
	return last_error.msg;
}

const char *
mj_client_err_str(mj_err err)
{
	if (err == MJ_CLIENT_ECONN)
		return "connection error";
	if (err == MJ_CLIENT_ETIMEDOUT)
		return "timed out";
	return mj_err_str(err);
}

static mj_err
map_nng(int rv)
{
	switch (rv) {
	case NNG_ETIMEDOUT:
		return MJ_CLIENT_ETIMEDOUT;
	case NNG_ENOMEM:
		return MJ_ENOMEM;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
		return MJ_EINVAL;
	default:
		return MJ_CLIENT_ECONN;
	}
}

mj_err
mj_client_open(mj_client **out, const char *url, const mj_client_options *opts)
{
	mj_client *c;
	mj_err err;
	int rv;

	if (out == NULL || url == NULL || url[0] == '\0')
		return fail(NULL, MJ_EINVAL, "no URL given");
	if (strlen(url) >= sizeof(c->url))
		return fail(NULL, MJ_EINVAL, "URL too long (at most %zu bytes)",
		            sizeof(c->url) - 1);
	if ((c = mj_calloc(1, sizeof(*c))) == NULL)
		return fail(NULL, MJ_ENOMEM, "out of memory");
	if (opts != NULL)
		c->opts = *opts;
	if (c->opts.recv_timeout_ms == 0)
		c->opts.recv_timeout_ms = DEFAULT_TIMEOUT_MS;
	if (c->opts.send_timeout_ms == 0)
		c->opts.send_timeout_ms = DEFAULT_TIMEOUT_MS;
	if (c->opts.max_message == 0)
		c->opts.max_message = DEFAULT_MAX_MESSAGE;
	memcpy(c->url, url, strlen(url) + 1);
	atomic_init(&c->next_id, 1);
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		err = fail(NULL, MJ_ENOMEM, "cannot create a mutex");
		goto fail_mutex;
	}
	if ((rv = nng_req0_open(&c->sock)) != 0) {
		err = fail(NULL, map_nng(rv), "cannot open a REQ socket: %s", nng_strerror(rv));
		goto fail_socket;
	}
	/* A resent request would run a script twice (eval is not idempotent), so a dropped
	 * connection fails the call with NNG_ECONNRESET instead. */
	if ((rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ,
	                              c->opts.max_message + NNG_HEADER_SLACK)) != 0) {
		err = fail(NULL, map_nng(rv), "cannot set socket options: %s", nng_strerror(rv));
		goto fail_dial;
	}
	if ((rv = nng_dial(c->sock, url, NULL, c->opts.lazy_connect ? NNG_FLAG_NONBLOCK : 0)) !=
	    0) {
		err = map_nng(rv);
		if (rv == NNG_ENOENT || rv == NNG_ECONNREFUSED)
			fail(NULL, err, "cannot connect to %s: %s (is moonjaild running?)", url,
			     nng_strerror(rv));
		else
			fail(NULL, err, "cannot connect to %s: %s", url, nng_strerror(rv));
		goto fail_dial;
	}
	*out = c;
	return MJ_OK;

fail_dial:
	nng_close(c->sock);
fail_socket:
	pthread_mutex_destroy(&c->mu);
fail_mutex:
	mj_free(c);
	return err;
}

static void
slot_free(slot *s)
{
	nng_ctx_close(s->ctx);
	nng_aio_free(s->aio);
	mj_free(s);
}

void
mj_client_close(mj_client *c)
{
	slot *s;

	if (c == NULL)
		return;
	/* A later client may get the same address; it must not inherit this one's error. */
	if (last_error.c == c)
		last_error.c = NULL;
	while ((s = c->idle) != NULL) {
		c->idle = s->next;
		slot_free(s);
	}
	nng_close(c->sock);
	pthread_mutex_destroy(&c->mu);
	mj_free(c);
}

static mj_err
slot_get(mj_client *c, slot **out)
{
	slot *s;
	int rv;

	pthread_mutex_lock(&c->mu);
	if ((s = c->idle) != NULL) {
		c->idle = s->next;
		c->n_idle--;
	}
	pthread_mutex_unlock(&c->mu);
	if (s != NULL) {
		*out = s;
		return MJ_OK;
	}
	if ((s = mj_calloc(1, sizeof(*s))) == NULL)
		return fail(c, MJ_ENOMEM, "out of memory");
	if ((rv = nng_aio_alloc(&s->aio, NULL, NULL)) != 0) {
		mj_free(s);
		return fail(c, map_nng(rv), "cannot allocate an aio: %s", nng_strerror(rv));
	}
	if ((rv = nng_ctx_open(&s->ctx, c->sock)) != 0) {
		nng_aio_free(s->aio);
		mj_free(s);
		return fail(c, map_nng(rv), "cannot open a context: %s", nng_strerror(rv));
	}
	*out = s;
	return MJ_OK;
}

/* A context whose exchange failed may still hold its request, so it is closed, not reused. */
static void
slot_put(mj_client *c, slot *s, bool reusable)
{
	if (reusable) {
		pthread_mutex_lock(&c->mu);
		if (c->n_idle < MAX_IDLE) {
			s->next = c->idle;
			c->idle = s;
			c->n_idle++;
			s = NULL;
		}
		pthread_mutex_unlock(&c->mu);
	}
	if (s != NULL)
		slot_free(s);
}

static bool
valid_name(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++) {
		char ch = s[n];
		if (n >= NAME_MAX_LEN ||
		    !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return n > 0;
}

static const char *
rv_text(int rv)
{
	switch (rv) {
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
		/* An oversized response makes nng drop the connection, and so does moonjaild at
		 * its connection limit: say so. */
		return "the connection dropped while waiting for the answer (the service went "
		       "away or is at its connection limit, or its response exceeded "
		       "max_message)";
	case NNG_ECLOSED:
		return "the client is closed";
	default:
		return nng_strerror(rv);
	}
}

/* Sends msg (consumed in every case) on a context and waits for the reply. */
static mj_err
exchange(mj_client *c, nng_msg *msg, nng_msg **reply)
{
	slot *s = NULL;
	mj_err err;
	int rv;

	if ((err = slot_get(c, &s)) != MJ_OK) {
		nng_msg_free(msg);
		return err;
	}
	nng_aio_set_msg(s->aio, msg);
	nng_aio_set_timeout(s->aio, (nng_duration)c->opts.send_timeout_ms);
	nng_ctx_send(s->ctx, s->aio);
	nng_aio_wait(s->aio);
	if ((rv = nng_aio_result(s->aio)) != 0) {
		/* On a failed send the message is still ours. */
		nng_msg_free(nng_aio_get_msg(s->aio));
		nng_aio_set_msg(s->aio, NULL);
		slot_put(c, s, false);
		if (rv == NNG_ETIMEDOUT)
			return fail(c, MJ_CLIENT_ECONN,
			            "no connection to %s within %" PRIu32
			            " ms (is moonjaild running?)",
			            c->url, c->opts.send_timeout_ms);
		return fail(c, map_nng(rv), "cannot send to %s: %s", c->url, rv_text(rv));
	}
	nng_aio_set_timeout(s->aio, (nng_duration)c->opts.recv_timeout_ms);
	nng_ctx_recv(s->ctx, s->aio);
	nng_aio_wait(s->aio);
	if ((rv = nng_aio_result(s->aio)) != 0) {
		slot_put(c, s, false);
		if (rv == NNG_ETIMEDOUT)
			return fail(c, MJ_CLIENT_ETIMEDOUT,
			            "no answer from %s within %" PRIu32 " ms", c->url,
			            c->opts.recv_timeout_ms);
		return fail(c, map_nng(rv), "no answer from %s: %s", c->url, rv_text(rv));
	}
	*reply = nng_aio_get_msg(s->aio);
	nng_aio_set_msg(s->aio, NULL);
	slot_put(c, s, true);
	return MJ_OK;
}

static char *
dup_text(const char *s)
{
	return mj_strndup(s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

void
mj_client_result_free(mj_client_result *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n_values; i++)
		mj_value_free(&r->values[i]);
	mj_free(r->values);
	mj_free(r->message);
	mj_free(r->traceback);
	mj_free(r->output);
	mj_free(r);
}

static void
copy_stats(const Moonjail__V1__Stats *ps, mj_client_statistics *st)
{
	st->instructions = ps->instructions;
	st->instruction_limit = ps->instruction_limit;
	st->memory_current = ps->memory_current;
	st->memory_peak = ps->memory_peak;
	st->memory_limit = ps->memory_limit;
	st->wall_us = ps->wall_us;
	st->timeout_ms = ps->timeout_ms;
	st->output_bytes = ps->output_bytes;
	st->output_limit = ps->output_limit;
	st->engines = ps->engines;
}

/* Turns an unpacked Response into a result; MJ_EINVAL when its contents make no sense. */
static mj_err
convert(mj_client *c, const mj_response *resp, mj_client_result **out)
{
	mj_client_result *r;
	char why[128] = "";
	mj_err err;
	size_t i;

	if (resp->status != MOONJAIL__V1__STATUS__STATUS_OK &&
	    resp->status != MOONJAIL__V1__STATUS__STATUS_ERROR)
		return fail(c, MJ_EINVAL, "malformed response: unknown status %d",
		            (int)resp->status);
	if ((r = mj_calloc(1, sizeof(*r))) == NULL)
		return fail(c, MJ_ENOMEM, "out of memory");
	r->id = resp->id;
	if (resp->status == MOONJAIL__V1__STATUS__STATUS_ERROR) {
		const Moonjail__V1__Error *e = resp->error;
		r->kind = e != NULL ? mj_proto_kind_from(e->kind) : MJ_KIND_INTERNAL;
		/* An error status must name a failure, whatever the server put in kind. */
		if (r->kind == MJ_KIND_NONE)
			r->kind = MJ_KIND_INTERNAL;
		r->message = dup_text(e != NULL && e->message != NULL && e->message[0] != '\0'
		                          ? e->message
		                          : "the service reported an error without details");
		r->traceback = dup_text(e != NULL ? e->traceback : NULL);
		r->line = e != NULL ? e->line : 0;
	} else {
		r->message = dup_text(NULL);
		r->traceback = dup_text(NULL);
	}
	r->output = mj_strndup(resp->output.len > 0 ? (const char *)resp->output.data : "",
	                       resp->output.len);
	r->output_len = resp->output.len;
	if (r->message == NULL || r->traceback == NULL || r->output == NULL) {
		err = fail(c, MJ_ENOMEM, "out of memory");
		goto fail;
	}
	r->output_truncated = resp->output_truncated;
	r->engine_created = resp->engine_created;
	r->engine_reset = resp->engine_reset;
	r->quarantined = resp->quarantined;
	if (resp->stats != NULL) {
		r->has_stats = true;
		copy_stats(resp->stats, &r->stats);
	}
	if (resp->n_values > 0) {
		if ((r->values = mj_calloc(resp->n_values, sizeof(*r->values))) == NULL) {
			err = fail(c, MJ_ENOMEM, "out of memory");
			goto fail;
		}
		for (i = 0; i < resp->n_values; i++) {
			err = mj_proto_to_value(resp->values[i], &r->values[i], why, sizeof(why));
			if (err != MJ_OK) {
				err = err == MJ_ENOMEM
				          ? fail(c, err, "out of memory")
				          : fail(c, MJ_EINVAL, "malformed response: value %zu: %s",
				                 i + 1, why);
				goto fail;
			}
			r->n_values = i + 1;
		}
	}
	*out = r;
	return MJ_OK;

fail:
	mj_client_result_free(r);
	return err;
}

/* Fills in version and id, encodes req, runs the exchange and decodes the answer. */
static mj_err
call(mj_client *c, mj_request *req, const char *tenant, const char *engine, mj_client_result **out)
{
	ProtobufCMessage *m = NULL;
	mj_proto_caps caps;
	nng_msg *msg, *reply = NULL;
	mj_response *resp;
	char why[160] = "";
	size_t n;
	mj_err err;
	int rv;

	/* mj_client_errmsg describes this thread's most recent call on c. */
	if (last_error.c == c)
		last_error.msg[0] = '\0';

	if (c == NULL || out == NULL)
		return fail(c, MJ_EINVAL, "no client or no result pointer");
	if (tenant == NULL || !valid_name(tenant))
		return fail(c, MJ_EINVAL,
		            "bad tenant name: give 1 to %d characters of [A-Za-z0-9._-]",
		            NAME_MAX_LEN);
	if (engine != NULL && !valid_name(engine))
		return fail(c, MJ_EINVAL,
		            "bad engine name: give 1 to %d characters of [A-Za-z0-9._-]",
		            NAME_MAX_LEN);
	req->version = MJ_PROTO_VERSION;
	req->id = (uint64_t)atomic_fetch_add(&c->next_id, 1);
	req->tenant = (char *)tenant;
	req->engine = (char *)(engine != NULL ? engine : "default");
	n = protobuf_c_message_get_packed_size(&req->base);
	if (n > c->opts.max_message)
		return fail(c, MJ_ELIMIT, "request of %zu bytes exceeds max_message (%zu)", n,
		            c->opts.max_message);
	if ((rv = nng_msg_alloc(&msg, n)) != 0)
		return fail(c, MJ_ENOMEM, "out of memory");
	if (protobuf_c_message_pack(&req->base, nng_msg_body(msg)) != n) {
		nng_msg_free(msg);
		return fail(c, MJ_EINTERNAL, "request encoding failed");
	}
	if ((err = exchange(c, msg, &reply)) != MJ_OK)
		return err;
	mj_proto_caps_default(&caps);
	caps.max_bytes = c->opts.max_message;
	err = mj_proto_unpack(&moonjail__v1__response__descriptor, nng_msg_body(reply),
	                      nng_msg_len(reply), &caps, &m, why, sizeof(why));
	nng_msg_free(reply);
	if (err != MJ_OK) {
		if (err == MJ_ENOMEM)
			return fail(c, err, "out of memory");
		return fail(c, MJ_EINVAL, "malformed response from %s: %s", c->url, why);
	}
	resp = (mj_response *)m;
	/* A server that cannot read a request answers bad-request with id 0; ids start at 1, so
	 * that answer can only be this request's. */
	if (resp->id != req->id &&
	    !(resp->id == 0 && resp->status == MOONJAIL__V1__STATUS__STATUS_ERROR)) {
		err = fail(c, MJ_EINVAL,
		           "malformed response: id %" PRIu64 " does not match request id %" PRIu64,
		           resp->id, req->id);
		goto done;
	}
	err = convert(c, resp, out);
done:
	mj_proto_free(m);
	return err;
}

static mj_err
source_call(mj_client *c, const char *tenant, const char *engine, const char *src, size_t len,
            bool eval, mj_client_result **out)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;
	Moonjail__V1__Run run = MOONJAIL__V1__RUN__INIT;

	if (src == NULL && len > 0)
		return fail(c, MJ_EINVAL, "no source");
	if (eval) {
		ev.source.data = (uint8_t *)src;
		ev.source.len = len;
		req.op_case = MOONJAIL__V1__REQUEST__OP_EVAL;
		req.eval = &ev;
	} else {
		run.source.data = (uint8_t *)src;
		run.source.len = len;
		req.op_case = MOONJAIL__V1__REQUEST__OP_RUN;
		req.run = &run;
	}
	return call(c, &req, tenant, engine, out);
}

mj_err
mj_client_eval(mj_client *c, const char *tenant, const char *engine, const char *src, size_t len,
               mj_client_result **out)
{
	return source_call(c, tenant, engine, src, len, true, out);
}

mj_err
mj_client_run(mj_client *c, const char *tenant, const char *engine, const char *src, size_t len,
              mj_client_result **out)
{
	return source_call(c, tenant, engine, src, len, false, out);
}

mj_err
mj_client_reset(mj_client *c, const char *tenant, const char *engine, mj_client_result **out)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Reset op = MOONJAIL__V1__RESET__INIT;

	req.op_case = MOONJAIL__V1__REQUEST__OP_RESET;
	req.reset = &op;
	return call(c, &req, tenant, engine, out);
}

mj_err
mj_client_destroy(mj_client *c, const char *tenant, const char *engine, mj_client_result **out)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Destroy op = MOONJAIL__V1__DESTROY__INIT;

	req.op_case = MOONJAIL__V1__REQUEST__OP_DESTROY;
	req.destroy = &op;
	return call(c, &req, tenant, engine, out);
}

mj_err
mj_client_stats(mj_client *c, const char *tenant, const char *engine, mj_client_result **out)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__StatsRequest op = MOONJAIL__V1__STATS_REQUEST__INIT;

	req.op_case = MOONJAIL__V1__REQUEST__OP_STATS;
	req.stats = &op;
	return call(c, &req, tenant, engine, out);
}

mj_err
mj_client_ping(mj_client *c, const char *tenant, mj_client_result **out)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Ping op = MOONJAIL__V1__PING__INIT;

	req.op_case = MOONJAIL__V1__REQUEST__OP_PING;
	req.ping = &op;
	return call(c, &req, tenant != NULL ? tenant : "ping", NULL, out);
}

mj_err
mj_client_create(mj_client *c, const char *tenant, const char *engine,
                 const mj_client_create_options *opts, mj_client_result **out)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Create op = MOONJAIL__V1__CREATE__INIT;
	Moonjail__V1__Limits pl = MOONJAIL__V1__LIMITS__INIT;
	Moonjail__V1__Limit lim[8];
	Moonjail__V1__Limit **fields[8] = {
	    &pl.memory, &pl.instructions, &pl.timeout_ms,   &pl.output,
	    &pl.source, &pl.result_bytes, &pl.result_depth, &pl.result_items,
	};
	uint64_t vals[8] = {0};
	size_t i;

	if (opts != NULL) {
		if ((opts->n_modules > 0 && opts->modules == NULL) ||
		    (opts->prelude == NULL && opts->prelude_len > 0))
			return fail(c, MJ_EINVAL, "bad create options");
		for (i = 0; i < opts->n_modules; i++)
			if (opts->modules[i] == NULL)
				return fail(c, MJ_EINVAL, "module name %zu is NULL", i + 1);
		vals[0] = opts->limits.memory;
		vals[1] = opts->limits.instructions;
		vals[2] = opts->limits.timeout_ms;
		vals[3] = opts->limits.output;
		vals[4] = opts->limits.source;
		vals[5] = opts->limits.result_bytes;
		vals[6] = opts->limits.result_depth;
		vals[7] = opts->limits.result_items;
		for (i = 0; i < 8; i++) {
			if (!(opts->set & (1u << i)))
				continue;
			moonjail__v1__limit__init(&lim[i]);
			lim[i].value = vals[i];
			*fields[i] = &lim[i];
		}
		if (opts->set != 0)
			op.limits = &pl;
		op.n_modules = opts->n_modules;
		op.modules = (char **)opts->modules;
		op.prelude.data = (uint8_t *)opts->prelude;
		op.prelude.len = opts->prelude_len;
	}
	req.op_case = MOONJAIL__V1__REQUEST__OP_CREATE;
	req.create = &op;
	return call(c, &req, tenant, engine, out);
}

mj_err
mj_client_set_namespace(mj_client *c, const char *tenant, const char *engine, const char *name,
                        const mj_value *value, mj_client_result **out)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__SetNamespace op = MOONJAIL__V1__SET_NAMESPACE__INIT;
	mj_pvalue *pv;
	mj_err err;

	if (name == NULL || name[0] == '\0' || value == NULL)
		return fail(c, MJ_EINVAL, "a namespace needs a name and a value");
	if ((err = mj_proto_from_value(value, &pv)) != MJ_OK)
		return fail(c, err, "cannot encode the namespace value: %s", mj_err_str(err));
	op.name = (char *)name;
	op.value = pv;
	req.op_case = MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE;
	req.set_namespace = &op;
	err = call(c, &req, tenant, engine, out);
	mj_proto_pvalue_free(pv);
	return err;
}

mj_err
mj_client_unset_namespace(mj_client *c, const char *tenant, const char *engine, const char *name,
                          mj_client_result **out)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__UnsetNamespace op = MOONJAIL__V1__UNSET_NAMESPACE__INIT;

	if (name == NULL || name[0] == '\0')
		return fail(c, MJ_EINVAL, "a namespace needs a name");
	op.name = (char *)name;
	req.op_case = MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE;
	req.unset_namespace = &op;
	return call(c, &req, tenant, engine, out);
}
