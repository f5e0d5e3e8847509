/* A stand-in network peer for the client tests: a REP thread that decodes real Requests and
 * answers real (or deliberately broken) Responses on an ipc path in a private directory. */
#ifndef MJ_TEST_FAKE_SERVER_H
#define MJ_TEST_FAKE_SERVER_H

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>

#include "mj/proto.h"

#define FS_UNUSED __attribute__((unused))

/* How the server answers. */
typedef enum fs_mode {
	FS_NORMAL,     /* fs_answer below */
	FS_GARBAGE,    /* bytes that are not a Response */
	FS_TRUNCATED,  /* a valid Response cut short */
	FS_WRONG_ID,   /* a valid Response with another id */
	FS_SILENT,     /* no answer at all */
	FS_OVERSIZED,  /* a Response with a large output field */
	FS_BAD_VALUE,  /* a Response whose value has a NaN map key */
	FS_BAD_STATUS, /* a Response with an unknown status */
	FS_EMPTY,      /* an empty message (every field default: id 0) */
	FS_ID_ZERO,    /* bad-request with id 0, as for a request the server cannot read */
} fs_mode;

typedef struct fake_server {
	nng_socket sock;
	pthread_t thread;
	atomic_bool stop;
	atomic_int mode;
	size_t oversize; /* FS_OVERSIZED output bytes */
	char dir[64];
	char url[128];
	pthread_mutex_t mu;
	uint8_t *last; /* the last request's bytes */
	size_t last_len;
	unsigned n_requests;
	unsigned delay_ms; /* before every answer */
	bool stopped;
} fake_server;

/* The canned service. eval and run answer by source:
 *   "print('hi') return 1, 'x', {a=true}"  output "hi\n", values 1, "x", {"a":true}
 *   "error('boom')"                        runtime error at line 3 with a traceback
 *   "while true do end"                    instructions error, engine reset
 *   "return 1 +"                           syntax error, line 1
 *   "return nil, 2.5, {1,2}"               values nil, 2.5, [1,2]
 *   anything else                          eval returns the source as one string value
 * stats answers figures with engines = 2; the other operations answer OK with stats. */
static FS_UNUSED void
fs_answer(const mj_request *req, mj_response *resp, void **scratch)
{
	static Moonjail__V1__Stats st;
	static Moonjail__V1__Error err;
	const ProtobufCBinaryData *src = NULL;
	mj_value vals[3];
	mj_pvalue **pvs;
	size_t i, n = 0;

	moonjail__v1__stats__init(&st);
	moonjail__v1__error__init(&err);
	st.instructions = 42;
	st.instruction_limit = 100000000;
	st.memory_current = 1000;
	st.memory_peak = 2000;
	st.memory_limit = 16777216;
	st.wall_us = 7;
	st.timeout_ms = 1000;
	st.output_limit = 1048576;
	resp->stats = &st;
	resp->status = MOONJAIL__V1__STATUS__STATUS_OK;
	*scratch = NULL;
	if (req->op_case == MOONJAIL__V1__REQUEST__OP_EVAL)
		src = &req->eval->source;
	else if (req->op_case == MOONJAIL__V1__REQUEST__OP_RUN)
		src = &req->run->source;
	if (req->op_case == MOONJAIL__V1__REQUEST__OP_STATS)
		st.engines = 2;
	if (req->op_case == MOONJAIL__V1__REQUEST__OP_CREATE)
		resp->engine_created = true;
	if (src == NULL)
		return;
#define SRC_IS(s) (src->len == strlen(s) && memcmp(src->data, s, src->len) == 0)
	memset(vals, 0, sizeof(vals));
	if (SRC_IS("print('hi') return 1, 'x', {a=true}")) {
		resp->output.data = (uint8_t *)"hi\n";
		resp->output.len = 3;
		mj_value_int(&vals[0], 1);
		mj_value_string(&vals[1], "x", 1);
		mj_value_map(&vals[2], 1);
		mj_value_string(&vals[2].u.m.keys[0], "a", 1);
		mj_value_bool(&vals[2].u.m.vals[0], true);
		n = 3;
	} else if (SRC_IS("return nil, 2.5, {1,2}")) {
		mj_value_float(&vals[1], 2.5);
		mj_value_array(&vals[2], 2);
		mj_value_int(&vals[2].u.a.items[0], 1);
		mj_value_int(&vals[2].u.a.items[1], 2);
		n = 3;
	} else if (SRC_IS("error('boom')")) {
		resp->status = MOONJAIL__V1__STATUS__STATUS_ERROR;
		err.kind = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_RUNTIME;
		err.message = "script:3: boom";
		err.line = 3;
		err.traceback = "stack traceback:\n\t[C]: in function 'error'";
		resp->error = &err;
		resp->output.data = (uint8_t *)"before\n";
		resp->output.len = 7;
	} else if (SRC_IS("while true do end")) {
		resp->status = MOONJAIL__V1__STATUS__STATUS_ERROR;
		err.kind = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_INSTRUCTIONS;
		err.message = "instruction limit exceeded (limit 100000000)";
		resp->error = &err;
		resp->engine_reset = true;
	} else if (SRC_IS("return 1 +")) {
		resp->status = MOONJAIL__V1__STATUS__STATUS_ERROR;
		err.kind = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_SYNTAX;
		err.message = "script:1: unexpected symbol near <eof>";
		err.line = 1;
		resp->error = &err;
	} else if (req->op_case == MOONJAIL__V1__REQUEST__OP_EVAL) {
		mj_value_string(&vals[0], src->data, src->len);
		n = 1;
	}
#undef SRC_IS
	if (req->op_case != MOONJAIL__V1__REQUEST__OP_EVAL)
		n = 0;
	pvs = calloc(n + 1, sizeof(*pvs));
	for (i = 0; i < n; i++)
		mj_proto_from_value(&vals[i], &pvs[i]);
	for (i = 0; i < 3; i++)
		mj_value_free(&vals[i]);
	resp->values = pvs;
	resp->n_values = n;
	*scratch = pvs;
}

