/* Wire validation before unpacking, budgeted unpacking, and packing of protocol messages. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mj/proto.h"

/* Allocations carry their size in a header, so any allocator instance can free them. */
#define HDR 16

typedef struct budget {
	size_t used;
	size_t limit;
	bool exceeded;
} budget;

static void *
pc_alloc(void *ud, size_t n)
{
	budget *b = ud;
	unsigned char *p;

	if (b != NULL && (n > b->limit || b->used > b->limit - n)) {
		b->exceeded = true;
		return NULL;
	}
	if (n > (size_t)-1 - HDR || (p = mj_malloc(n + HDR)) == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	if (b != NULL)
		b->used += n;
	return p + HDR;
}

static void
pc_free(void *ud, void *ptr)
{
	budget *b = ud;
	unsigned char *p = ptr;
	size_t n;

	if (p == NULL)
		return;
	p -= HDR;
	memcpy(&n, p, sizeof(n));
	if (b != NULL)
		b->used -= n;
	mj_free(p);
}

static ProtobufCAllocator unbounded = {pc_alloc, pc_free, NULL};

void
mj_proto_caps_default(mj_proto_caps *caps)
{
	caps->max_bytes = 16u << 20;
	caps->max_depth = 200;
	caps->max_messages = 4u << 20;
	caps->memory_budget = 256u << 20;
}

typedef struct vstate {
	const mj_proto_caps *caps;
	size_t messages;
	char *why;
	size_t whylen;
} vstate;

static mj_err
vfail(vstate *st, mj_err err, const char *what, size_t offset)
{
	if (st->why != NULL && st->whylen > 0)
		snprintf(st->why, st->whylen, "%s at byte %zu", what, offset);
	return err;
}

static bool
read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift;

	for (shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

static mj_err
validate(vstate *st, const ProtobufCMessageDescriptor *desc, const uint8_t *start, const uint8_t *p,
         const uint8_t *end, uint32_t depth)
{
	const ProtobufCFieldDescriptor *f;
	uint64_t key, len;
	mj_err err;

	if (depth > st->caps->max_depth)
		return vfail(st, MJ_ELIMIT, "message nested too deeply", (size_t)(p - start));
	if (++st->messages > st->caps->max_messages)
		return vfail(st, MJ_ELIMIT, "too many values", (size_t)(p - start));
	while (p < end) {
		size_t at = (size_t)(p - start);
		if (!read_varint(&p, end, &key))
			return vfail(st, MJ_EINVAL, "truncated field key", at);
		if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff)
			return vfail(st, MJ_EINVAL, "bad field number", at);
		f = desc != NULL
		        ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
		        : NULL;
		switch (key & 7) {
		case 0:
			if (!read_varint(&p, end, &len))
				return vfail(st, MJ_EINVAL, "truncated varint", at);
			break;
		case 1:
			if (end - p < 8)
				return vfail(st, MJ_EINVAL, "truncated fixed64", at);
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return vfail(st, MJ_EINVAL, "truncated fixed32", at);
			p += 4;
			break;
		case 2:
			if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p))
				return vfail(st, MJ_EINVAL, "truncated length-delimited field", at);
			if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
				err = validate(st, f->descriptor, start, p, p + len, depth + 1);
				if (err != MJ_OK)
					return err;
			}
			p += len;
			break;
		default:
			return vfail(st, MJ_EINVAL, "unsupported wire type", at);
		}
	}
	return MJ_OK;
}

mj_err
mj_proto_validate(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                  const mj_proto_caps *caps, char *why, size_t whylen)
{
	mj_proto_caps def;
	vstate st;

	if (desc == NULL || (buf == NULL && len > 0))
		return MJ_EINVAL;
	if (buf == NULL)
		buf = (const uint8_t *)""; /* an empty message (NULL + 0 is undefined) */
	if (caps == NULL) {
		mj_proto_caps_default(&def);
		caps = &def;
	}
	st.caps = caps;
	st.messages = 0;
	st.why = why;
	st.whylen = whylen;
	if (len > caps->max_bytes)
		return vfail(&st, MJ_ELIMIT, "message too large", caps->max_bytes);
	return validate(&st, desc, buf, buf, buf + len, 0);
}

mj_err
mj_proto_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                const mj_proto_caps *caps, ProtobufCMessage **out, char *why, size_t whylen)
{
	ProtobufCAllocator a;
	ProtobufCMessage *m;
	mj_proto_caps def;
	budget b;
	mj_err err;

	if (out == NULL)
		return MJ_EINVAL;
	if (caps == NULL) {
		mj_proto_caps_default(&def);
		caps = &def;
	}
	if ((err = mj_proto_validate(desc, buf, len, caps, why, whylen)) != MJ_OK)
		return err;
	b.used = 0;
	b.limit = caps->memory_budget;
	b.exceeded = false;
	a.alloc = pc_alloc;
	a.free = pc_free;
	a.allocator_data = &b;
	/* An empty buffer is a valid message with every field at its default. */
	m = protobuf_c_message_unpack(desc, &a, len, len ? buf : (const uint8_t *)"");
	if (m == NULL) {
		if (why != NULL && whylen > 0)
			snprintf(
			    why, whylen, "%s",
			    b.exceeded
			        ? "message too large once decoded"
			        : "malformed message (a field has the wrong type or bad data)");
		return b.exceeded ? MJ_ELIMIT : MJ_EINVAL;
	}
	*out = m;
	return MJ_OK;
}

void
mj_proto_free(ProtobufCMessage *msg)
{
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, &unbounded);
}

mj_err
mj_proto_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
	size_t n;
	uint8_t *p;

	if (msg == NULL || out == NULL || len == NULL)
		return MJ_EINVAL;
	n = protobuf_c_message_get_packed_size(msg);
	if ((p = mj_malloc(n ? n : 1)) == NULL)
		return MJ_ENOMEM;
	if (protobuf_c_message_pack(msg, p) != n) {
		mj_free(p);
		return MJ_EINTERNAL;
	}
	*out = p;
	*len = n;
	return MJ_OK;
}

/* For value.c: the allocator that frees what mj_proto_from_value built. */
ProtobufCAllocator *mj__proto_allocator(void);

ProtobufCAllocator *
mj__proto_allocator(void)
{
	return &unbounded;
}
