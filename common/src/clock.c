/* Time helpers shared by the engine, the worker and moonjaild. */
#include "mj/clock.h"

uint64_t
mj_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void
mj_abs_time(clockid_t clock, struct timespec *ts, uint64_t ns_from_now)
{
	clock_gettime(clock, ts);
	ts->tv_sec += (time_t)(ns_from_now / 1000000000ull);
	ts->tv_nsec += (long)(ns_from_now % 1000000000ull);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}