static FS_UNUSED void
fs_answer_free(mj_response *resp, void *scratch)
{
	size_t i;

	for (i = 0; i < resp->n_values; i++)
		mj_proto_pvalue_free(resp->values[i]);
	free(scratch);
}

static FS_UNUSED nng_msg *
fs_build(fake_server *s, const uint8_t *body, size_t len)
{
	mj_response resp = MOONJAIL__V1__RESPONSE__INIT;
	ProtobufCMessage *m = NULL;
	mj_request *req;
	void *scratch = NULL;
	nng_msg *out = NULL;
	uint8_t *buf;
	size_t n;
	int mode = atomic_load(&s->mode);

	if (mode == FS_GARBAGE) {
		nng_msg_alloc(&out, 0);
		nng_msg_append(out, "\xff\xff\xff\xff\xff garbage", 13);
		return out;
	}
	if (mode == FS_EMPTY) {
		nng_msg_alloc(&out, 0);
		return out;
	}
	if (mj_proto_unpack(&moonjail__v1__request__descriptor, body, len, NULL, &m, NULL, 0) !=
	    MJ_OK)
		return NULL;
	req = (mj_request *)m;
	resp.id = mode == FS_WRONG_ID ? req->id + 1000 : req->id;
	fs_answer(req, &resp, &scratch);
	if (mode == FS_ID_ZERO) {
		static Moonjail__V1__Error e;
		moonjail__v1__error__init(&e);
		e.kind = MOONJAIL__V1__ERROR_KIND__ERROR_KIND_BAD_REQUEST;
		e.message = "malformed request: truncated field key at byte 3";
		resp.id = 0;
		resp.status = MOONJAIL__V1__STATUS__STATUS_ERROR;
		resp.error = &e;
	}
	if (mode == FS_OVERSIZED) {
		resp.output.data = calloc(1, s->oversize);
		resp.output.len = s->oversize;
	}
	if (mode == FS_BAD_STATUS)
		resp.status = (Moonjail__V1__Status)7;
	if (mode == FS_BAD_VALUE) {
		/* A map keyed by NaN, which no Lua table can hold. */
		static mj_pvalue key, val, outer;
		static Moonjail__V1__Entry entry, *entries[1];
		static Moonjail__V1__Map map;
		static mj_pvalue *vals[1];
		moonjail__v1__value__init(&key);
		key.kind_case = MOONJAIL__V1__VALUE__KIND_FLOAT;
		key.float_ = NAN;
		moonjail__v1__value__init(&val);
		val.kind_case = MOONJAIL__V1__VALUE__KIND_BOOLEAN;
		moonjail__v1__entry__init(&entry);
		entry.key = &key;
		entry.value = &val;
		entries[0] = &entry;
		moonjail__v1__map__init(&map);
		map.n_entries = 1;
		map.entries = entries;
		moonjail__v1__value__init(&outer);
		outer.kind_case = MOONJAIL__V1__VALUE__KIND_MAP;
		outer.map = &map;
		vals[0] = &outer;
		fs_answer_free(&resp, scratch);
		scratch = NULL;
		resp.values = vals;
		resp.n_values = 1;
	}
	if (mj_proto_pack(&resp.base, &buf, &n) == MJ_OK) {
		if (mode == FS_TRUNCATED && n > 2)
			n -= 2;
		nng_msg_alloc(&out, 0);
		nng_msg_append(out, buf, n);
		mj_free(buf);
	}
	if (mode == FS_OVERSIZED)
		free(resp.output.data);
	if (mode != FS_BAD_VALUE)
		fs_answer_free(&resp, scratch);
	mj_proto_free(m);
	return out;
}

