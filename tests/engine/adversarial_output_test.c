/* Hostile scripts against output and result limits, and error objects that fight back. */
#include "adv_output_cases.h"

static void
test_output_scripts(void **state)
{
	mj_limits l = adv_output_table_limits();

	(void)state;
	adv_run_table("output", adv_output_cases,
	              sizeof(adv_output_cases) / sizeof(adv_output_cases[0]), &l);
}

/* Output is per call: a flood in one call leaves the next call's output empty and untruncated,
 * and what was printed before a failure is still returned. */
static void
per_call_child(const void *arg)
{
	mj_limits l = adv_limits(4u << 20, 10000000, 1000);
	mj_engine *e;
	mj_result r;
	int i;

	(void)arg;
	l.output = 4096;
	if ((e = adv_engine("per_call", &l)) == NULL)
		return;
	for (i = 0; i < 3; i++) {
		if (adv_eval_kind("per_call", e, "while true do print('flood') end", MJ_KIND_OUTPUT,
		                  &r) &&
		    (!r.output_truncated || r.output_len != l.output ||
		     r.stats.output_bytes != l.output || r.stats.output_limit != l.output))
			adv_fail("per_call", "truncated %d, len %zu, stats %zu/%zu",
			         (int)r.output_truncated, r.output_len, r.stats.output_bytes,
			         r.stats.output_limit);
		mj_result_free(&r);
		if (adv_eval_kind("per_call", e, "print('a') print('b\\0c') error('late')",
		                  MJ_KIND_RUNTIME, &r) &&
		    (r.output_truncated || r.output_len != 6 ||
		     memcmp(r.output, "a\nb\0c\n", 6) != 0))
			adv_fail("per_call", "output after an error: truncated %d, %zu bytes",
			         (int)r.output_truncated, r.output_len);
		mj_result_free(&r);
	}
	/* Exactly the limit is fine; one byte more is not. */
	if (adv_eval_kind("per_call", e, "print(string.rep('x', 4095))", MJ_KIND_NONE, &r) &&
	    (r.output_truncated || r.output_len != 4096))
		adv_fail("per_call", "4096 bytes of output: truncated %d, len %zu",
		         (int)r.output_truncated, r.output_len);
	mj_result_free(&r);
	if (adv_eval_kind("per_call", e, "print(string.rep('x', 4096))", MJ_KIND_OUTPUT, &r) &&
	    (!r.output_truncated || r.output_len != 4096))
		adv_fail("per_call", "4097 bytes of output: truncated %d, len %zu",
		         (int)r.output_truncated, r.output_len);
	mj_result_free(&r);
	adv_check_healthy("per_call", e);
	mj_engine_free(e);
}

static void
test_output_per_call(void **state)
{
	(void)state;
	adv_run_custom("output_per_call", NULL, per_call_child, 10000);
}

/* A chunk one byte over the source limit is refused before it is parsed, and changes nothing. */
static void
source_child(const void *arg)
{
	mj_limits l = adv_limits(4u << 20, 10000000, 1000);
	char *src;
	mj_engine *e;
	mj_result r;
	mj_err err;

	(void)arg;
	l.source = 4096;
	if ((e = adv_engine("source", &l)) == NULL)
		return;
	if ((src = malloc(l.source + 2)) == NULL) {
		adv_fail("source", "out of memory");
		mj_engine_free(e);
		return;
	}
	adv_plant_sentinel("source", e);
	/* "return 1" padded with a comment to exactly the limit, then one byte more. */
	memset(src, '-', l.source + 1);
	memcpy(src, "return 1 ", 9);
	src[l.source + 1] = '\0';
	if ((err = mj_engine_eval(e, src, l.source, "adv", &r)) != MJ_OK || r.kind != MJ_KIND_NONE)
		adv_fail("source", "a chunk of exactly the limit: %s %s", mj_err_str(err),
		         err == MJ_OK ? mj_kind_name(r.kind) : "");
	if (err == MJ_OK)
		mj_result_free(&r);
	if ((err = mj_engine_eval(e, src, l.source + 1, "adv", &r)) != MJ_OK ||
	    r.kind != MJ_KIND_BAD_REQUEST || r.engine_reset)
		adv_fail("source", "one byte over the limit: %s %s", mj_err_str(err),
		         err == MJ_OK ? mj_kind_name(r.kind) : "");
	if (err == MJ_OK)
		mj_result_free(&r);
	/* load() inside the engine applies the same limit. */
	adv_expect_values("source", e,
	                  "local f, e = load(string.rep(' ', 4097)) return f, e ~= nil, "
	                  "load(string.rep(' ', 4096)) ~= nil",
	                  "nil, true, true");
	adv_expect_values("source", e, "return ADV_SENTINEL", "42");
	free(src);
	adv_check_healthy("source", e);
	mj_engine_free(e);
}

static void
test_output_source_limit(void **state)
{
	(void)state;
	adv_run_custom("source_limit", NULL, source_child, 10000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_output_scripts),
	    cmocka_unit_test(test_output_per_call),
	    cmocka_unit_test(test_output_source_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
