/* Hostile scripts through the real service: the engine's adversarial corpus, cross-tenant attacks
 * and Lua 5.4.4's bugs against a running moonjaild and its workers. */
#include <stdio.h>

#if defined(MOONJAILD_BIN) && defined(MOONJAIL_WORKER_BIN) && defined(MOONJAIL_BIN)

#include "supervisor/harness.h"

#include "engine/adv_escape_cases.h"
#include "engine/adv_instructions_cases.h"
#include "engine/adv_interp_cases.h"
#include "engine/adv_memory_cases.h"
#include "engine/adv_output_cases.h"
#include "engine/adv_timeout_cases.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Client-side bound of one call: above every hard deadline these tests configure (ceiling
 * 8000 ms + the default 2000 ms margin), so only a lost request reaches it. */
#define CALL_MS 30000u

/* ---- failures from any thread ---- */

/* cmocka's asserts may only fail on the test's own thread, so the corpus threads log each
 * failed check on its own line and count it; each test asserts the count at its end. */
static pthread_mutex_t hlock = PTHREAD_MUTEX_INITIALIZER;
static unsigned hfails;
static unsigned long hsent, hanswered;

static void __attribute__((format(printf, 2, 3))) hfail(const char *name, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "[ HOSTILE ] %s: FAIL: ", name);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
	pthread_mutex_lock(&hlock);
	hfails++;
	pthread_mutex_unlock(&hlock);
}

static void
hreset_counts(void)
{
	pthread_mutex_lock(&hlock);
	hfails = 0;
	hsent = hanswered = 0;
	pthread_mutex_unlock(&hlock);
}

/* Fails the running test if any check failed or any call went unanswered. */
static void
hassert_clean(const char *what)
{
	unsigned fails;
	unsigned long sent, answered;

	pthread_mutex_lock(&hlock);
	fails = hfails;
	sent = hsent;
	answered = hanswered;
	pthread_mutex_unlock(&hlock);
	fprintf(stderr, "[ HOSTILE ] %s: %lu calls, %lu answered, %u failed checks\n", what, sent,
	        answered, fails);
	if (sent != answered)
		fail_msg("%s: %lu of %lu calls went unanswered", what, sent - answered, sent);
	if (fails != 0)
		fail_msg("%s: %u failed checks; see the [ HOSTILE ] lines above", what, fails);
}

/* ---- kinds ---- */

/* Spelled out here instead of taken from mj_proto_kind, so the service's mapping is under test
 * as well. */
static const Moonjail__V1__ErrorKind wire_kinds[] = {
    [MJ_KIND_NONE] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_NONE,
    [MJ_KIND_SYNTAX] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_SYNTAX,
    [MJ_KIND_RUNTIME] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_RUNTIME,
    [MJ_KIND_MEMORY] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_MEMORY,
    [MJ_KIND_INSTRUCTIONS] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_INSTRUCTIONS,
    [MJ_KIND_TIMEOUT] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_TIMEOUT,
    [MJ_KIND_OUTPUT] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_OUTPUT,
    [MJ_KIND_ENGINE_LOST] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST,
    [MJ_KIND_QUOTA] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_QUOTA,
    [MJ_KIND_BAD_REQUEST] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_BAD_REQUEST,
    [MJ_KIND_INTERNAL] = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_INTERNAL,
};

static Moonjail__V1__ErrorKind
wire_kind(mj_kind k)
{
	return wire_kinds[k];
}

static const char *
wire_kind_name(Moonjail__V1__ErrorKind k)
{
	const ProtobufCEnumValue *v =
	    protobuf_c_enum_descriptor_get_value(&moonjail__v1__error_kind__descriptor, (int)k);

	return v != NULL ? v->name : "(unknown kind)";
}

/* The kinds after which the engine is reset: a limit killed the call. */
static bool
wire_is_limit(Moonjail__V1__ErrorKind k)
{
	return k == MOONJAIL__V1__ERROR_KIND__ERROR_KIND_MEMORY ||
	       k == MOONJAIL__V1__ERROR_KIND__ERROR_KIND_INSTRUCTIONS ||
	       k == MOONJAIL__V1__ERROR_KIND__ERROR_KIND_TIMEOUT ||
	       k == MOONJAIL__V1__ERROR_KIND__ERROR_KIND_OUTPUT;
}

/* The response's kind: NONE for STATUS_OK. A response whose status and error disagree is
 * logged as a failure and read as INTERNAL. */
static Moonjail__V1__ErrorKind
resp_kind(const char *name, const mj_response *r)
{
	if (r->status == MOONJAIL__V1__STATUS__STATUS_OK) {
		if (r->error != NULL && r->error->kind != MOONJAIL__V1__ERROR_KIND__ERROR_KIND_NONE)
			hfail(name, "status OK with an error of kind %s",
			      wire_kind_name(r->error->kind));
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_NONE;
	}
	if (r->error == NULL || r->error->kind == MOONJAIL__V1__ERROR_KIND__ERROR_KIND_NONE) {
		hfail(name, "status ERROR without an error kind");
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_INTERNAL;
	}
	return r->error->kind;
}

static const char *
resp_msg(const mj_response *r)
{
	return r->error != NULL && r->error->message != NULL ? r->error->message : "";
}

/* ---- values, rendered as adv_render renders the engine's ---- */

static void
render_pvalue(adv_buf *b, const mj_pvalue *v, int depth)
{
	size_t i;

	if (depth > 40) {
		adv_bprintf(b, "...");
		return;
	}
	switch (v != NULL ? v->kind_case : MOONJAIL__V1__VALUE__KIND_NIL) {
	case MOONJAIL__V1__VALUE__KIND_BOOLEAN:
		adv_bprintf(b, "%s", v->boolean ? "true" : "false");
		break;
	case MOONJAIL__V1__VALUE__KIND_INTEGER:
		adv_bprintf(b, "%lld", (long long)v->integer);
		break;
	case MOONJAIL__V1__VALUE__KIND_FLOAT:
		adv_bprintf(b, "%gf", v->float_);
		break;
	case MOONJAIL__V1__VALUE__KIND_STRING:
		adv_bprintf(b, "\"");
		for (i = 0; i < v->string.len && i < 64; i++) {
			unsigned char c = v->string.data[i];
			if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
				adv_bprintf(b, "%c", c);
			else
				adv_bprintf(b, "\\%u", c);
		}
		adv_bprintf(b, "%s\"", v->string.len > 64 ? "..." : "");
		break;
	case MOONJAIL__V1__VALUE__KIND_ARRAY:
		adv_bprintf(b, "[");
		for (i = 0; v->array != NULL && i < v->array->n_items; i++) {
			adv_bprintf(b, "%s", i ? "," : "");
			render_pvalue(b, v->array->items[i], depth + 1);
		}
		adv_bprintf(b, "]");
		break;
	case MOONJAIL__V1__VALUE__KIND_MAP:
		adv_bprintf(b, "{");
		for (i = 0; v->map != NULL && i < v->map->n_entries; i++) {
			adv_bprintf(b, "%s", i ? "," : "");
			render_pvalue(b, v->map->entries[i]->key, depth + 1);
			adv_bprintf(b, "=");
			render_pvalue(b, v->map->entries[i]->value, depth + 1);
		}
		adv_bprintf(b, "}");
		break;
	case MOONJAIL__V1__VALUE__KIND_OPAQUE:
		adv_bprintf(b, "<%s>", v->opaque);
		break;
	default:
		adv_bprintf(b, "nil");
		break;
	}
}

