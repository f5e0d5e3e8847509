/* Hostile scripts against the wall-clock limit: loops in Lua, in C, in patterns and in handlers. */
#include "adv_timeout_cases.h"

static void
test_timeout_scripts(void **state)
{
	mj_limits l = adv_timeout_table_limits();

	(void)state;
	adv_run_table("timeout", adv_timeout_cases,
	              sizeof(adv_timeout_cases) / sizeof(adv_timeout_cases[0]), &l);
}

/* Timeouts land near the deadline, and each call gets its own clock: a stale deadline would
 * kill the short loop that follows at once. */
static void
clock_child(const void *arg)
{
	mj_limits l = adv_limits(4u << 20, 0, 200);
	mj_engine *e;
	mj_result r;
	int i;

	(void)arg;
	if ((e = adv_engine("clock", &l)) == NULL)
		return;
	for (i = 0; i < 3; i++) {
		if (adv_eval_kind("clock", e, "while true do end", MJ_KIND_TIMEOUT, &r) &&
		    (r.stats.wall_us < 200000u || r.stats.wall_us > 1000u * ADV_MAX_MS ||
		     r.stats.timeout_ms != 200))
			adv_fail("clock", "wall %llu us for a 200 ms timeout",
			         (unsigned long long)r.stats.wall_us);
		mj_result_free(&r);
		adv_expect_values(
		    "clock", e, "local n = 0 for i = 1, 1e6 do n = n + 1 end return n", "1000000");
	}
	adv_check_healthy("clock", e);
	mj_engine_free(e);
}

static void
test_timeout_clock(void **state)
{
	(void)state;
	adv_run_custom("timeout_clock", NULL, clock_child, 6000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timeout_scripts),
	    cmocka_unit_test(test_timeout_clock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
