/*
 * stamp: per-wake-up stage times (see stamp.h).
 *
 * Each thread fills its own row in thread-local storage; a closed row
 * takes a slot of one shared table with an atomic add and is published by
 * its last column (SLEEP, never 0) stored with release order, so loops on
 * several threads never wait for each other and a dump that runs while a
 * loop is still writing skips the half-written row.  On x86-64 a stage
 * costs one rdtsc (the cycle counter; constant-rate on every CPU this runs
 * on), converted to nanoseconds at the dump against the monotonic clock
 * over the whole run; elsewhere it is a clock_gettime.
 */
#include "stamp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

static const char *const stage_names[STAMP_N] = {
    "woke", "read", "parsed", "dispatch", "pack", "send", "sent", "sleep",
};

/* A row: ticks since its WOKE, 0 for a stage not reached (a stage reached
 * in the same tick as WOKE is stored as 1). */
typedef uint32_t stamp_row[STAMP_N];

/* Both pairs (clock, ticks) are read close together: see calibrate(). */
struct calib {
	int64_t ns;
	int64_t ticks;
};

static stamp_row *rows;	 /* atomic: published by first_use() */
static size_t rows_used; /* atomic: slots taken, may pass the maximum */
static struct calib first;
static int first_taken; /* atomic */

static __thread uint64_t cur[STAMP_N];

#if defined(__x86_64__)
static inline uint64_t ticks(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}
#else
static inline uint64_t ticks(void)
{
	return (uint64_t)clock_mono_ns();
}
#endif

/* A clock reading and the tick count at the same moment: the clock read
 * between two tick counts close together (a preemption between them
 * would skew the rate), their midpoint taken. */
static struct calib calibrate(void)
{
	struct calib best = {0};
	uint64_t best_gap = UINT64_MAX;

	for (int i = 0; i < 16; i++) {
		uint64_t t0 = ticks();
		int64_t ns = clock_mono_ns();
		uint64_t t1 = ticks();

		if (t1 - t0 < best_gap) {
			best_gap = t1 - t0;
			best.ns = ns;
			best.ticks = (int64_t)(t0 + (t1 - t0) / 2);
		}
	}
	return best;
}

static void dump_at_exit(void)
{
	const char *path = getenv("STAMPS_OUT");
	int err = stamp_dump(path);

	if (err)
		fprintf(stderr, "rpcgate: stamps: cannot write %s: %s\n", path,
			strerror(-err));
	else if (stamp_dropped())
		fprintf(stderr,
			"rpcgate: stamps: %zu rows past the first %d "
			"dropped\n",
			stamp_dropped(), STAMP_MAX_ROWS);
}

static void first_use(void)
{
	int expected = 0;
	stamp_row *r;

	if (!__atomic_compare_exchange_n(&first_taken, &expected, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	first = calibrate();
	r = calloc(STAMP_MAX_ROWS, sizeof(*r));
	__atomic_store_n(&rows, r, __ATOMIC_RELEASE);
	if (r && getenv("STAMPS_OUT"))
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

/* Ticks from WOKE to a stage as stored: 0 not reached (or before WOKE,
 * on a CPU whose counter lags), at least 1, at most UINT32_MAX. */
static uint32_t since_woke(uint64_t t)
{
	int64_t d;

	if (!t)
		return 0;
	d = (int64_t)(t - cur[STAMP_WOKE]);
	if (d < 0)
		return 0;
	return d >= UINT32_MAX ? UINT32_MAX : d ? (uint32_t)d : 1;
}

void stamp_sleep(void)
{
	stamp_row *tab = __atomic_load_n(&rows, __ATOMIC_ACQUIRE);
	size_t slot;

	if (!cur[STAMP_WOKE] || !cur[STAMP_READ] || !tab)
		goto out;
	cur[STAMP_SLEEP] = ticks();
	slot = __atomic_fetch_add(&rows_used, 1, __ATOMIC_RELAXED);
	if (slot >= STAMP_MAX_ROWS)
		goto out;
	for (int i = 0; i < STAMP_SLEEP; i++)
		tab[slot][i] = since_woke(cur[i]);
	/* Published last: a dump reads a row only once this is set. */
	__atomic_store_n(&tab[slot][STAMP_SLEEP],
			 since_woke(cur[STAMP_SLEEP]) ?: 1, __ATOMIC_RELEASE);
out:
	cur[STAMP_WOKE] = 0;
}

size_t stamp_rows(void)
{
	size_t n = __atomic_load_n(&rows_used, __ATOMIC_RELAXED);

	return n < STAMP_MAX_ROWS ? n : STAMP_MAX_ROWS;
}

size_t stamp_dropped(void)
{
	size_t n = __atomic_load_n(&rows_used, __ATOMIC_RELAXED);

	return n > STAMP_MAX_ROWS ? n - STAMP_MAX_ROWS : 0;
}

static void put_row(FILE *f, const stamp_row row, double ns_per_tick)
{
	fputc('0', f); /* WOKE: the row's origin */
	for (int i = 1; i < STAMP_N; i++) {
		if (row[i])
			fprintf(f, " %.0f", row[i] * ns_per_tick);
		else
			fputs(" -", f);
	}
	fputc('\n', f);
}

int stamp_dump(const char *path)
{
	stamp_row *tab = __atomic_load_n(&rows, __ATOMIC_ACQUIRE);
	size_t n = stamp_rows();
	double ns_per_tick = 1.0;
	char tmp[4096];
	struct calib now;
	FILE *f;
	int err = 0;

	if (!path || !*path)
		return -EINVAL;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	now = calibrate();
	if (now.ticks > first.ticks && now.ns > first.ns)
		ns_per_tick = (double)(now.ns - first.ns) /
			      (double)(now.ticks - first.ticks);
	for (int i = 0; i < STAMP_N; i++)
		fprintf(f, "%s%s", i ? " " : "# ", stage_names[i]);
	fputc('\n', f);
	for (size_t r = 0; tab && r < n; r++) {
		/* Still being written by a running loop: left out. */
		if (!__atomic_load_n(&tab[r][STAMP_SLEEP], __ATOMIC_ACQUIRE))
			continue;
		put_row(f, tab[r], ns_per_tick);
	}
	if (ferror(f))
		err = -EIO;
	if (fclose(f) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

void stamp_reset(void)
{
	stamp_row *tab = __atomic_load_n(&rows, __ATOMIC_ACQUIRE);

	if (tab)
		memset(tab, 0, sizeof(*tab) * stamp_rows());
	__atomic_store_n(&rows_used, 0, __ATOMIC_RELAXED);
	memset(cur, 0, sizeof(cur));
}
