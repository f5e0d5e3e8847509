/* Embedded default limits and their validation. */
#include "mj/limits.h"

/* Far above any real use, and far enough below SIZE_MAX that sums of sizes cannot wrap. */
#define MAX_BYTES ((size_t)1 << 40)

void
mj_limits_default(mj_limits *l)
{
	l->memory = 16u << 20;
	l->instructions = 100000000u;
	l->timeout_ms = 1000;
	l->output = 1u << 20;
	l->source = 1u << 20;
	l->result_bytes = 1u << 20;
	l->result_depth = 32;
	l->result_items = 100000;
}

mj_err
mj_limits_check(const mj_limits *l, const char **why)
{
	const char *w = NULL;

	if (l == NULL)
		w = "no limits";
	else if (l->memory < (64u << 10))
		w = "memory limit must be at least 64 KiB";
	else if (l->memory > ((size_t)1 << 40))
		w = "memory limit must be at most 1 TiB";
	else if (l->output == 0 || l->output > MAX_BYTES)
		w = "output limit must be between 1 byte and 1 TiB";
	else if (l->source == 0 || l->source > MAX_BYTES)
		w = "source limit must be between 1 byte and 1 TiB";
	else if (l->result_bytes == 0 || l->result_bytes > MAX_BYTES || l->result_items == 0 ||
	         l->result_items > MAX_BYTES)
		w = "result limits must be between 1 and 1 TiB";
	else if (l->result_depth == 0 || l->result_depth > 200)
		w = "result depth must be between 1 and 200";
	if (w != NULL) {
		if (why != NULL)
			*why = w;
		return MJ_EINVAL;
	}
	return MJ_OK;
}
