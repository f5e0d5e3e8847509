/* Hostile scripts against the instruction limit: endless loops and every way to swallow a kill. */
#include "adv_instructions_cases.h"

static void
test_instruction_scripts(void **state)
{
	mj_limits l = adv_instructions_table_limits();

	(void)state;
	adv_run_table("instructions", adv_instructions_cases,
	              sizeof(adv_instructions_cases) / sizeof(adv_instructions_cases[0]), &l);
}

/* The reported count never passes the limit by more than one step, and the limit is exact. */
static void
count_child(const void *arg)
{
	mj_limits l = adv_limits(4u << 20, 1000000, 0);
	mj_engine *e;
	mj_result r;

	(void)arg;
	if ((e = adv_engine("count", &l)) == NULL)
		return;
	if (adv_eval_kind("count", e, "while true do end", MJ_KIND_INSTRUCTIONS, &r) &&
	    (r.stats.instructions < l.instructions ||
	     r.stats.instructions > l.instructions + MJ_INSTRUCTION_STEP ||
	     r.stats.instruction_limit != l.instructions))
		adv_fail("count", "instructions %llu, limit %llu",
		         (unsigned long long)r.stats.instructions,
		         (unsigned long long)r.stats.instruction_limit);
	mj_result_free(&r);
	/* A call just under the budget succeeds: the budget is per call, not per engine. */
	for (int i = 0; i < 5; i++)
		adv_expect_values("count", e,
		                  "local n = 0 for i = 1, 200000 do n = n + 1 end return n",
		                  "200000");
	adv_check_healthy("count", e);
	mj_engine_free(e);
}

static void
test_instruction_count(void **state)
{
	(void)state;
	adv_run_custom("instruction_count", NULL, count_child, 5000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_instruction_scripts),
	    cmocka_unit_test(test_instruction_count),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
