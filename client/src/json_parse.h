/* A small bounded JSON parser that builds mj_value trees, for the CLI's namespace values. */
#ifndef MJ_CLIENT_JSON_PARSE_H
#define MJ_CLIENT_JSON_PARSE_H

#include <stddef.h>

#include "mj/common.h"
#include "mj/value.h"

/* Parses len bytes of JSON text into *out (which must not own anything). Objects become maps
 * with string keys, arrays arrays, null nil; numbers without '.', 'e' or 'E' that fit become
 * integers, others floats. On success *out is the caller's (mj_value_free); on failure it is
 * nil and why holds a reason: MJ_EINVAL for bad JSON, MJ_ELIMIT for nesting deeper than 200,
 * MJ_ENOMEM. */
mj_err mj__cli_json_parse(const char *s, size_t len, mj_value *out, char *why, size_t whylen);

#endif
