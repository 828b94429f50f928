/* Monotonic time in microseconds, the one clock for durations and deadlines. */
#ifndef ECHOD_CLOCK_H
#define ECHOD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* t + d, saturating: a deadline past the end of the clock is "never",
 * never a wrap-around to the past. Config durations are bounded
 * (CONFIG_DURATION_MAX_USEC); this keeps every other sum honest too. */
static inline uint64_t clock_add(uint64_t t, uint64_t d)
{
	return t > UINT64_MAX - d ? UINT64_MAX : t + d;
}

#endif