static void
render_values(const mj_response *r, char *out, size_t cap)
{
	adv_buf b = {out, 0, cap};
	size_t i;

	out[0] = '\0';
	for (i = 0; i < r->n_values; i++) {
		adv_bprintf(&b, "%s", i ? ", " : "");
		render_pvalue(&b, r->values[i], 0);
	}
}

/* ---- calls ---- */

typedef struct hreq {
	const char *tenant;
	const char *engine; /* NULL: "default" */
	Moonjail__V1__Request__OpCase op;
	const char *src;         /* eval */
	size_t len;              /* eval: 0 for strlen(src) */
	const mj_limits *limits; /* create */
} hreq;

/* One call on a fresh socket, logged as a failure under name unless it is answered. Returns 0
 * with *out set (the caller frees it), or the nng error. */
static int
hcall(const svc *s, const char *name, const hreq *q, mj_response **out, unsigned timeout_ms)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;
	Moonjail__V1__Create cr = MOONJAIL__V1__CREATE__INIT;
	Moonjail__V1__Limits lim = MOONJAIL__V1__LIMITS__INIT;
	Moonjail__V1__Destroy ds = MOONJAIL__V1__DESTROY__INIT;
	Moonjail__V1__Ping ping = MOONJAIL__V1__PING__INIT;
	Moonjail__V1__Limit f[8];
	uint8_t *buf;
	size_t len;
	int rv, i;

	*out = NULL;
	req.version = MJ_PROTO_VERSION;
	req.id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
	req.tenant = (char *)q->tenant;
	req.engine = (char *)(q->engine != NULL ? q->engine : "");
	req.op_case = q->op;
	switch (q->op) {
	case MOONJAIL__V1__REQUEST__OP_EVAL:
		ev.source.data = (uint8_t *)q->src;
		ev.source.len = q->len ? q->len : strlen(q->src);
		ev.chunk_name = "adv"; /* the chunk name the engine corpus expects in messages */
		req.eval = &ev;
		break;
	case MOONJAIL__V1__REQUEST__OP_CREATE:
		for (i = 0; i < 8; i++)
			moonjail__v1__limit__init(&f[i]);
		f[0].value = q->limits->memory;
		f[1].value = q->limits->instructions;
		f[2].value = q->limits->timeout_ms;
		f[3].value = q->limits->output;
		f[4].value = q->limits->source;
		f[5].value = q->limits->result_bytes;
		f[6].value = q->limits->result_depth;
		f[7].value = q->limits->result_items;
		lim.memory = &f[0];
		lim.instructions = &f[1];
		lim.timeout_ms = &f[2];
		lim.output = &f[3];
		lim.source = &f[4];
		lim.result_bytes = &f[5];
		lim.result_depth = &f[6];
		lim.result_items = &f[7];
		cr.limits = &lim;
		req.create = &cr;
		break;
	case MOONJAIL__V1__REQUEST__OP_DESTROY:
		req.destroy = &ds;
		break;
	case MOONJAIL__V1__REQUEST__OP_PING:
		req.ping = &ping;
		break;
	default:
		hfail(name, "hcall: operation %d is not supported here", (int)q->op);
		return NNG_ENOTSUP;
	}
	if (mj_proto_pack(&req.base, &buf, &len) != MJ_OK) {
		hfail(name, "cannot pack the request");
		return NNG_ENOMEM;
	}
	rv = call_raw(s->url, buf, len, out, timeout_ms);
	mj_free(buf);
	pthread_mutex_lock(&hlock);
	hsent++;
	hanswered += rv == 0;
	pthread_mutex_unlock(&hlock);
	if (rv != 0) {
		hfail(name, "no answer: %s", nng_strerror(rv));
		*out = NULL;
		return rv;
	}
	if ((*out)->id != req.id) {
		hfail(name, "answer for id %llu to request %llu", (unsigned long long)(*out)->id,
		      (unsigned long long)req.id);
		mj_proto_free(&(*out)->base);
		*out = NULL;
		return NNG_EPROTO;
	}
	return 0;
}

static int
heval_raw(const svc *s, const char *name, const char *tenant, const char *engine, const char *src,
          mj_response **out)
{
	hreq q = {tenant, engine, MOONJAIL__V1__REQUEST__OP_EVAL, src, 0, NULL};

	return hcall(s, name, &q, out, CALL_MS);
}

/* Evaluates src; the call must succeed and its values render as want. */
static bool
heval(const svc *s, const char *name, const char *tenant, const char *engine, const char *src,
      const char *want)
{
	char got[1024];
	mj_response *r;
	bool ok = false;

	if (heval_raw(s, name, tenant, engine, src, &r) != 0)
		return false;
	render_values(r, got, sizeof(got));
	if (r->status != MOONJAIL__V1__STATUS__STATUS_OK)
		hfail(name, "%s: %s: %s", src, wire_kind_name(resp_kind(name, r)), resp_msg(r));
	else if (strcmp(got, want) != 0)
		hfail(name, "%s: returned %s, want %s", src, got, want);
	else
		ok = true;
	mj_proto_free(&r->base);
	return ok;
}

/* Evaluates src; the call must end with kind want or alt (NONE for no alternative). */
static bool
hkind(const svc *s, const char *name, const char *tenant, const char *engine, const char *src,
      mj_kind want, mj_kind alt)
{
	Moonjail__V1__ErrorKind got;
	mj_response *r;
	bool ok;

	if (heval_raw(s, name, tenant, engine, src, &r) != 0)
		return false;
	got = resp_kind(name, r);
	ok = got == wire_kind(want) || (alt != MJ_KIND_NONE && got == wire_kind(alt));
	if (!ok)
		hfail(name, "%s: kind %s, want %s%s%s (message: %s)", src, wire_kind_name(got),
		      wire_kind_name(wire_kind(want)), alt ? " or " : "",
		      alt ? wire_kind_name(wire_kind(alt)) : "", resp_msg(r));
	mj_proto_free(&r->base);
	return ok;
}

static bool
hcreate(const svc *s, const char *name, const char *tenant, const char *engine, const mj_limits *l)
{
	hreq q = {tenant, engine, MOONJAIL__V1__REQUEST__OP_CREATE, NULL, 0, l};
	mj_response *r;
	bool ok;

	if (hcall(s, name, &q, &r, CALL_MS) != 0)
		return false;
	ok = r->status == MOONJAIL__V1__STATUS__STATUS_OK && r->engine_created;
	if (!ok)
		hfail(name, "create: status %d, engine_created %d: %s", (int)r->status,
		      (int)r->engine_created, resp_msg(r));
	mj_proto_free(&r->base);
	return ok;
}

static void
hdestroy(const svc *s, const char *name, const char *tenant, const char *engine)
{
	hreq q = {tenant, engine, MOONJAIL__V1__REQUEST__OP_DESTROY, NULL, 0, NULL};
	mj_response *r;

	if (hcall(s, name, &q, &r, CALL_MS) != 0)
		return;
	if (r->status != MOONJAIL__V1__STATUS__STATUS_OK)
		hfail(name, "destroy: %s", resp_msg(r));
	mj_proto_free(&r->base);
}

static bool
hping(const svc *s, const char *name)
{
	hreq q = {"probe", NULL, MOONJAIL__V1__REQUEST__OP_PING, NULL, 0, NULL};
	mj_response *r;
	bool ok;

	if (hcall(s, name, &q, &r, 5000) != 0)
		return false;
	ok = r->status == MOONJAIL__V1__STATUS__STATUS_OK;
	if (!ok)
		hfail(name, "ping: %s", resp_msg(r));
	mj_proto_free(&r->base);
	return ok;
}

