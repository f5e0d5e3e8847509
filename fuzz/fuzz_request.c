/* libFuzzer target: wire messages decoded as moonjaild, moonjail-worker and the client do. */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "mj/limits.h"
#include "mj/proto.h"
#include "mj/text.h"

/* The caps below copy the ones in supervisor/src/router.c (client requests),
 * worker/src/serve.c (WorkerRequest, then the Request inside it) and client/src/client.c
 * (responses); keep them in step. */
static void
supervisor_caps(mj_proto_caps *caps)
{
	mj_proto_caps_default(caps);
	caps->memory_budget = 64u << 20;
}

static void
worker_caps(mj_proto_caps *caps)
{
	mj_proto_caps_default(caps);
	caps->max_bytes = (size_t)(16u << 20) + (64u << 10);
	caps->max_messages = 1u << 20;
	caps->memory_budget = 64u << 20;
}

static void
client_caps(mj_proto_caps *caps)
{
	mj_proto_caps_default(caps);
	caps->max_bytes = 16u << 20;
}

/* A message refused as malformed must be one protobuf-c itself refuses: the validator may
 * not turn away valid requests. Only small inputs, as unbounded unpacking is what the caps
 * exist to prevent. protobuf-c 1.4.1 takes field numbers past the protocol's 2^29 - 1 (as
 * unknown fields); the validator rightly refuses them. */
static void
check_malformed(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size,
                const char *why)
{
	ProtobufCMessage *m;

	if (size > 65536 || strncmp(why, "bad field number", 16) == 0)
		return;
	m = protobuf_c_message_unpack(desc, NULL, size, size ? data : (const uint8_t *)"");
	if (m != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
		fprintf(stderr, "fuzz: %s rejected as malformed (%s), but protobuf-c decodes it\n",
		        desc->name, why);
		fz_fail(__FILE__, __LINE__, "the validator refuses only what protobuf-c refuses");
	}
}

/* Decodes data as desc under caps; NULL when it is refused, after checking the refusal. */
static ProtobufCMessage *
decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size,
       const mj_proto_caps *caps)
{
	ProtobufCMessage *m = NULL;
	char why[256] = "";
	mj_err err, verr;

	err = mj_proto_unpack(desc, data, size, caps, &m, why, sizeof(why));
	if (err != MJ_OK) {
		FZ_CHECK(err == MJ_EINVAL || err == MJ_ELIMIT);
		FZ_CHECK(why[0] != '\0');
		/* Refused by the validator, or by protobuf-c after the validator passed it. */
		verr = mj_proto_validate(desc, data, size, caps, NULL, 0);
		FZ_CHECK(verr == MJ_OK || verr == err);
		if (err == MJ_EINVAL)
			check_malformed(desc, data, size, why);
		return NULL;
	}
	FZ_CHECK(m != NULL && m->descriptor == desc);
	FZ_CHECK(mj_proto_validate(desc, data, size, caps, NULL, 0) == MJ_OK);
	fz_check_repack(m, caps);
	return m;
}

/* Applies wire limits to l, then checks that l survives mj_proto_limits_from and back. */
static void
check_limits(const Moonjail__V1__Limits *pl, mj_limits *l)
{
	Moonjail__V1__Limits *out = NULL;
	ProtobufCMessage *m = NULL;
	mj_proto_caps caps;
	const char *why = NULL;
	mj_limits back;
	uint8_t *buf;
	size_t len;

	mj_proto_limits_apply(pl, l);
	if (mj_limits_check(l, &why) != MJ_OK)
		FZ_CHECK(why != NULL && why[0] != '\0');
	FZ_CHECK(mj_proto_limits_from(l, &out) == MJ_OK);
	FZ_CHECK(mj_proto_pack(&out->base, &buf, &len) == MJ_OK);
	mj_proto_free(&out->base);
	mj_proto_caps_default(&caps);
	FZ_CHECK(mj_proto_unpack(&moonjail__v1__limits__descriptor, buf, len, &caps, &m, NULL, 0) ==
	         MJ_OK);
	mj_free(buf);
	memset(&back, 0, sizeof(back));
	mj_proto_limits_apply((const Moonjail__V1__Limits *)m, &back);
	mj_proto_free(m);
	FZ_CHECK(back.memory == l->memory && back.instructions == l->instructions &&
	         back.timeout_ms == l->timeout_ms && back.output == l->output &&
	         back.source == l->source && back.result_bytes == l->result_bytes &&
	         back.result_depth == l->result_depth && back.result_items == l->result_items);
}

