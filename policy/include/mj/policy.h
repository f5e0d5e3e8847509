/* Tenant policy: the ceilings a tenant's engines may ask for, and its share of a worker. */
#ifndef MJ_POLICY_H
#define MJ_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "mj/common.h"
#include "mj/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mj_tenant_policy {
	mj_limits max;        /* per-engine ceilings; 0 instructions or timeout: no ceiling */
	uint32_t max_engines; /* engines alive at once */
	size_t max_memory;    /* Lua heap of all the tenant's engines together */
} mj_tenant_policy;

/* A policy whose ceilings are the given limits, with 64 engines and 64 times the per-engine
 * memory in total. */
void mj_policy_default(mj_tenant_policy *p, const mj_limits *limits);

/* Writes into *out the requested limits lowered to the policy's ceilings, field by field
 * (an unlimited request gets the ceiling). Returns MJ_EINVAL, with a static reason in *why,
 * when the result is not a usable set of limits; *out is written only on success. */
mj_err mj_policy_clamp(const mj_tenant_policy *p, const mj_limits *req, mj_limits *out,
                       const char **why);

#ifdef __cplusplus
}
#endif

#endif
