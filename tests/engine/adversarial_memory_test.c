/* Hostile scripts against the memory limit: bombs of every shape, and the emergency-GC path. */
#include "adv_memory_cases.h"

static void
test_memory_scripts(void **state)
{
	mj_limits l = adv_memory_table_limits();

	(void)state;
	adv_run_table("memory", adv_memory_cases,
	              sizeof(adv_memory_cases) / sizeof(adv_memory_cases[0]), &l);
}

static void
test_memory_legit(void **state)
{
	mj_limits l = adv_memory_table_limits();

	(void)state;
	adv_run_table("memory-legit", adv_memory_legit_cases,
	              sizeof(adv_memory_legit_cases) / sizeof(adv_memory_legit_cases[0]), &l);
}

/* After a memory kill the engine is reset and gives back its heap; repeated bombs do not creep. */
static void
repeat_child(const void *arg)
{
	mj_limits l = adv_limits(4u << 20, 0, 1500);
	size_t base;
	mj_engine *e;
	mj_result r;
	int i;

	(void)arg;
	if ((e = adv_engine("repeat", &l)) == NULL)
		return;
	base = mj_engine_memory(e);
	for (i = 0; i < 20; i++) {
		if (adv_eval_kind("repeat", e, "local t = {} while true do t[#t + 1] = {} end",
		                  MJ_KIND_MEMORY, &r) &&
		    (!r.engine_reset || r.stats.memory_limit != l.memory ||
		     r.stats.memory_peak < l.memory || r.stats.memory_current > base + 4096))
			adv_fail("repeat", "reset %d, limit %zu, peak %zu, current %zu (base %zu)",
			         (int)r.engine_reset, r.stats.memory_limit, r.stats.memory_peak,
			         r.stats.memory_current, base);
		mj_result_free(&r);
	}
	if (mj_engine_memory(e) > base + 4096)
		adv_fail("repeat", "heap %zu after 20 kills, %zu at creation", mj_engine_memory(e),
		         base);
	adv_check_healthy("repeat", e);
	mj_engine_free(e);
}

static void
test_memory_repeat(void **state)
{
	(void)state;
	adv_run_custom("memory_repeat", NULL, repeat_child, 20000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_memory_scripts),
	    cmocka_unit_test(test_memory_legit),
	    cmocka_unit_test(test_memory_repeat),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
