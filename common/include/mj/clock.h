/* Time helpers shared by the engine, the worker and moonjaild. */
#ifndef MJ_CLOCK_H
#define MJ_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC, in nanoseconds. */
uint64_t mj_now_ns(void);

/* *ts = the time on clock (the clock a condition variable waits on) ns_from_now from now,
 * for pthread_cond_timedwait. */
void mj_abs_time(clockid_t clock, struct timespec *ts, uint64_t ns_from_now);

#endif
