/* Construction, copying, comparison and freeing of mj_value trees. */
#include <string.h>

#include "mj/value.h"

void
mj_value_free(mj_value *v)
{
	size_t i;

	if (v == NULL)
		return;
	switch (v->type) {
	case MJ_VSTRING:
	case MJ_VOPAQUE:
		mj_free(v->u.s.ptr);
		break;
	case MJ_VARRAY:
		for (i = 0; i < v->u.a.len; i++)
			mj_value_free(&v->u.a.items[i]);
		mj_free(v->u.a.items);
		break;
	case MJ_VMAP:
		for (i = 0; i < v->u.m.len; i++) {
			mj_value_free(&v->u.m.keys[i]);
			mj_value_free(&v->u.m.vals[i]);
		}
		mj_free(v->u.m.keys);
		mj_free(v->u.m.vals);
		break;
	default:
		break;
	}
	memset(v, 0, sizeof(*v));
}

mj_err
mj_value_string(mj_value *v, const void *s, size_t len)
{
	char *p;

	if (v == NULL || (s == NULL && len > 0))
		return MJ_EINVAL;
	if ((p = mj_strndup(len ? s : "", len)) == NULL)
		return MJ_ENOMEM;
	v->type = MJ_VSTRING;
	v->u.s.ptr = p;
	v->u.s.len = len;
	return MJ_OK;
}

mj_err
mj_value_opaque(mj_value *v, const char *type_name)
{
	mj_err err;

	if (type_name == NULL)
		return MJ_EINVAL;
	if ((err = mj_value_string(v, type_name, strlen(type_name))) != MJ_OK)
		return err;
	v->type = MJ_VOPAQUE;
	return MJ_OK;
}

mj_err
mj_value_array(mj_value *v, size_t n)
{
	mj_value *items = NULL;

	if (v == NULL)
		return MJ_EINVAL;
	if (n > 0 && (items = mj_calloc(n, sizeof(*items))) == NULL)
		return MJ_ENOMEM;
	v->type = MJ_VARRAY;
	v->u.a.items = items;
	v->u.a.len = n;
	return MJ_OK;
}

mj_err
mj_value_map(mj_value *v, size_t n)
{
	mj_value *keys = NULL, *vals = NULL;

	if (v == NULL)
		return MJ_EINVAL;
	if (n > 0) {
		if ((keys = mj_calloc(n, sizeof(*keys))) == NULL)
			return MJ_ENOMEM;
		if ((vals = mj_calloc(n, sizeof(*vals))) == NULL) {
			mj_free(keys);
			return MJ_ENOMEM;
		}
	}
	v->type = MJ_VMAP;
	v->u.m.keys = keys;
	v->u.m.vals = vals;
	v->u.m.len = n;
	return MJ_OK;
}

mj_err
mj_value_copy(mj_value *dst, const mj_value *src)
{
	mj_err err = MJ_OK;
	size_t i;

	if (dst == NULL || src == NULL)
		return MJ_EINVAL;
	switch (src->type) {
	case MJ_VSTRING:
		return mj_value_string(dst, src->u.s.ptr, src->u.s.len);
	case MJ_VOPAQUE:
		if ((err = mj_value_string(dst, src->u.s.ptr, src->u.s.len)) == MJ_OK)
			dst->type = MJ_VOPAQUE;
		return err;
	case MJ_VARRAY:
		if ((err = mj_value_array(dst, src->u.a.len)) != MJ_OK)
			return err;
		for (i = 0; i < src->u.a.len && err == MJ_OK; i++)
			err = mj_value_copy(&dst->u.a.items[i], &src->u.a.items[i]);
		break;
	case MJ_VMAP:
		if ((err = mj_value_map(dst, src->u.m.len)) != MJ_OK)
			return err;
		for (i = 0; i < src->u.m.len && err == MJ_OK; i++) {
			err = mj_value_copy(&dst->u.m.keys[i], &src->u.m.keys[i]);
			if (err == MJ_OK)
				err = mj_value_copy(&dst->u.m.vals[i], &src->u.m.vals[i]);
		}
		break;
	default:
		*dst = *src;
		return MJ_OK;
	}
	if (err != MJ_OK)
		mj_value_free(dst);
	return err;
}

bool
mj_value_equal(const mj_value *a, const mj_value *b)
{
	size_t i;

	if (a->type != b->type)
		return false;
	switch (a->type) {
	case MJ_VNIL:
		return true;
	case MJ_VBOOL:
		return a->u.b == b->u.b;
	case MJ_VINT:
		return a->u.i == b->u.i;
	case MJ_VFLOAT:
		return a->u.f == b->u.f;
	case MJ_VSTRING:
	case MJ_VOPAQUE:
		return a->u.s.len == b->u.s.len && memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0;
	case MJ_VARRAY:
		if (a->u.a.len != b->u.a.len)
			return false;
		for (i = 0; i < a->u.a.len; i++)
			if (!mj_value_equal(&a->u.a.items[i], &b->u.a.items[i]))
				return false;
		return true;
	case MJ_VMAP:
		if (a->u.m.len != b->u.m.len)
			return false;
		for (i = 0; i < a->u.m.len; i++)
			if (!mj_value_equal(&a->u.m.keys[i], &b->u.m.keys[i]) ||
			    !mj_value_equal(&a->u.m.vals[i], &b->u.m.vals[i]))
				return false;
		return true;
	}
	return false;
}

const char *
mj_vtype_name(mj_vtype t)
{
	switch (t) {
	case MJ_VNIL:
		return "nil";
	case MJ_VBOOL:
		return "boolean";
	case MJ_VINT:
		return "integer";
	case MJ_VFLOAT:
		return "float";
	case MJ_VSTRING:
		return "string";
	case MJ_VARRAY:
		return "array";
	case MJ_VMAP:
		return "map";
	case MJ_VOPAQUE:
		return "opaque";
	}
	return "unknown";
}