static FS_UNUSED void *
fs_main(void *arg)
{
	fake_server *s = arg;
	nng_msg *msg, *reply;
	int rv;

	/* Bounded by the receive timeout: the loop rechecks stop at least every 50 ms. */
	while (!atomic_load(&s->stop)) {
		if ((rv = nng_recvmsg(s->sock, &msg, 0)) != 0) {
			if (rv == NNG_ECLOSED)
				break;
			continue;
		}
		pthread_mutex_lock(&s->mu);
		free(s->last);
		s->last_len = nng_msg_len(msg);
		s->last = malloc(s->last_len + 1);
		memcpy(s->last, nng_msg_body(msg), s->last_len);
		s->n_requests++;
		pthread_mutex_unlock(&s->mu);
		if (s->delay_ms > 0)
			nng_msleep(s->delay_ms);
		if (atomic_load(&s->mode) == FS_SILENT) {
			nng_msg_free(msg);
			continue;
		}
		reply = fs_build(s, nng_msg_body(msg), nng_msg_len(msg));
		nng_msg_free(msg);
		if (reply != NULL && nng_sendmsg(s->sock, reply, 0) != 0)
			nng_msg_free(reply);
	}
	return NULL;
}

/* Starts the server on ipc://<new temp dir>/s.sock; returns 0 on success. */
static FS_UNUSED int
fs_start(fake_server *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/mj-client-test.XXXXXX");
	if (mkdtemp(s->dir) == NULL)
		return -1;
	snprintf(s->url, sizeof(s->url), "ipc://%s/s.sock", s->dir);
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->stop, false);
	atomic_init(&s->mode, FS_NORMAL);
	if (nng_rep0_open(&s->sock) != 0 ||
	    nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, 50) != 0 ||
	    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, 64u << 20) != 0 ||
	    nng_listen(s->sock, s->url, NULL, 0) != 0)
		return -1;
	return pthread_create(&s->thread, NULL, fs_main, s) == 0 ? 0 : -1;
}

static FS_UNUSED void
fs_stop(fake_server *s)
{
	char path[160];

	if (s->stopped)
		return;
	s->stopped = true;
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	nng_close(s->sock);
	free(s->last);
	s->last = NULL;
	pthread_mutex_destroy(&s->mu);
	snprintf(path, sizeof(path), "%s/s.sock", s->dir);
	unlink(path);
	rmdir(s->dir);
}

/* The last request the server received, decoded; release with mj_proto_free. */
static FS_UNUSED mj_request *
fs_last(fake_server *s)
{
	ProtobufCMessage *m = NULL;

	pthread_mutex_lock(&s->mu);
	if (s->last != NULL)
		mj_proto_unpack(&moonjail__v1__request__descriptor, s->last, s->last_len, NULL, &m,
		                NULL, 0);
	pthread_mutex_unlock(&s->mu);
	return (mj_request *)m;
}

#endif
