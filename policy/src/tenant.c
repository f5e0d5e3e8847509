/* Tenant ceilings applied to the limits an engine asks for. */
#include "mj/policy.h"

void
mj_policy_default(mj_tenant_policy *p, const mj_limits *limits)
{
	p->max = *limits;
	p->max_engines = 64;
	p->max_memory = limits->memory * 64;
}

/* For limits where 0 means unlimited: the smaller of two, treating 0 as infinity. */
static uint64_t
min_unlimited(uint64_t req, uint64_t max)
{
	if (max == 0)
		return req;
	if (req == 0)
		return max;
	return req < max ? req : max;
}

static size_t
min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

mj_err
mj_policy_clamp(const mj_tenant_policy *p, const mj_limits *req, mj_limits *out, const char **why)
{
	mj_limits l;
	mj_err err;

	if (p == NULL || req == NULL || out == NULL) {
		if (why != NULL)
			*why = "missing policy or limits";
		return MJ_EINVAL;
	}
	l.memory = min_size(req->memory, p->max.memory);
	l.instructions = min_unlimited(req->instructions, p->max.instructions);
	l.timeout_ms = (uint32_t)min_unlimited(req->timeout_ms, p->max.timeout_ms);
	l.output = min_size(req->output, p->max.output);
	l.source = min_size(req->source, p->max.source);
	l.result_bytes = min_size(req->result_bytes, p->max.result_bytes);
	l.result_depth =
	    req->result_depth < p->max.result_depth ? req->result_depth : p->max.result_depth;
	l.result_items = min_size(req->result_items, p->max.result_items);
	if ((err = mj_limits_check(&l, why)) != MJ_OK)
		return err;
	*out = l;
	return MJ_OK;
}
