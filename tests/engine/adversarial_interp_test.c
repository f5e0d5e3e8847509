/* Hostile scripts against the interpreter itself: Lua and C stack exhaustion, 5.4.4 bugs, edges. */
#include "adv_interp_cases.h"

static void
test_interp_scripts(void **state)
{
	mj_limits l = adv_interp_table_limits();

	(void)state;
	adv_run_table("interp", adv_interp_cases,
	              sizeof(adv_interp_cases) / sizeof(adv_interp_cases[0]), &l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_interp_scripts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