/* Evaluates `return kept` on the tenant's default engine: it must still hold want, in an engine
 * the service did not create afresh. */
static bool
hkept(const svc *s, const char *name, const char *tenant, int64_t want)
{
	char w[32];
	mj_response *r;
	bool ok;

	if (heval_raw(s, name, tenant, NULL, "return kept", &r) != 0)
		return false;
	render_values(r, w, sizeof(w));
	ok = r->status == MOONJAIL__V1__STATUS__STATUS_OK && !r->engine_created &&
	     r->n_values == 1 && r->values[0]->kind_case == MOONJAIL__V1__VALUE__KIND_INTEGER &&
	     r->values[0]->integer == want;
	if (!ok)
		hfail(name,
		      "tenant %s lost its state: returned %s (engine_created %d), want %lld: %s",
		      tenant, w, (int)r->engine_created, (long long)want, resp_msg(r));
	mj_proto_free(&r->base);
	return ok;
}

static void
hconfig(char *path, size_t cap, const char *text)
{
	static int seq;

	snprintf(path, cap, "/tmp/mj-hostile-%d-%d.ini", (int)getpid(), seq++);
	write_file(path, text);
}

/* ---- one corpus case through the service ---- */

/* Checks what a response to case c (run under limits l) must say; mirrors adv_check_case, with
 * the engine's stats standing in for the wall clock the engine test measures around the call. */
static void
check_outcome(const adv_case *c, const mj_limits *l, const mj_response *r)
{
	unsigned max_ms = c->max_ms ? c->max_ms : ADV_MAX_MS;
	size_t peak_max = l->memory + l->memory / 16 + (64u << 10);
	Moonjail__V1__ErrorKind got = resp_kind(c->name, r);
	Moonjail__V1__ErrorKind want = wire_kind(c->kind);
	char vals[512];

	if (got != want && (c->alt == MJ_KIND_NONE || got != wire_kind(c->alt)))
		hfail(c->name, "kind %s, want %s%s%s (message: %s)", wire_kind_name(got),
		      wire_kind_name(want), c->alt ? " or " : "",
		      c->alt ? wire_kind_name(wire_kind(c->alt)) : "", resp_msg(r));
	else if (c->needle != NULL && strstr(resp_msg(r), c->needle) == NULL)
		hfail(c->name, "message \"%s\" lacks \"%s\"", resp_msg(r), c->needle);
	if (c->values != NULL && got == MOONJAIL__V1__ERROR_KIND__ERROR_KIND_NONE) {
		render_values(r, vals, sizeof(vals));
		if (strcmp(vals, c->values) != 0)
			hfail(c->name, "returned %s, want %s", vals, c->values);
	}
	if (strlen(resp_msg(r)) > 8192 + 3)
		hfail(c->name, "message of %zu bytes", strlen(resp_msg(r)));
	if (r->output.len > l->output)
		hfail(c->name, "output of %zu bytes (limit %zu)", r->output.len, l->output);
	if ((c->flags & ADV_OUTPUT_FULL) && (!r->output_truncated || r->output.len != l->output))
		hfail(c->name, "output_truncated %d, output %zu bytes, want 1 and %zu",
		      (int)r->output_truncated, r->output.len, l->output);
	if (r->engine_reset != wire_is_limit(got))
		hfail(c->name, "engine_reset %d after %s", (int)r->engine_reset,
		      wire_kind_name(got));
	if (r->stats == NULL) {
		hfail(c->name, "no stats");
		return;
	}
	if (r->stats->wall_us > 1000u * (uint64_t)max_ms)
		hfail(c->name, "the call took %llu ms (bound %u ms)",
		      (unsigned long long)(r->stats->wall_us / 1000), max_ms);
	if (r->stats->memory_peak > peak_max)
		hfail(c->name, "memory peak %llu above limit + reserve (%zu)",
		      (unsigned long long)r->stats->memory_peak, peak_max);
	/* The engine ran under exactly the case's limits: the service clamped none of them. */
	if (r->stats->memory_limit != l->memory || r->stats->instruction_limit != l->instructions ||
	    r->stats->timeout_ms != l->timeout_ms || r->stats->output_limit != l->output)
		hfail(c->name,
		      "limits memory %llu, instructions %llu, timeout %u ms, output %llu; asked "
		      "for %zu, %llu, %u, %zu",
		      (unsigned long long)r->stats->memory_limit,
		      (unsigned long long)r->stats->instruction_limit, r->stats->timeout_ms,
		      (unsigned long long)r->stats->output_limit, l->memory,
		      (unsigned long long)l->instructions, l->timeout_ms, l->output);
}

/* After the case: the sentinel survived unless a limit reset the engine, and it runs code. */
static void
check_after(const svc *s, const adv_case *c, const char *tenant, Moonjail__V1__ErrorKind got)
{
	heval(s, c->name, tenant, c->name, "return ADV_SENTINEL",
	      wire_is_limit(got) ? "nil" : "42");
	heval(s, c->name, tenant, c->name, "return 1+1", "2");
}

/* Runs case c on a new engine named after it, created with its limits; returns the response
 * (the caller frees it), or NULL when the case did not get as far as its call. */
static mj_response *
case_call(const svc *s, const char *tenant, const adv_case *c, const mj_limits *l)
{
	hreq q = {tenant, c->name, MOONJAIL__V1__REQUEST__OP_EVAL, c->src, c->len, NULL};
	mj_response *r;

	if (!hcreate(s, c->name, tenant, c->name, l))
		return NULL;
	/* Test builds (MJ_TEST_HOOKS) give every engine a test_syscall global; without it the
	 * engine holds what a production engine holds, which allowlist_only checks. */
	if (!heval(s, c->name, tenant, c->name, "ADV_SENTINEL = 42 test_syscall = nil", ""))
		return NULL;
	if (hcall(s, c->name, &q, &r, CALL_MS) != 0)
		return NULL;
	return r;
}

/* ---- the corpus ---- */

typedef struct htable {
	const char *name;
	const adv_case *cases;
	size_t n;
	mj_limits limits;
	int worker;
	mj_limits ceiling; /* what the service lets this table's tenant ask for */
	char tenant[48];
} htable;

typedef struct hjob {
	const htable *t;
	const adv_case *c;
} hjob;

typedef struct hpool {
	const svc *s;
	const hjob *jobs;
	size_t n;
	size_t next;
} hpool;

