/*
 * stamp: per-wake-up stage times (see stamp.h).
 *
 * Each thread fills its own row in thread-local storage; a closed row
 * takes a slot of one shared table with an atomic add, so loops on
 * several threads never wait for each other.  On x86-64 a stage costs
 * one rdtsc (the cycle counter; constant-rate on every CPU this runs on),
 * converted to nanoseconds at the dump against the monotonic clock over
 * the whole run; elsewhere it is a clock_gettime.
 */
#include "stamp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

static const char *const stage_names[STAMP_N] = {
    "woke", "read", "parsed", "dispatch", "pack", "send", "sent", "sleep",
};

/* A row: ticks since its WOKE, 0 for a stage not reached (a stage reached
 * in the same tick as WOKE is stored as 1). */
typedef uint32_t stamp_row[STAMP_N];

static stamp_row *rows;
static size_t rows_used; /* atomic: slots taken, may pass the maximum */
static int64_t first_ns, first_ticks;
static int first_taken; /* atomic */

static __thread uint64_t cur[STAMP_N];

static inline uint64_t ticks(void)
{
#if defined(__x86_64__)
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
#else
	return (uint64_t)clock_mono_ns();
#endif
}

static void dump_at_exit(void)
{
	const char *path = getenv("STAMPS_OUT");
	int err = stamp_dump(path);

	if (err)
		fprintf(stderr, "rpcgate: stamps: cannot write %s: %s\n", path,
			strerror(-err));
}

static void first_use(void)
{
	int expected = 0;

	if (!__atomic_compare_exchange_n(&first_taken, &expected, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	first_ns = clock_mono_ns();
	first_ticks = (int64_t)ticks();
	rows = calloc(STAMP_MAX_ROWS, sizeof(*rows));
	if (rows && getenv("STAMPS_OUT"))
		atexit(dump_at_exit);
}

void stamp_wake(void)
{
	if (!__atomic_load_n(&first_taken, __ATOMIC_ACQUIRE))
		first_use();
	memset(cur, 0, sizeof(cur));
	cur[STAMP_WOKE] = ticks();
}

void stamp_at(enum stamp_point p)
{
	if (cur[STAMP_WOKE] && !cur[p])
		cur[p] = ticks();
}

void stamp_sleep(void)
{
	uint64_t t = ticks(), d;
	size_t slot;

	if (!cur[STAMP_WOKE] || !cur[STAMP_READ] || !rows)
		goto out;
	cur[STAMP_SLEEP] = t;
	slot = __atomic_fetch_add(&rows_used, 1, __ATOMIC_RELAXED);
	if (slot >= STAMP_MAX_ROWS)
		goto out;
	for (int i = 0; i < STAMP_N; i++) {
		if (!cur[i]) {
			rows[slot][i] = 0;
			continue;
		}
		d = cur[i] - cur[STAMP_WOKE];
		rows[slot][i] = d >= UINT32_MAX ? UINT32_MAX
				: d		? (uint32_t)d
						: 1;
	}
out:
	cur[STAMP_WOKE] = 0;
}

size_t stamp_rows(void)
{
	size_t n = __atomic_load_n(&rows_used, __ATOMIC_RELAXED);

	return n < STAMP_MAX_ROWS ? n : STAMP_MAX_ROWS;
}

int stamp_dump(const char *path)
{
	size_t n = stamp_rows();
	double ns_per_tick = 1.0;
	int64_t dt;
	FILE *f;
	int err = 0;

	if (!path || !*path)
		return -EINVAL;
	f = fopen(path, "w");
	if (!f)
		return -errno;
#if defined(__x86_64__)
	dt = (int64_t)ticks() - first_ticks;
	if (dt > 0)
		ns_per_tick = (double)(clock_mono_ns() - first_ns) / (double)dt;
#else
	(void)dt;
#endif
	for (int i = 0; i < STAMP_N; i++)
		fprintf(f, "%s%s", i ? " " : "# ", stage_names[i]);
	fputc('\n', f);
	for (size_t r = 0; r < n; r++) {
		for (int i = 0; i < STAMP_N; i++) {
			if (i)
				fputc(' ', f);
			if (i && !rows[r][i])
				fputc('-', f);
			else
				fprintf(f, "%.0f",
					i ? rows[r][i] * ns_per_tick : 0.0);
		}
		fputc('\n', f);
	}
	if (ferror(f))
		err = -EIO;
	if (fclose(f) && !err)
		err = -errno;
	return err;
}

void stamp_reset(void)
{
	__atomic_store_n(&rows_used, 0, __ATOMIC_RELAXED);
	memset(cur, 0, sizeof(cur));
}
