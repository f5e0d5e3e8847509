/* Names of error codes and error kinds. */
#include <string.h>

#include "mj/common.h"

const char *
mj_err_str(mj_err err)
{
	switch (err) {
	case MJ_OK:
		return "ok";
	case MJ_EINVAL:
		return "invalid argument";
	case MJ_ENOMEM:
		return "out of memory";
	case MJ_ELIMIT:
		return "limit exceeded";
	case MJ_ENOENT:
		return "not found";
	case MJ_ESTATE:
		return "invalid state";
	case MJ_EINTERNAL:
		return "internal error";
	case MJ_ESYSTEM:
		return "system call failed";
	}
	return "unknown error";
}

static const char *const kind_names[] = {
    [MJ_KIND_NONE] = "ok",
    [MJ_KIND_SYNTAX] = "syntax",
    [MJ_KIND_RUNTIME] = "runtime",
    [MJ_KIND_MEMORY] = "memory",
    [MJ_KIND_INSTRUCTIONS] = "instructions",
    [MJ_KIND_TIMEOUT] = "timeout",
    [MJ_KIND_OUTPUT] = "output",
    [MJ_KIND_ENGINE_LOST] = "engine-lost",
    [MJ_KIND_QUOTA] = "quota",
    [MJ_KIND_BAD_REQUEST] = "bad-request",
    [MJ_KIND_INTERNAL] = "internal",
};

const char *
mj_kind_name(mj_kind kind)
{
	if ((size_t)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
		return "internal";
	return kind_names[kind];
}

mj_err
mj_kind_parse(const char *name, mj_kind *out)
{
	size_t i;

	if (name == NULL || out == NULL)
		return MJ_EINVAL;
	for (i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
		if (strcmp(kind_names[i], name) == 0) {
			*out = (mj_kind)i;
			return MJ_OK;
		}
	}
	return MJ_EINVAL;
}
