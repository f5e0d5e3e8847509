/* Unit tests of tenant ceilings and limit validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mj/policy.h"

static void
test_clamp_lowers_to_ceilings(void **state)
{
	mj_tenant_policy p;
	mj_limits def, req, out;

	(void)state;
	mj_limits_default(&def);
	mj_policy_default(&p, &def);
	assert_int_equal(p.max_engines, 64);
	assert_int_equal(p.max_memory, def.memory * 64);
	req = def;
	req.memory = def.memory * 4;
	req.instructions = 0; /* asks for unlimited: gets the ceiling */
	req.timeout_ms = 10;
	req.result_depth = 500;
	assert_int_equal(mj_policy_clamp(&p, &req, &out, NULL), MJ_OK);
	assert_int_equal(out.memory, def.memory);
	assert_true(out.instructions == def.instructions);
	assert_int_equal(out.timeout_ms, 10);
	assert_int_equal(out.result_depth, def.result_depth);

	/* A policy without an instruction ceiling lets a request through, even unlimited. */
	p.max.instructions = 0;
	req.instructions = 0;
	assert_int_equal(mj_policy_clamp(&p, &req, &out, NULL), MJ_OK);
	assert_true(out.instructions == 0);
	req.instructions = 5;
	assert_int_equal(mj_policy_clamp(&p, &req, &out, NULL), MJ_OK);
	assert_true(out.instructions == 5);
}

static void
test_clamp_rejects_unusable(void **state)
{
	mj_tenant_policy p;
	mj_limits def, req, out;
	const char *why = NULL;

	(void)state;
	mj_limits_default(&def);
	mj_policy_default(&p, &def);
	req = def;
	req.memory = 1000;
	out.memory = 7;
	assert_int_equal(mj_policy_clamp(&p, &req, &out, &why), MJ_EINVAL);
	assert_non_null(why);
	assert_int_equal(out.memory, 7);
	req = def;
	req.output = 0;
	assert_int_equal(mj_policy_clamp(&p, &req, &out, &why), MJ_EINVAL);
	assert_int_equal(mj_policy_clamp(NULL, &req, &out, &why), MJ_EINVAL);
	assert_int_equal(mj_policy_clamp(&p, NULL, &out, &why), MJ_EINVAL);
}

static void
test_limits_check(void **state)
{
	mj_limits l;
	const char *why = NULL;

	(void)state;
	mj_limits_default(&l);
	assert_int_equal(mj_limits_check(&l, &why), MJ_OK);
	l.result_depth = 0;
	assert_int_equal(mj_limits_check(&l, &why), MJ_EINVAL);
	mj_limits_default(&l);
	l.memory = (size_t)1 << 41;
	assert_int_equal(mj_limits_check(&l, &why), MJ_EINVAL);
	assert_int_equal(mj_limits_check(NULL, &why), MJ_EINVAL);
	/* Sizes near SIZE_MAX would wrap sums inside the engine (found in review). */
	mj_limits_default(&l);
	l.output = SIZE_MAX;
	assert_int_equal(mj_limits_check(&l, &why), MJ_EINVAL);
	mj_limits_default(&l);
	l.result_bytes = SIZE_MAX;
	assert_int_equal(mj_limits_check(&l, &why), MJ_EINVAL);
	mj_limits_default(&l);
	l.source = (size_t)1 << 41;
	assert_int_equal(mj_limits_check(&l, &why), MJ_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clamp_lowers_to_ceilings),
	    cmocka_unit_test(test_clamp_rejects_unusable),
	    cmocka_unit_test(test_limits_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
