/*
 * clock: monotonic and wall time in nanoseconds.  Never fails on Linux
 * (CLOCK_MONOTONIC is always present); safe on any thread.
 */
#ifndef RPCGATE_NET_CLOCK_H
#define RPCGATE_NET_CLOCK_H

#include <stdint.h>
#include <time.h>

#define CLOCK_NS_PER_MS 1000000LL
#define CLOCK_NS_PER_US 1000LL
#define CLOCK_NS_PER_S	1000000000LL

static inline int64_t clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * CLOCK_NS_PER_S + ts.tv_nsec;
}

static inline int64_t clock_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * CLOCK_NS_PER_S + ts.tv_nsec;
}

#endif
