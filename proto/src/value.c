/* Conversion between wire values and mj_value trees, and error-kind mapping. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mj/proto.h"

ProtobufCAllocator *mj__proto_allocator(void);

#define MAX_DEPTH 200

static mj_err
fail(char *why, size_t whylen, mj_err err, const char *msg)
{
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, "%s", msg);
	return err;
}

static mj_err to_value(const mj_pvalue *pv, mj_value *v, int depth, char *why, size_t whylen);

static mj_err
to_key(const mj_pvalue *pk, mj_value *k, char *why, size_t whylen)
{
	if (pk == NULL)
		return fail(why, whylen, MJ_EINVAL, "map entry without a key");
	switch (pk->kind_case) {
	case MOONJAIL__V1__VALUE__KIND_BOOLEAN:
	case MOONJAIL__V1__VALUE__KIND_INTEGER:
	case MOONJAIL__V1__VALUE__KIND_STRING:
		return to_value(pk, k, 0, why, whylen);
	case MOONJAIL__V1__VALUE__KIND_FLOAT:
		if (isnan(pk->float_))
			return fail(why, whylen, MJ_EINVAL, "map key is NaN");
		return to_value(pk, k, 0, why, whylen);
	default:
		return fail(why, whylen, MJ_EINVAL,
		            "map key must be a boolean, integer, float or string");
	}
}

static mj_err
to_value(const mj_pvalue *pv, mj_value *v, int depth, char *why, size_t whylen)
{
	mj_err err = MJ_OK;
	size_t i, n;

	memset(v, 0, sizeof(*v));
	if (depth > MAX_DEPTH)
		return fail(why, whylen, MJ_ELIMIT, "value nested too deeply");
	if (pv == NULL)
		return MJ_OK;
	switch (pv->kind_case) {
	case MOONJAIL__V1__VALUE__KIND_BOOLEAN:
		mj_value_bool(v, pv->boolean != 0);
		return MJ_OK;
	case MOONJAIL__V1__VALUE__KIND_INTEGER:
		mj_value_int(v, pv->integer);
		return MJ_OK;
	case MOONJAIL__V1__VALUE__KIND_FLOAT:
		mj_value_float(v, pv->float_);
		return MJ_OK;
	case MOONJAIL__V1__VALUE__KIND_STRING:
		return mj_value_string(v, pv->string.data, pv->string.len);
	case MOONJAIL__V1__VALUE__KIND_OPAQUE:
		return mj_value_opaque(v, pv->opaque != NULL ? pv->opaque : "");
	case MOONJAIL__V1__VALUE__KIND_ARRAY:
		n = pv->array != NULL ? pv->array->n_items : 0;
		if ((err = mj_value_array(v, n)) != MJ_OK)
			return err;
		for (i = 0; i < n && err == MJ_OK; i++)
			err =
			    to_value(pv->array->items[i], &v->u.a.items[i], depth + 1, why, whylen);
		break;
	case MOONJAIL__V1__VALUE__KIND_MAP:
		n = pv->map != NULL ? pv->map->n_entries : 0;
		if ((err = mj_value_map(v, n)) != MJ_OK)
			return err;
		for (i = 0; i < n && err == MJ_OK; i++) {
			const Moonjail__V1__Entry *e = pv->map->entries[i];
			err = to_key(e->key, &v->u.m.keys[i], why, whylen);
			if (err == MJ_OK)
				err = to_value(e->value, &v->u.m.vals[i], depth + 1, why, whylen);
		}
		break;
	default:
		return MJ_OK; /* nil, or unset */
	}
	if (err != MJ_OK)
		mj_value_free(v);
	return err;
}

mj_err
mj_proto_to_value(const mj_pvalue *pv, mj_value *v, char *why, size_t whylen)
{
	if (v == NULL)
		return MJ_EINVAL;
	return to_value(pv, v, 0, why, whylen);
}

static void *
palloc(size_t n)
{
	ProtobufCAllocator *a = mj__proto_allocator();
	void *p = a->alloc(a->allocator_data, n);

	if (p != NULL)
		memset(p, 0, n);
	return p;
}

static mj_pvalue *from_value(const mj_value *v, int depth);