static void
run_case(const svc *s, const htable *t, const adv_case *c)
{
	const mj_limits *l = adv_case_limits(c, &t->limits);
	Moonjail__V1__ErrorKind got;
	mj_limits slow;
	mj_response *r;

	r = case_call(s, t->tenant, c, l);
	/* A machine short of CPU (ASan, other tests in parallel) can push a heavy case past its
	 * wall-clock limit: a timeout the case does not expect gets one retry on a fresh
	 * engine with four times the wall clock (no case relies on its timeout unless it
	 * expects one), and the retry's outcome is checked like any other. */
	if (r != NULL && resp_kind(c->name, r) == MOONJAIL__V1__ERROR_KIND__ERROR_KIND_TIMEOUT &&
	    c->kind != MJ_KIND_TIMEOUT && c->alt != MJ_KIND_TIMEOUT) {
		fprintf(stderr, "[ HOSTILE ] %s: unexpected timeout (%s); retrying once\n", c->name,
		        resp_msg(r));
		mj_proto_free(&r->base);
		hdestroy(s, c->name, t->tenant, c->name);
		slow = *l;
		if (slow.timeout_ms != 0 && slow.timeout_ms * 4 <= t->ceiling.timeout_ms)
			slow.timeout_ms *= 4;
		l = &slow; /* the limits the engine had, for the checks below */
		r = case_call(s, t->tenant, c, l);
	}
	if (r != NULL) {
		got = resp_kind(c->name, r);
		if (adv_env("ADV_VERBOSE"))
			fprintf(stderr, "[ HOSTILE ] %s/%s: %s in %llu ms: %s\n", t->name, c->name,
			        wire_kind_name(got),
			        r->stats ? (unsigned long long)r->stats->wall_us / 1000 : 0ull,
			        resp_msg(r));
		check_outcome(c, l, r);
		mj_proto_free(&r->base);
		check_after(s, c, t->tenant, got);
	}
	hdestroy(s, c->name, t->tenant, c->name);
}

static void *
pool_thread(void *p)
{
	hpool *pl = p;
	size_t i;

	while ((i = __atomic_fetch_add(&pl->next, 1, __ATOMIC_RELAXED)) < pl->n)
		run_case(pl->s, pl->jobs[i].t, pl->jobs[i].c);
	return NULL;
}

/* Whether the service can give an engine exactly l, for a tenant whose ceilings are max (a
 * Create asking for more is lowered to the ceiling, which would change the case). */
static bool
expressible(const mj_limits *l, const mj_limits *max)
{
	return l->memory <= max->memory &&
	       (max->instructions == 0 ||
	        (l->instructions != 0 && l->instructions <= max->instructions)) &&
	       (max->timeout_ms == 0 || (l->timeout_ms != 0 && l->timeout_ms <= max->timeout_ms)) &&
	       l->output <= max->output && l->source <= max->source &&
	       l->result_bytes <= max->result_bytes && l->result_depth <= max->result_depth &&
	       l->result_items <= max->result_items;
}

#define NBYSTANDERS 2

typedef struct hwatch {
	const svc *s;
	char tenant[NBYSTANDERS][48];
	int64_t kept[NBYSTANDERS];
	int stop;
	unsigned checks;
	uint64_t worst_ms;
} hwatch;

/* A bystander on every worker keeps answering with its state while the corpus runs. */
static void *
watch_thread(void *p)
{
	hwatch *w = p;
	uint64_t t0, ms;
	int i;

	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		for (i = 0; i < NBYSTANDERS; i++) {
			t0 = now_ms();
			hkept(w->s, "bystander", w->tenant[i], w->kept[i]);
			ms = now_ms() - t0;
			w->worst_ms = ms > w->worst_ms ? ms : w->worst_ms;
			w->checks++;
		}
		sleep_ms(100);
	}
	return NULL;
}

/* Client threads at once. Each worker runs two calls at a time (--executors 2), so four keep
 * both workers busy; more would only queue, and stretch the cases' wall-clock bounds on two
 * cores. HOSTILE_JOBS overrides it. */
static unsigned
hjobs(void)
{
	const char *v = getenv("HOSTILE_JOBS");
	long n = v != NULL ? strtol(v, NULL, 10) : 4;

	return n < 1 ? 1u : n > 16 ? 16u : (unsigned)n;
}

/*
 * Every case of every engine table, each on an engine of its own created with the case's
 * limits through Create, with bystanders on both workers that must keep their state.
 *
 * Skipped: cases marked as known engine bugs (they fail in the engine test too), and cases whose
 * limits the service cannot express. Every field of the engine's limits has a Create field, and
 * the service's ceilings are raised (by the config file below) to the largest limits in the
 * tables: a 64 MiB heap, 8 s, no instruction limit. The instruction table asks for no clock at
 * all, which the service grants only to a tenant whose ceiling has none, so that table's tenant
 * gets such a ceiling. Any case a future table adds beyond these ceilings is skipped and counted
 * rather than run under limits it did not ask for; the response's stats show the limits the
 * engine really had, and they are checked.
 */
static void
test_corpus_through_service(void **state)
{
	htable tables[] = {
#define TABLE(nm, t, lim, w) {.name = nm, .cases = t, .n = NELEM(t), .limits = lim, .worker = w}
	    TABLE("timeout", adv_timeout_cases, adv_timeout_table_limits(), 0),
	    TABLE("memory", adv_memory_cases, adv_memory_table_limits(), 1),
	    TABLE("interp", adv_interp_cases, adv_interp_table_limits(), 1),
	    TABLE("instructions", adv_instructions_cases, adv_instructions_table_limits(), 0),
	    TABLE("escape", adv_escape_cases, adv_escape_table_limits(), 0),
	    TABLE("output", adv_output_cases, adv_output_table_limits(), 1),
	    TABLE("memory-legit", adv_memory_legit_cases, adv_memory_table_limits(), 1),
#undef TABLE
	};
	char cfg[128], text[512];
	const char *extra[] = {"--workers", "2", "--config", cfg, NULL};
	size_t i, k, njobs = 0, nbugs = 0, nlimits = 0, ncases = 0, first;
	pid_t pids[NBYSTANDERS];
	hwatch w;
	hpool pool;
	hjob *jobs;
	pthread_t th[16], wth;
	unsigned nth = hjobs(), t;
	uint64_t t0, ms;
	svc s;

	(void)state;
	hreset_counts();
	for (i = 0; i < NELEM(tables); i++) {
		char prefix[24];
		snprintf(prefix, sizeof(prefix), "adv-%s-", tables[i].name);
		tenant_on(tables[i].worker, 2, prefix, tables[i].tenant, sizeof(tables[i].tenant));
		mj_limits_default(&tables[i].ceiling);
		tables[i].ceiling.memory = 64u << 20;
		tables[i].ceiling.instructions = 0;
		tables[i].ceiling.timeout_ms =
		    tables[i].cases == adv_instructions_cases ? 0u : 8000u;
	}
	for (i = 0; tables[i].cases != adv_instructions_cases; i++)
		;
	snprintf(text, sizeof(text),
	         "[defaults]\nmemory_limit = 64M\ninstruction_limit = 0\ntimeout_ms = 8000\n\n"
	         "[tenant:%s]\ntimeout_ms = 0\n",
	         tables[i].tenant);
	hconfig(cfg, sizeof(cfg), text);
	/* Round robin over the tables keeps both workers busy; cases with a longer bound go
	 * first, so no long case starts last. */
	for (i = 0; i < NELEM(tables); i++)
		ncases += tables[i].n;
	assert_non_null(jobs = calloc(ncases, sizeof(*jobs)));
	for (k = 0; njobs + nbugs + nlimits < ncases; k++) {
		for (i = 0; i < NELEM(tables); i++) {
			const adv_case *c;
			if (k >= tables[i].n)
				continue;
			c = &tables[i].cases[k];
			if (c->bug != NULL)
				nbugs++;
			else if (!expressible(adv_case_limits(c, &tables[i].limits),
			                      &tables[i].ceiling))
				nlimits++;
			else
				jobs[njobs++] = (hjob){&tables[i], c};
		}
	}
	for (i = 0, first = 0; i < njobs; i++) {
		if (jobs[i].c->max_ms != 0) {
			hjob j = jobs[i];
			memmove(&jobs[first + 1], &jobs[first], (i - first) * sizeof(*jobs));
			jobs[first++] = j;
		}
	}

	svc_start(&s, extra);
	unlink(cfg); /* read at start; these tests never reload it */
	memset(&w, 0, sizeof(w));
	w.s = &s;
	for (i = 0; i < NBYSTANDERS; i++) {
		char src[64];
		tenant_on((int)i, 2, "bystander", w.tenant[i], sizeof(w.tenant[i]));
		w.kept[i] = 1000 + (int64_t)i;
		snprintf(src, sizeof(src), "kept = %lld return kept", (long long)w.kept[i]);
		assert_int_equal(eval_int(&s, w.tenant[i], src), w.kept[i]);
		assert_true((pids[i] = worker_pid(&s, (int)i)) > 0);
	}

	t0 = now_ms();
	pool = (hpool){&s, jobs, njobs, 0};
	assert_int_equal(pthread_create(&wth, NULL, watch_thread, &w), 0);
	for (t = 0; t < nth; t++)
		assert_int_equal(pthread_create(&th[t], NULL, pool_thread, &pool), 0);
	for (t = 0; t < nth; t++)
		pthread_join(th[t], NULL);
	ms = now_ms() - t0;
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	pthread_join(wth, NULL);
	fprintf(stderr,
	        "[ HOSTILE ] corpus: %zu cases in %llu ms on %u threads (skipped: %zu known "
	        "engine bugs, %zu beyond the service's limits); %u bystander checks, slowest %llu "
	        "ms\n",
	        njobs, (unsigned long long)ms, nth, nbugs, nlimits, w.checks,
	        (unsigned long long)w.worst_ms);
	free(jobs);

	/* The bystanders held their state throughout (checked above) and still do; the service
	 * answers, and no worker died along the way. */
	assert_true(w.checks >= NBYSTANDERS);
	for (i = 0; i < NBYSTANDERS; i++) {
		hkept(&s, "bystander", w.tenant[i], w.kept[i]);
		if (worker_pid(&s, (int)i) != pids[i])
			hfail("corpus", "worker %zu was replaced (pid %d, now %d); see %s", i,
			      (int)pids[i], (int)worker_pid(&s, (int)i), s.log);
	}
	hping(&s, "corpus");
	hassert_clean("corpus");
	assert_int_equal(svc_stop(&s), 0);
}

