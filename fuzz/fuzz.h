/* Shared declarations of the fuzz targets: the libFuzzer entry point and the invariant checks. */
#ifndef MJ_FUZZ_H
#define MJ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "mj/proto.h"
#include "mj/value.h"

/* Runs one input. Every target defines it; libFuzzer or fuzz/replay.c calls it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports a broken invariant on stderr and aborts, so the fuzzer records the input. */
#define FZ_CHECK(cond)                                                                             \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fz_fail(__FILE__, __LINE__, #cond);                                        \
	} while (0)

/* Prints where and what failed, then aborts. */
_Noreturn void fz_fail(const char *file, int line, const char *what);

/* True when a and b are the same tree: same types, floats bit for bit (NaN equals NaN, and
 * -0.0 differs from 0.0), same bytes. */
int fz_value_same(const mj_value *a, const mj_value *b);

/* Checks json[0..len) against the documented rendering of v (mj_buf_json_value): valid
 * UTF-8 JSON whose every node matches v. Returns NULL when it does, or a static reason. */
const char *fz_json_mismatch(const char *json, size_t len, const mj_value *v);

/* Checks what must hold for any value a peer can send: JSON rendering, deep copy, and the
 * wire round trip (mj_value to Value, packed, unpacked, back to an equal mj_value). */
void fz_check_value(const mj_value *v);

/* Converts a decoded wire value with mj_proto_to_value: either a clean error (with a reason
 * for MJ_EINVAL) or a value that passes fz_check_value. */
void fz_check_pvalue(const mj_pvalue *pv);

/* Packs msg, unpacks the bytes under caps, and packs again: the decode must succeed and the
 * two packings must be identical. */
void fz_check_repack(const ProtobufCMessage *msg, const mj_proto_caps *caps);

#endif
