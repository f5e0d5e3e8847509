/* Small helpers shared by the engine unit tests. */
#ifndef MJ_TEST_UTIL_H
#define MJ_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mj/engine.h"

static inline mj_engine *
tu_engine(const mj_limits *limits, int json)
{
	static const char *const mods[] = {"json"};
	mj_engine_config cfg;
	mj_engine *e = NULL;

	mj_engine_config_default(&cfg);
	if (limits != NULL)
		cfg.limits = *limits;
	if (json) {
		cfg.modules = mods;
		cfg.nmodules = 1;
	}
	assert_int_equal(mj_engine_new(&e, &cfg), MJ_OK);
	return e;
}

/* Evaluates src and checks the call itself succeeded; the caller frees *r. */
static inline void
tu_eval(mj_engine *e, const char *src, mj_result *r)
{
	assert_int_equal(mj_engine_eval(e, src, strlen(src), "t", r), MJ_OK);
}

/* Evaluates src, which must succeed with a single integer result equal to want. */
static inline void
tu_expect_int(mj_engine *e, const char *src, long long want)
{
	mj_result r;

	tu_eval(e, src, &r);
	if (r.kind != MJ_KIND_NONE)
		fail_msg("%s: %s: %s", src, mj_kind_name(r.kind), r.message);
	assert_int_equal(r.nvalues, 1);
	assert_int_equal(r.values[0].type, MJ_VINT);
	assert_int_equal(r.values[0].u.i, want);
	mj_result_free(&r);
}

/* Evaluates src and checks the error kind; returns nothing, frees the result. */
static inline void
tu_expect_kind(mj_engine *e, const char *src, mj_kind kind)
{
	mj_result r;

	tu_eval(e, src, &r);
	if (r.kind != kind)
		fail_msg("%s: want %s, got %s: %s", src, mj_kind_name(kind), mj_kind_name(r.kind),
		         r.message ? r.message : "");
	mj_result_free(&r);
}

/* Evaluates src, which must fail with kind and a message containing needle. */
static inline void
tu_expect_error(mj_engine *e, const char *src, mj_kind kind, const char *needle)
{
	mj_result r;

	tu_eval(e, src, &r);
	if (r.kind != kind || r.message == NULL || strstr(r.message, needle) == NULL)
		fail_msg("%s: want %s containing '%s', got %s: %s", src, mj_kind_name(kind), needle,
		         mj_kind_name(r.kind), r.message ? r.message : "(none)");
	mj_result_free(&r);
}

#endif