static mj_pvalue *
from_value(const mj_value *v, int depth)
{
	mj_pvalue *pv;
	size_t i;

	if (depth > MAX_DEPTH || (pv = palloc(sizeof(*pv))) == NULL)
		return NULL;
	moonjail__v1__value__init(pv);
	switch (v->type) {
	case MJ_VNIL:
		pv->kind_case = MOONJAIL__V1__VALUE__KIND_NIL;
		pv->nil = 1;
		break;
	case MJ_VBOOL:
		pv->kind_case = MOONJAIL__V1__VALUE__KIND_BOOLEAN;
		pv->boolean = v->u.b;
		break;
	case MJ_VINT:
		pv->kind_case = MOONJAIL__V1__VALUE__KIND_INTEGER;
		pv->integer = v->u.i;
		break;
	case MJ_VFLOAT:
		pv->kind_case = MOONJAIL__V1__VALUE__KIND_FLOAT;
		pv->float_ = v->u.f;
		break;
	case MJ_VSTRING:
		pv->kind_case = MOONJAIL__V1__VALUE__KIND_STRING;
		if (v->u.s.len > 0) {
			if ((pv->string.data = palloc(v->u.s.len)) == NULL)
				goto fail;
			memcpy(pv->string.data, v->u.s.ptr, v->u.s.len);
			pv->string.len = v->u.s.len;
		}
		break;
	case MJ_VOPAQUE:
		pv->kind_case = MOONJAIL__V1__VALUE__KIND_OPAQUE;
		if ((pv->opaque = palloc(v->u.s.len + 1)) == NULL)
			goto fail;
		memcpy(pv->opaque, v->u.s.ptr, v->u.s.len);
		break;
	case MJ_VARRAY:
		pv->kind_case = MOONJAIL__V1__VALUE__KIND_ARRAY;
		if ((pv->array = palloc(sizeof(*pv->array))) == NULL)
			goto fail;
		moonjail__v1__array__init(pv->array);
		if (v->u.a.len == 0)
			break;
		if ((pv->array->items = palloc(v->u.a.len * sizeof(mj_pvalue *))) == NULL)
			goto fail;
		for (i = 0; i < v->u.a.len; i++) {
			if ((pv->array->items[i] = from_value(&v->u.a.items[i], depth + 1)) == NULL)
				goto fail;
			pv->array->n_items = i + 1;
		}
		break;
	case MJ_VMAP:
		pv->kind_case = MOONJAIL__V1__VALUE__KIND_MAP;
		if ((pv->map = palloc(sizeof(*pv->map))) == NULL)
			goto fail;
		moonjail__v1__map__init(pv->map);
		if (v->u.m.len == 0)
			break;
		if ((pv->map->entries = palloc(v->u.m.len * sizeof(Moonjail__V1__Entry *))) == NULL)
			goto fail;
		for (i = 0; i < v->u.m.len; i++) {
			Moonjail__V1__Entry *e = palloc(sizeof(*e));
			if (e == NULL)
				goto fail;
			moonjail__v1__entry__init(e);
			pv->map->entries[i] = e;
			pv->map->n_entries = i + 1;
			if ((e->key = from_value(&v->u.m.keys[i], depth + 1)) == NULL ||
			    (e->value = from_value(&v->u.m.vals[i], depth + 1)) == NULL)
				goto fail;
		}
		break;
	}
	return pv;

fail:
	mj_proto_pvalue_free(pv);
	return NULL;
}

mj_err
mj_proto_from_value(const mj_value *v, mj_pvalue **out)
{
	mj_pvalue *pv;

	if (v == NULL || out == NULL)
		return MJ_EINVAL;
	if ((pv = from_value(v, 0)) == NULL)
		return MJ_ENOMEM;
	*out = pv;
	return MJ_OK;
}

void
mj_proto_pvalue_free(mj_pvalue *pv)
{
	if (pv != NULL)
		protobuf_c_message_free_unpacked(&pv->base, mj__proto_allocator());
}

Moonjail__V1__ErrorKind
mj_proto_kind(mj_kind kind)
{
	switch (kind) {
	case MJ_KIND_NONE:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_NONE;
	case MJ_KIND_SYNTAX:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_SYNTAX;
	case MJ_KIND_RUNTIME:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_RUNTIME;
	case MJ_KIND_MEMORY:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_MEMORY;
	case MJ_KIND_INSTRUCTIONS:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_INSTRUCTIONS;
	case MJ_KIND_TIMEOUT:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_TIMEOUT;
	case MJ_KIND_OUTPUT:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_OUTPUT;
	case MJ_KIND_ENGINE_LOST:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_ENGINE_LOST;
	case MJ_KIND_QUOTA:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_QUOTA;
	case MJ_KIND_BAD_REQUEST:
		return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_BAD_REQUEST;
	case MJ_KIND_INTERNAL:
		break;
	}
	return MOONJAIL__V1__ERROR_KIND__ERROR_KIND_INTERNAL;
}

mj_kind
mj_proto_kind_from(Moonjail__V1__ErrorKind kind)
{
	int i;

	for (i = MJ_KIND_NONE; i <= MJ_KIND_INTERNAL; i++)
		if (mj_proto_kind((mj_kind)i) == kind)
			return (mj_kind)i;
	return MJ_KIND_INTERNAL;
}