/* ---- one tenant against another on the same worker ---- */

#define SECRET "A-secret-7f3a"

/* A's state and libraries, all in one probe: a change by B to anything shared-looking would
 * show here. PROBE_WANT is its rendering once the counter reaches the printf argument. */
#define PROBE                                                                                      \
	"counter = counter + 1 return counter, secret, greet('x'), string.rep('a', 3), "           \
	"('abc'):len(), ('x'):upper(), table.concat({1, 2}), math.pi > 3.14, pcall(type, 1), "     \
	"type(collectgarbage), '10' + 1, undefined_global, type(print), #shared"
#define PROBE_WANT                                                                                 \
	"%d, \"" SECRET                                                                            \
	"\", \"hello x\", \"aaa\", 3, \"X\", \"12\", true, true, \"function\", 11, "               \
	"nil, \"function\", 3"

#define NSTARVE 4

typedef struct hstarve {
	const svc *s;
	const char *tenant;
	const char *engine;
	const char *src;
	mj_kind want, alt;
	mj_limits limits;
	const int *stop;
	unsigned calls;
} hstarve;

static void *
starve_thread(void *p)
{
	hstarve *a = p;

	if (!hcreate(a->s, a->engine, a->tenant, a->engine, &a->limits))
		return NULL;
	while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE)) {
		hkind(a->s, a->engine, a->tenant, a->engine, a->src, a->want, a->alt);
		a->calls++;
	}
	return NULL;
}

/* Tenant B shares tenant A's worker and tries to read A's state, to change it through
 * everything that looks shared, and to starve it; A's answers stay right and prompt. */
static void
test_cross_tenant(void **state)
{
	/* No instruction limit: B's clock is what ends its loops. */
	static const char *const extra[] = {"--workers", "2", "--instruction-limit", "0", NULL};
	static const struct {
		const char *src, *want;
	} reads[] = {
	    {"return secret, greet, counter, shared", "nil, nil, nil, nil"},
	    {"return _G.secret, rawget(_G, 'secret'), _ENV.secret, _G._G.secret",
	     "nil, nil, nil, nil"},
	    {"return debug, package, io, dofile, loadfile", "nil, nil, nil, nil, nil"},
	    {"return (pcall(require, 'debug')), (pcall(require, 'package'))", "false, false"},
	    {"return load('return secret', 'x', 't', setmetatable({}, {__index = _G}))()", "nil"},
	    {"return load('return secret')(), load('local _ENV = ... return secret')(_G)",
	     "nil, nil"},
	    {"local _ENV <const> = _G return secret", "nil"},
	    {"return getmetatable('').__index.secret, ('').secret, getmetatable('').secret",
	     "nil, nil, nil"},
	    /* Everything reachable from B's globals and the string metatable, keys and values,
	     * and the metatables on the way: nothing of A's. */
	    {"local seen, found = {}, 0 "
	     "local function walk(v) "
	     "  if type(v) == 'string' then "
	     "    if v:find('A-secret', 1, true) or v == 'greet' then found = found + 1 end "
	     "  elseif type(v) == 'table' and not seen[v] then "
	     "    seen[v] = true "
	     "    for k, x in next, v do walk(k) walk(x) end "
	     "    walk(getmetatable(v)) "
	     "  end "
	     "end "
	     "walk(_G) walk(getmetatable('')) return found",
	     "0"},
	};
	static const char attack[] =
	    "local smt = getmetatable('') "
	    "smt.__index = {len = function() return -1 end, rep = function() return 'pwned' end} "
	    "smt.__add = function() return 'pwned' end "
	    "string.rep = nil rawset(string, 'upper', nil) table.concat = print math.pi = 3 "
	    "secret = 'from B' greet = error shared = {} counter = -100 "
	    "collectgarbage = nil print = error pcall = error "
	    "setmetatable(_G, {__index = function() return 'pwned' end}) "
	    "return 'done'";
	char a[48], b[48], want[512];
	int stop = 0, i;
	hstarve st[NSTARVE];
	pthread_t th[NSTARVE];
	uint64_t t0, ms, worst = 0;
	svc s;

	(void)state;
	hreset_counts();
	svc_start(&s, extra);
	tenant_on(0, 2, "alice", a, sizeof(a));
	tenant_on(0, 2, "mallory", b, sizeof(b));
	heval(&s, "alice", a, NULL,
	      "secret = '" SECRET "' counter = 0 shared = {1, 2, 3} "
	      "function greet(x) return 'hello ' .. x end return #secret",
	      "13");

	/* Reading A's state. */
	for (i = 0; i < (int)NELEM(reads); i++)
		heval(&s, "read", b, NULL, reads[i].src, reads[i].want);

	/* Changing everything in B's engine that might be shared with A's. */
	hkind(&s, "change", b, NULL, "collectgarbage('collect')", MJ_KIND_RUNTIME, MJ_KIND_NONE);
	hkind(&s, "change", b, NULL, "collectgarbage('stop')", MJ_KIND_RUNTIME, MJ_KIND_NONE);
	heval(&s, "change", b, NULL, attack, "\"done\"");
	/* The changes took in B's engine (its state persists)... */
	heval(&s, "change", b, NULL,
	      "return ('abc'):len(), string.rep, secret, undefined_global, "
	      "getmetatable('').__add ~= nil",
	      "-1, nil, \"from B\", \"pwned\", true");
	/* ...and nowhere else. */
	snprintf(want, sizeof(want), PROBE_WANT, 1);
	heval(&s, "alice", a, NULL, PROBE, want);

	/* Starving A: B burns CPU to its timeout on two engines, which is as many as the worker
	 * has executors, and fills its memory and floods output on two more. */
	for (i = 0; i < NSTARVE; i++) {
		memset(&st[i], 0, sizeof(st[i]));
		st[i].s = &s;
		st[i].tenant = b;
		st[i].stop = &stop;
		st[i].limits = adv_limits(4u << 20, 0, 300);
		st[i].engine = "cpu";
		st[i].src = "while true do end";
		st[i].want = MJ_KIND_TIMEOUT;
	}
	st[1].engine = "cpu2";
	st[2].engine = "memory";
	st[2].src = "local t = {} while true do t[#t + 1] = {} end";
	st[2].want = MJ_KIND_MEMORY;
	st[2].alt = MJ_KIND_TIMEOUT; /* the bomb may not reach 4 MiB in 300 ms under load */
	st[3].engine = "output";
	st[3].src = "while true do print('flood flood flood') end";
	st[3].want = MJ_KIND_OUTPUT;
	st[3].limits.output = 64u << 10;
	for (i = 0; i < NSTARVE; i++)
		assert_int_equal(pthread_create(&th[i], NULL, starve_thread, &st[i]), 0);
	sleep_ms(200);
	for (i = 2; i <= 21; i++) {
		snprintf(want, sizeof(want), PROBE_WANT, i);
		t0 = now_ms();
		heval(&s, "alice", a, NULL, PROBE, want);
		ms = now_ms() - t0;
		worst = ms > worst ? ms : worst;
		sleep_ms(50);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < NSTARVE; i++)
		pthread_join(th[i], NULL);
	fprintf(stderr,
	        "[ HOSTILE ] starving: B made %u, %u, %u and %u calls; A's slowest call took %llu "
	        "ms\n",
	        st[0].calls, st[1].calls, st[2].calls, st[3].calls, (unsigned long long)worst);
	for (i = 0; i < NSTARVE; i++)
		if (st[i].calls < 3)
			hfail("starve", "B's %s engine made only %u calls", st[i].engine,
			      st[i].calls);
	/* A waits at most for one of B's 300 ms calls to end; a worker that let B hold both
	 * executors in turn would show as seconds. */
	if (worst >= 1500)
		hfail("starve", "A's call waited %llu ms behind B", (unsigned long long)worst);
	/* Afterwards A's state and libraries are intact. */
	snprintf(want, sizeof(want), PROBE_WANT, 22);
	heval(&s, "alice", a, NULL, PROBE, want);
	hping(&s, "cross-tenant");
	hassert_clean("cross-tenant");
	assert_int_equal(svc_stop(&s), 0);
}

