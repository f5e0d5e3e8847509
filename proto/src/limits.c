/* Conversion between wire Limits (every field optional) and mj_limits. */
#include <string.h>

#include "mj/proto.h"

ProtobufCAllocator *mj__proto_allocator(void);

void
mj_proto_limits_apply(const Moonjail__V1__Limits *pl, mj_limits *l)
{
	if (pl == NULL)
		return;
	if (pl->memory != NULL)
		l->memory = (size_t)pl->memory->value;
	if (pl->instructions != NULL)
		l->instructions = pl->instructions->value;
	if (pl->timeout_ms != NULL)
		l->timeout_ms = pl->timeout_ms->value > UINT32_MAX
		                    ? UINT32_MAX
		                    : (uint32_t)pl->timeout_ms->value;
	if (pl->output != NULL)
		l->output = (size_t)pl->output->value;
	if (pl->source != NULL)
		l->source = (size_t)pl->source->value;
	if (pl->result_bytes != NULL)
		l->result_bytes = (size_t)pl->result_bytes->value;
	if (pl->result_depth != NULL)
		l->result_depth = pl->result_depth->value > UINT32_MAX
		                      ? UINT32_MAX
		                      : (uint32_t)pl->result_depth->value;
	if (pl->result_items != NULL)
		l->result_items = (size_t)pl->result_items->value;
}

static Moonjail__V1__Limit *
limit(uint64_t v)
{
	ProtobufCAllocator *a = mj__proto_allocator();
	Moonjail__V1__Limit *p = a->alloc(a->allocator_data, sizeof(*p));

	if (p != NULL) {
		moonjail__v1__limit__init(p);
		p->value = v;
	}
	return p;
}

mj_err
mj_proto_limits_from(const mj_limits *l, Moonjail__V1__Limits **out)
{
	ProtobufCAllocator *a = mj__proto_allocator();
	Moonjail__V1__Limits *pl;

	if (l == NULL || out == NULL)
		return MJ_EINVAL;
	if ((pl = a->alloc(a->allocator_data, sizeof(*pl))) == NULL)
		return MJ_ENOMEM;
	moonjail__v1__limits__init(pl);
	if ((pl->memory = limit(l->memory)) == NULL ||
	    (pl->instructions = limit(l->instructions)) == NULL ||
	    (pl->timeout_ms = limit(l->timeout_ms)) == NULL ||
	    (pl->output = limit(l->output)) == NULL || (pl->source = limit(l->source)) == NULL ||
	    (pl->result_bytes = limit(l->result_bytes)) == NULL ||
	    (pl->result_depth = limit(l->result_depth)) == NULL ||
	    (pl->result_items = limit(l->result_items)) == NULL) {
		protobuf_c_message_free_unpacked(&pl->base, a);
		return MJ_ENOMEM;
	}
	*out = pl;
	return MJ_OK;
}