/* Touches every byte of a bytes field, and checks a source renders as a JSON string. */
static void
check_bytes(const ProtobufCBinaryData *b)
{
	mj_value v;

	FZ_CHECK(b->len == 0 || b->data != NULL);
	if (mj_value_string(&v, b->data, b->len) == MJ_OK) {
		fz_check_value(&v);
		mj_value_free(&v);
	}
}

static void
check_text(const char *s)
{
	FZ_CHECK(s != NULL);
	(void)strlen(s);
}

static void
check_request(const mj_request *r)
{
	mj_limits l;
	size_t i;

	check_text(r->tenant);
	check_text(r->engine);
	switch (r->op_case) {
	case MOONJAIL__V1__REQUEST__OP_EVAL:
		FZ_CHECK(r->eval != NULL);
		check_bytes(&r->eval->source);
		check_text(r->eval->chunk_name);
		break;
	case MOONJAIL__V1__REQUEST__OP_RUN:
		FZ_CHECK(r->run != NULL);
		check_bytes(&r->run->source);
		check_text(r->run->chunk_name);
		break;
	case MOONJAIL__V1__REQUEST__OP_CREATE:
		FZ_CHECK(r->create != NULL);
		mj_limits_default(&l);
		check_limits(r->create->limits, &l);
		for (i = 0; i < r->create->n_modules; i++)
			check_text(r->create->modules[i]);
		check_bytes(&r->create->prelude);
		break;
	case MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE:
		FZ_CHECK(r->set_namespace != NULL);
		check_text(r->set_namespace->name);
		fz_check_pvalue(r->set_namespace->value);
		break;
	case MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE:
		FZ_CHECK(r->unset_namespace != NULL);
		check_text(r->unset_namespace->name);
		break;
	default:
		break;
	}
}

static void
check_worker_request(const Moonjail__Internal__V1__WorkerRequest *w)
{
	const Moonjail__Internal__V1__TenantPolicy *tp = w->policy;
	ProtobufCMessage *m;
	mj_proto_caps caps;
	mj_limits d, max;

	mj_limits_default(&d);
	check_limits(tp != NULL ? tp->defaults : NULL, &d);
	max = d;
	check_limits(tp != NULL ? tp->max : NULL, &max);
	worker_caps(&caps);
	caps.max_bytes = 16u << 20;
	m = decode(&moonjail__v1__request__descriptor, w->request.data, w->request.len, &caps);
	if (m != NULL) {
		check_request((const mj_request *)m);
		mj_proto_free(m);
	}
}

static void
check_response(const mj_response *r)
{
	size_t i;

	if (r->error != NULL) {
		(void)mj_proto_kind_from(r->error->kind);
		check_text(r->error->message);
		check_text(r->error->traceback);
	}
	check_bytes(&r->output);
	for (i = 0; i < r->n_values; i++)
		fz_check_pvalue(r->values[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ProtobufCMessage *m;
	mj_proto_caps caps;

	supervisor_caps(&caps);
	if ((m = decode(&moonjail__v1__request__descriptor, data, size, &caps)) != NULL) {
		check_request((const mj_request *)m);
		mj_proto_free(m);
	}
	worker_caps(&caps);
	if ((m = decode(&moonjail__internal__v1__worker_request__descriptor, data, size, &caps)) !=
	    NULL) {
		check_worker_request((const Moonjail__Internal__V1__WorkerRequest *)m);
		mj_proto_free(m);
	}
	client_caps(&caps);
	if ((m = decode(&moonjail__v1__response__descriptor, data, size, &caps)) != NULL) {
		check_response((const mj_response *)m);
		mj_proto_free(m);
	}
	return 0;
}