/* B fills the worker's memory budget with engines of its own. Idle engines are evicted from any
 * tenant, least recently used first (docs/worker.md), so A's engine may go; what must hold is
 * that A is never handed a fresh engine silently: its state is intact, or the response says
 * engine_created. */
static void
test_cross_tenant_eviction(void **state)
{
	static const char *const extra[] = {"--workers", "1", "--worker-memory", "40M", NULL};
	static const char fill[] =
	    "keep = {} for i = 1, 12000 do keep[i] = string.rep('b', 1000) .. i end return #keep";
	char a[48], b[48], eng[16];
	mj_response *r;
	bool intact;
	int i;
	svc s;

	(void)state;
	hreset_counts();
	svc_start(&s, extra);
	tenant_on(0, 1, "alice", a, sizeof(a));
	tenant_on(0, 1, "mallory", b, sizeof(b));
	heval(&s, "alice", a, NULL, "secret = '" SECRET "' return #secret", "13");
	for (i = 0; i < 4; i++) {
		snprintf(eng, sizeof(eng), "fill%d", i);
		heval(&s, "fill", b, eng, fill, "12000");
	}
	assert_int_equal(heval_raw(&s, "alice", a, NULL, "return secret", &r), 0);
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_OK);
	assert_int_equal(r->n_values, 1);
	intact = r->values[0]->kind_case == MOONJAIL__V1__VALUE__KIND_STRING &&
	         r->values[0]->string.len == strlen(SECRET) &&
	         memcmp(r->values[0]->string.data, SECRET, strlen(SECRET)) == 0;
	fprintf(stderr, "[ HOSTILE ] eviction: A's engine %s after B filled the budget\n",
	        intact ? "kept its state" : "was evicted");
	if (!intact) {
		assert_true(r->engine_created);
		assert_int_equal(r->values[0]->kind_case, MOONJAIL__V1__VALUE__KIND_NIL);
	} else {
		assert_false(r->engine_created);
	}
	mj_proto_free(&r->base);
	hping(&s, "eviction");
	hassert_clean("eviction");
	assert_int_equal(svc_stop(&s), 0);
}

/* ---- Lua 5.4.4's interpreter bugs ---- */

/* Cases of the engine tables that reach Lua 5.4.4 bugs (lua.org/bugs.html) or the engine's
 * known limits in docs/engine.md. */
static const struct {
	const char *table, *name;
} lua544_refs[] = {
    /* C-stack overflow with deep nesting of coroutine.close */
    {"interp", "close_chain_10000"},
    {"interp", "close_chain_with_deep_c_frames"},
    {"interp", "wrap_close_chain_10000"},
    {"interp", "close_resume_alternation"},
    {"interp", "yield_inside_close_during_close"},
    {"interp", "resume_closing_coroutine_from_close"},
    /* Lua-stack overflow when the C stack overflows while handling an error (CVE-2022-33099) */
    {"interp", "cstack_xpcall_loop_loop"},
    {"interp", "cstack_nested_pcall"},
    /* an emergency collection during a table assignment at the memory cap */
    {"memory", "fill_then_fresh_keys"},
    {"memory", "fill_then_big_resize"},
    {"memory", "garbage_then_fresh_keys"},
    {"memory", "fresh_table_keys_at_cap"},
    /* loading a corrupted binary chunk can segfault: binary chunks are refused */
    {"escape", "eval_bytecode_header"},
    {"escape", "load_binary_string"},
    /* string.rep('', n) loops n times; a __call chain loops in call setup */
    {"timeout", "string_rep_empty_huge"},
    {"timeout", "call_metamethod_self_chain"},
};

/* A generated chunk with more than 255 constants, so bitwise operations meet constants that do
 * not fit an instruction's K operand. */
#define MANY_CONSTANTS_BITWISE                                                                     \
	"local parts = {'local x = ... local t = {'} "                                             \
	"for i = 1, 300 do parts[#parts + 1] = i .. '.5,' end "                                    \
	"parts[#parts + 1] = '} return 0xF0 | x, x | 0xF0, 1 << x, x & 3, 3 ~ x, x >> 1, "         \
	"0xFF ~ 0x0F & x, 300 | x, x ~ 301' "                                                      \
	"return assert(load(table.concat(parts, ' ')))(5)"

/* Probes of the other bugs lua.org lists for 5.4.4 that pure Lua reaches. The values are what
 * a correct Lua returns; Debian's 5.4.4 carries the fixes for the two CVEs. */
