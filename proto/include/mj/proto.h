/* Bounded decoding and encoding of the moonjail wire protocol (moonjail.proto). */
#ifndef MJ_PROTO_H
#define MJ_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "internal.pb-c.h"
#include "moonjail.pb-c.h"
#include "mj/common.h"
#include "mj/limits.h"
#include "mj/value.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MJ_PROTO_VERSION 1

typedef Moonjail__V1__Request mj_request;
typedef Moonjail__V1__Response mj_response;
typedef Moonjail__V1__Value mj_pvalue;

/* Caps applied before and while unpacking a message. protobuf-c 1.4.1 has no recursion
 * limit and unpacks into many times the wire size, so both are bounded here. */
typedef struct mj_proto_caps {
	size_t max_bytes;     /* wire size */
	uint32_t max_depth;   /* nesting of messages (a Lua table level costs three) */
	size_t max_messages;  /* messages in total, nested ones included */
	size_t memory_budget; /* bytes the unpacked form may use */
} mj_proto_caps;

/* 16 MiB on the wire, depth 200, 4M messages, 256 MiB unpacked. */
void mj_proto_caps_default(mj_proto_caps *caps);

/* Checks the wire structure of buf against desc (tags, lengths, nesting, counts) without
 * building anything. MJ_EINVAL for malformed or truncated input, MJ_ELIMIT for a cap; a
 * reason is written into why. */
mj_err mj_proto_validate(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                         const mj_proto_caps *caps, char *why, size_t whylen);

/* Validates and unpacks a message of type desc. On success *out is the caller's, to be
 * released with mj_proto_free. Errors as mj_proto_validate, plus MJ_ELIMIT when unpacking
 * would pass the memory budget. */
mj_err mj_proto_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                       const mj_proto_caps *caps, ProtobufCMessage **out, char *why, size_t whylen);

/* Releases a message from mj_proto_unpack. NULL is ignored. */
void mj_proto_free(ProtobufCMessage *msg);

/* Serializes msg into a new buffer (mj_malloc'd; the caller frees it with mj_free). */
mj_err mj_proto_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len);

/* Converts a wire value into v (which must not own anything). Keys must be boolean, integer,
 * float (not NaN) or string. MJ_EINVAL with a reason for anything else. */
mj_err mj_proto_to_value(const mj_pvalue *pv, mj_value *v, char *why, size_t whylen);

/* Builds a wire value from v, allocated with mj_malloc; release it with mj_proto_pvalue_free. */
mj_err mj_proto_from_value(const mj_value *v, mj_pvalue **out);
void mj_proto_pvalue_free(mj_pvalue *pv);

/* Overrides the fields of *l that pl sets (pl may be NULL). Values are not checked here:
 * validate the result with mj_limits_check or a tenant policy. */
void mj_proto_limits_apply(const Moonjail__V1__Limits *pl, mj_limits *l);

/* Builds wire Limits with every field set from l; release with mj_proto_free(&(*out)->base). */
mj_err mj_proto_limits_from(const mj_limits *l, Moonjail__V1__Limits **out);

/* Maps between engine error kinds and the wire enum. */
Moonjail__V1__ErrorKind mj_proto_kind(mj_kind kind);
mj_kind mj_proto_kind_from(Moonjail__V1__ErrorKind kind);

#ifdef __cplusplus
}
#endif

#endif
