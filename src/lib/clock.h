/* The host's monotonic clock in nanoseconds, for timers and timestamps. */
#ifndef KVMKIT_LIB_CLOCK_H
#define KVMKIT_LIB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