static const adv_case lua544_cases[] = {
    /* Lua can generate wrong code when _ENV is <const> (CVE-2022-28805) */
    {.name = "env_const_number_write",
     .src = "local function foo() local _ENV <const> = 11 X = 'hi' end "
            "local ok, msg = pcall(foo) return ok, msg:find('number') ~= nil",
     .kind = MJ_KIND_NONE,
     .values = "false, true"},
    {.name = "env_const_number_read",
     .src = "local _ENV <const> = 11 return X",
     .kind = MJ_KIND_RUNTIME,
     .needle = "number"},
    {.name = "env_const_string",
     .src = "local _ENV <const> = 'str' return len, upper, secret",
     .kind = MJ_KIND_NONE,
     .values = "<function>, <function>, nil"},
    {.name = "env_const_nil_write",
     .src = "local _ENV <const> = nil X = 1",
     .kind = MJ_KIND_RUNTIME},
    /* wrong code generation for constants in bitwise operations */
    {.name = "bitwise_many_constants",
     .src = MANY_CONSTANTS_BITWISE,
     .kind = MJ_KIND_NONE,
     .values = "245, 245, 32, 1, 6, 2, 250, 301, 296"},
    {.name = "bitwise_float_constants",
     .src = "local x = 5 return 2.0 | x, x & 3.0, 0xF0 | x, x ~ 0xFF",
     .kind = MJ_KIND_NONE,
     .values = "7, 1, 245, 250"},
    /* negation in luaV_shiftr may overflow */
    {.name = "shift_by_mininteger",
     .src = "return 1 >> math.mininteger, 1 << math.mininteger, -1 >> math.mininteger, "
            "math.mininteger >> 63",
     .kind = MJ_KIND_NONE,
     .values = "0, 0, 0, 1"},
    /* 'break' may not properly close a variable in a 'for' loop */
    {.name = "for_loop_exits_close_variables",
     .src = "local closed = 0 local function mk() return setmetatable({}, {__close = "
            "function() closed = closed + 1 end}) end "
            "for i = 1, 3 do local x <close> = mk() if i == 2 then break end end "
            "for k in pairs({1, 2, 3}) do local x <close> = mk() break end "
            "for _ in function() return 1 end, nil, nil, mk() do break end "
            "for i = 1, 2 do local x <close> = mk() do local y <close> = mk() "
            "if i == 1 then break end end end "
            "local function tail() return closed end "
            "local function f() for k in function() return 1 end, nil, nil, mk() do "
            "return tail() end end "
            "local during = f() return during, closed",
     .kind = MJ_KIND_NONE,
     .values = "6, 7"},
    /* utf8.codes does not raise an error on spurious continuation bytes: either is fine */
    {.name = "utf8_codes_spurious_continuation",
     .src = "local n = 0 local ok = pcall(function() for p, c in utf8.codes('a\\x80') do "
            "n = n + 1 end end) return n >= 1",
     .kind = MJ_KIND_NONE,
     .values = "true"},
    /* yielding in a __close run by a return of varargs */
    {.name = "yield_in_close_at_vararg_return",
     .src = "local co = coroutine.wrap(function(...) local x <close> = setmetatable({}, "
            "{__close = function() coroutine.yield('closing') end}) return ... end) "
            "local a = co(1, 2, 3) local b, c, d = co() return a, b, c, d",
     .kind = MJ_KIND_NONE,
     .values = "\"closing\", 1, 2, 3"},
    /* luaL_tolstring with __name and a __tostring that returns a number */
    {.name = "tostring_metafields",
     .src = "return tostring(setmetatable({}, {__name = 'X'})):match('^X: ') ~= nil, "
            "pcall(tostring, setmetatable({}, {__tostring = function() return {} end}))",
     .kind = MJ_KIND_NONE,
     .values = "true, false, \"'__tostring' must return a string\""},
};

/* A long chain of weak-keyed entries in random order: one collection cycle converges the chain
 * one link per pass, quadratic and inside the interpreter where no hook runs (docs/engine.md,
 * known limits). Only the supervisor's hard deadline ends it, by killing the worker. */
#define EPHEMERON_CHAIN                                                                            \
	"local t = setmetatable({}, {__mode = 'k'}) local N = 60000 local ks = {} "                \
	"for i = 1, N do ks[i] = {} end "                                                          \
	"for i = N, 2, -1 do local j = math.random(i) ks[i], ks[j] = ks[j], ks[i] end "            \
	"root = ks[1] for i = 1, N - 1 do t[ks[i]] = ks[i + 1] end keep = t ks = nil "             \
	"for r = 1, 100 do local junk = {} for i = 1, 50000 do junk[i] = {} end end "              \
	"return 'done'"

/* The hard deadline of a tenant whose ceiling is 8000 ms, plus slack for a loaded machine. */
#define BUG_BOUND_MS (8000u + 2000u + 3000u)

typedef struct hbugs {
	const svc *s;
	char tenant[48];    /* runs the cases, on worker 0 */
	char keeper[2][48]; /* bystanders on workers 0 and 1 */
	int64_t kept[2];
	unsigned killed;
} hbugs;

static void
plant(const svc *s, const char *tenant, int64_t v)
{
	char src[64], want[32];

	snprintf(src, sizeof(src), "kept = %lld return kept", (long long)v);
	snprintf(want, sizeof(want), "%lld", (long long)v);
	heval(s, "plant", tenant, NULL, src, want);
}

/* After worker 0 died: worker 1's tenant kept its state, the service answers, and worker 0's
 * tenants are served again (by the spare) within bounds. */
static void
check_recovered(hbugs *h, const char *name, pid_t dead)
{
	uint64_t t0;

	hkept(h->s, name, h->keeper[1], h->kept[1]);
	hping(h->s, name);
	for (t0 = now_ms(); worker_pid(h->s, 0) == dead && now_ms() - t0 < 5000; sleep_ms(10))
		;
	if (worker_pid(h->s, 0) == dead)
		hfail(name, "worker 0 (pid %d) was not replaced within 5 s", (int)dead);
	t0 = now_ms();
	heval(h->s, name, h->tenant, name, "return 1+1", "2");
	if (now_ms() - t0 > 2000)
		hfail(name, "the replacement answered after %llu ms",
		      (unsigned long long)(now_ms() - t0));
	hdestroy(h->s, name, h->tenant, name);
	/* Worker 0's bystander lost its engine with the worker; it starts again. */
	plant(h->s, h->keeper[0], h->kept[0]);
}

/* Runs one case on worker 0. The worker survives it, and the case ends as the engine test
 * says; or the case kills the worker, and then the call is still answered in time, and only
 * worker 0's engines are lost. */
static void
run_bug_case(hbugs *h, const adv_case *c, const mj_limits *table)
{
	const mj_limits *l = adv_case_limits(c, table);
	pid_t pid = worker_pid(h->s, 0);
	Moonjail__V1__ErrorKind got;
	mj_response *r;
	uint64_t t0 = now_ms(), ms;

	r = case_call(h->s, h->tenant, c, l);
	ms = now_ms() - t0;
	if (r == NULL) {
		hdestroy(h->s, c->name, h->tenant, c->name);
		return;
	}
	if (ms > BUG_BOUND_MS)
		hfail(c->name, "answered after %llu ms (bound %u ms)", (unsigned long long)ms,
		      BUG_BOUND_MS);
	got = resp_kind(c->name, r);
	if (got == MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST || worker_pid(h->s, 0) != pid) {
		fprintf(stderr, "[ HOSTILE ] %s: NOTE: killed worker 0 (pid %d): %s: %s\n", c->name,
		        (int)pid, wire_kind_name(got), resp_msg(r));
		h->killed++;
		mj_proto_free(&r->base);
		check_recovered(h, c->name, pid);
		return;
	}
	check_outcome(c, l, r);
	mj_proto_free(&r->base);
	check_after(h->s, c, h->tenant, got);
	hdestroy(h->s, c->name, h->tenant, c->name);
	hkept(h->s, c->name, h->keeper[0], h->kept[0]);
	if (worker_pid(h->s, 0) != pid)
		hfail(c->name, "worker 0 was replaced after the case");
}

