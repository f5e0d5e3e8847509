/* A neutral value tree that carries script values across library, process and language boundaries.
 */
#ifndef MJ_VALUE_H
#define MJ_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mj/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mj_vtype {
	MJ_VNIL = 0,
	MJ_VBOOL,
	MJ_VINT,
	MJ_VFLOAT,
	MJ_VSTRING, /* bytes, may contain NUL; always followed by a NUL not counted in len */
	MJ_VARRAY,  /* a sequence: Lua table with keys 1..n */
	MJ_VMAP,    /* key/value pairs; keys are bool, int, float or string values */
	MJ_VOPAQUE, /* a function, userdata or thread: only its type name travels */
} mj_vtype;

typedef struct mj_value mj_value;

struct mj_value {
	mj_vtype type;
	union {
		bool b;
		int64_t i;
		double f;
		struct {
			char *ptr;
			size_t len;
		} s; /* MJ_VSTRING bytes, or MJ_VOPAQUE type name */
		struct {
			mj_value *items;
			size_t len;
		} a;
		struct {
			mj_value *keys;
			mj_value *vals;
			size_t len;
		} m;
	} u;
};

/* Frees everything v owns and leaves it nil. Safe on a nil or zeroed value. */
void mj_value_free(mj_value *v);

static inline void
mj_value_nil(mj_value *v)
{
	v->type = MJ_VNIL;
}
static inline void
mj_value_bool(mj_value *v, bool b)
{
	v->type = MJ_VBOOL;
	v->u.b = b;
}
static inline void
mj_value_int(mj_value *v, int64_t i)
{
	v->type = MJ_VINT;
	v->u.i = i;
}
static inline void
mj_value_float(mj_value *v, double f)
{
	v->type = MJ_VFLOAT;
	v->u.f = f;
}

/* Sets v to a copy of len bytes at s. v must not own anything. MJ_ENOMEM leaves v untouched. */
mj_err mj_value_string(mj_value *v, const void *s, size_t len);
/* Sets v to an opaque marker carrying the type name (for example "function"). */
mj_err mj_value_opaque(mj_value *v, const char *type_name);
/* Sets v to an array of n nil items for the caller to fill. */
mj_err mj_value_array(mj_value *v, size_t n);
/* Sets v to a map of n nil keys and nil values for the caller to fill. */
mj_err mj_value_map(mj_value *v, size_t n);
/* Deep copy of src into dst, which must not own anything. On failure dst is nil. */
mj_err mj_value_copy(mj_value *dst, const mj_value *src);
/* Structural equality; floats compare by value, int and float never equal. */
bool mj_value_equal(const mj_value *a, const mj_value *b);
/* The type's name: "nil", "boolean", "integer", "float", "string", "array", "map", "opaque". */
const char *mj_vtype_name(mj_vtype t);

#ifdef __cplusplus
}
#endif

#endif