typedef struct hbusy {
	const svc *s;
	const char *tenant;
	int rv;
	mj_response *r;
} hbusy;

static void *
busy_thread(void *p)
{
	hbusy *a = p;

	/* Wall-clock busy work that outlives the wedge's hard deadline. */
	a->rv = heval_raw(a->s, "in-flight", a->tenant, "busy",
	                  "local t = os.time() while os.time() - t < 7 do end return 1", &a->r);
	return NULL;
}

static bool
log_has(const svc *s, const char *needle)
{
	char line[512];
	FILE *f = fopen(s->log, "r");
	bool found = false;

	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/* Lua 5.4.4's bugs and the engine's known limits, one at a time on worker 0, with bystanders on
 * both workers; then a script the engine cannot stop, which the supervisor's hard deadline
 * must end by killing the worker, answering every call on it. */
static void
test_lua544_bugs(void **state)
{
	static const struct {
		const char *name;
		const adv_case *cases;
		size_t n;
		mj_limits (*limits)(void);
	} tables[] = {
	    {"interp", adv_interp_cases, NELEM(adv_interp_cases), adv_interp_table_limits},
	    {"memory", adv_memory_cases, NELEM(adv_memory_cases), adv_memory_table_limits},
	    {"escape", adv_escape_cases, NELEM(adv_escape_cases), adv_escape_table_limits},
	    {"timeout", adv_timeout_cases, NELEM(adv_timeout_cases), adv_timeout_table_limits},
	};
	char cfg[128], text[512], wedge[48];
	const char *extra[] = {"--workers", "2", "--config", cfg, NULL};
	mj_limits l, wl;
	hbusy busy = {0};
	pthread_t bth;
	hbugs h;
	size_t i, k, n;
	uint64_t t0, ms;
	mj_response *r;
	pid_t pid;
	svc s;

	(void)state;
	hreset_counts();
	memset(&h, 0, sizeof(h));
	tenant_on(0, 2, "lua544-", h.tenant, sizeof(h.tenant));
	tenant_on(0, 2, "keeper", h.keeper[0], sizeof(h.keeper[0]));
	tenant_on(1, 2, "keeper", h.keeper[1], sizeof(h.keeper[1]));
	tenant_on(0, 2, "wedge", wedge, sizeof(wedge));
	/* The corpus's largest limits; the wedge's tenant gets a short clock, so its hard deadline
	 * (timeout + the 2000 ms margin) comes quickly. */
	snprintf(text, sizeof(text),
	         "[defaults]\nmemory_limit = 64M\ninstruction_limit = 0\ntimeout_ms = 8000\n\n"
	         "[tenant:%s]\ntimeout_ms = 500\n",
	         wedge);
	hconfig(cfg, sizeof(cfg), text);
	svc_start(&s, extra);
	unlink(cfg); /* read at start; these tests never reload it */
	h.s = &s;
	h.kept[0] = 2000;
	h.kept[1] = 2001;
	plant(&s, h.keeper[0], h.kept[0]);
	plant(&s, h.keeper[1], h.kept[1]);

	for (i = 0; i < NELEM(lua544_refs); i++) {
		const adv_case *c = NULL;
		for (k = 0; k < NELEM(tables) && c == NULL; k++) {
			if (strcmp(tables[k].name, lua544_refs[i].table) != 0)
				continue;
			for (n = 0; n < tables[k].n; n++)
				if (strcmp(tables[k].cases[n].name, lua544_refs[i].name) == 0)
					break;
			if (n == tables[k].n)
				fail_msg("no case %s in the %s table", lua544_refs[i].name,
				         lua544_refs[i].table);
			c = &tables[k].cases[n];
			l = tables[k].limits();
		}
		assert_non_null(c);
		run_bug_case(&h, c, &l);
	}
	l = adv_interp_table_limits();
	for (i = 0; i < NELEM(lua544_cases); i++)
		run_bug_case(&h, &lua544_cases[i], &l);
	fprintf(stderr, "[ HOSTILE ] lua 5.4.4: %zu cases, %u killed the worker\n",
	        NELEM(lua544_refs) + NELEM(lua544_cases), h.killed);

	/* The wedge, with a call of worker 0's bystander in flight on the other executor. */
	pid = worker_pid(&s, 0);
	busy.s = &s;
	busy.tenant = h.keeper[0];
	assert_int_equal(pthread_create(&bth, NULL, busy_thread, &busy), 0);
	wl = adv_limits(64u << 20, 0, 500);
	assert_true(hcreate(&s, "wedge", wedge, "wedge", &wl));
	sleep_ms(100);
	t0 = now_ms();
	assert_int_equal(heval_raw(&s, "wedge", wedge, "wedge", EPHEMERON_CHAIN, &r), 0);
	ms = now_ms() - t0;
	pthread_join(bth, NULL);
	fprintf(stderr, "[ HOSTILE ] wedge: %s after %llu ms: %s\n",
	        wire_kind_name(resp_kind("wedge", r)), (unsigned long long)ms, resp_msg(r));
	/* The culprit gets timeout at its hard deadline (500 + 2000 ms), not before, and not
	 * much later. */
	assert_int_equal(resp_kind("wedge", r), MOONJAIL__V1__ERROR_KIND__ERROR_KIND_TIMEOUT);
	mj_proto_free(&r->base);
	assert_true(ms >= 2500 - 50); /* less a little for millisecond rounding */
	assert_true(ms < 2500 + 3000);
	/* The other call on the dead worker was answered, as engine-lost. */
	assert_int_equal(busy.rv, 0);
	assert_int_equal(resp_kind("in-flight", busy.r),
	                 MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST);
	mj_proto_free(&busy.r->base);
	assert_true(log_has(&s, "event=worker-kill"));
	/* Worker 1's tenant saw nothing; worker 0's bystander is told its engine is new. */
	check_recovered(&h, "wedge", pid);
	assert_int_equal(heval_raw(&s, "wedge", h.keeper[1], NULL, "return kept", &r), 0);
	assert_false(r->engine_created);
	mj_proto_free(&r->base);
	assert_int_equal(heval_raw(&s, "wedge", wedge, "wedge", "return keep", &r), 0);
	assert_true(r->engine_created);
	assert_int_equal(r->n_values, 1);
	assert_int_equal(r->values[0]->kind_case, MOONJAIL__V1__VALUE__KIND_NIL);
	mj_proto_free(&r->base);
	hassert_clean("lua 5.4.4");
	assert_int_equal(svc_stop(&s), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corpus_through_service),
	    cmocka_unit_test(test_cross_tenant),
	    cmocka_unit_test(test_cross_tenant_eviction),
	    cmocka_unit_test(test_lua544_bugs),
	};

	return SVC_RUN_TESTS(tests);
}

#else

int
main(void)
{
	/* Built before the service programs exist: nothing to run yet. */
	fprintf(stderr, "moonjaild or moonjail-worker is not built\n");
	return 1;
}

#endif
