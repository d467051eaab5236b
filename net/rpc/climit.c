/*
 * climit: fixed and adaptive limits on calls in flight (see climit.h for
 * the model).
 */
#include "climit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/rpc_errno.h"

void climit_init(struct climit *l, enum climit_mode mode, int fixed,
		 const char *what)
{
	memset(l, 0, sizeof(*l));
	l->mode = mode;
	l->fixed = fixed;
	l->what = what;
	l->limit = CLIMIT_INITIAL;
	l->explore = CLIMIT_EXPLORE_MAX;
	pthread_mutex_init(&l->lock, NULL);
}

void climit_destroy(struct climit *l)
{
	pthread_mutex_destroy(&l->lock);
}

int climit_parse(const char *text, enum climit_mode *mode, int *fixed,
		 char *why, size_t why_size)
{
	char *end;
	long v;

	if (!strcmp(text, "auto")) {
		*mode = CLIMIT_AUTO;
		*fixed = 0;
		return 0;
	}
	errno = 0;
	v = strtol(text, &end, 10);
	if (*text < '0' || *text > '9' || *end || errno || v > CLIMIT_CEILING) {
		snprintf(why, why_size,
			 "`%s' is not a concurrency: \"auto\", 0 (no limit) "
			 "or a count up to %d",
			 text, CLIMIT_CEILING);
		return -EINVAL;
	}
	*mode = v ? CLIMIT_FIXED : CLIMIT_NONE;
	*fixed = (int)v;
	return 0;
}

int climit_current(const struct climit *l)
{
	switch (l->mode) {
	case CLIMIT_FIXED:
		return l->fixed;
	case CLIMIT_AUTO:
		return __atomic_load_n(&l->limit, __ATOMIC_RELAXED);
	default:
		return 0;
	}
}

int climit_enter(struct climit *l, char *why, size_t why_size)
{
	int max = climit_current(l);
	int64_t n;

	if (!max)
		return 0;
	n = __atomic_add_fetch(&l->inflight, 1, __ATOMIC_RELAXED);
	if (n <= max)
		return 0;
	__atomic_sub_fetch(&l->inflight, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&l->refused, 1, __ATOMIC_RELAXED);
	snprintf(why, why_size, "Reached %s's max_concurrency=%d%s", l->what,
		 max, l->mode == CLIMIT_AUTO ? " (auto)" : "");
	return RPC_ELIMIT;
}

/* The window is over: the next limit from its figures (lock held). */
static void window_close(struct climit *l, int64_t now_ns)
{
	double secs = (double)(now_ns - l->win_start_ns) / 1e9;
	double avg, qps, next;

	l->windows++;
	if (l->win_ok < CLIMIT_WINDOW_MIN) {
		/* Too few to tell anything; a cut window stays cut until it
		 * has enough. */
		return;
	}
	avg = (double)l->win_lat_sum_us / l->win_ok;
	qps = l->win_ok / (secs > 1e-6 ? secs : 1e-6);
	if (l->remeasuring || l->min_lat_us <= 0)
		l->min_lat_us = avg;
	else if (avg < l->min_lat_us)
		l->min_lat_us = avg * CLIMIT_EMA_ALPHA +
				(1 - CLIMIT_EMA_ALPHA) * l->min_lat_us;
	if (qps >= l->max_qps)
		l->max_qps = qps;
	else
		l->max_qps = qps * CLIMIT_EMA_ALPHA / 10 +
			     (1 - CLIMIT_EMA_ALPHA / 10) * l->max_qps;
	if (avg <= l->min_lat_us * (1 + CLIMIT_EXPLORE_MIN) ||
	    qps >= l->max_qps * (1 + CLIMIT_EXPLORE_MIN))
		l->explore = fmin(CLIMIT_EXPLORE_MAX,
				  l->explore + CLIMIT_EXPLORE_STEP);
	else
		l->explore = fmax(CLIMIT_EXPLORE_MIN,
				  l->explore - CLIMIT_EXPLORE_STEP);
	next = ceil(l->max_qps * ((2 + l->explore) * l->min_lat_us - avg) /
		    1e6);
	/* No queue (latency at its no-load level): nothing to cut.  At a
	 * light load the formula gives about the concurrency in use, and
	 * a burst over it would be refused by a backend with room. */
	if (avg <= l->min_lat_us * (1 + CLIMIT_NO_QUEUE) && next < l->limit &&
	    !l->remeasuring)
		next = l->limit;
	if (!l->next_remeasure_ns)
		l->next_remeasure_ns =
		    now_ns + (int64_t)CLIMIT_REMEASURE_MS * 1000000;
	l->remeasuring = false;
	if (now_ns >= l->next_remeasure_ns) {
		/* One window a little below the limit found: the latency it
		 * shows is the no-load latency now. */
		next = floor(next * CLIMIT_REMEASURE_CUT);
		l->remeasuring = true;
		l->next_remeasure_ns =
		    now_ns + (int64_t)CLIMIT_REMEASURE_MS * 1000000;
	}
	if (!(next >= CLIMIT_FLOOR)) /* NaN too */
		next = CLIMIT_FLOOR;
	if (next > CLIMIT_CEILING)
		next = CLIMIT_CEILING;
	__atomic_store_n(&l->limit, (int)next, __ATOMIC_RELAXED);
}

void climit_leave(struct climit *l, uint64_t latency_us, bool ok,
		  int64_t now_ns)
{
	if (!climit_current(l))
		return;
	__atomic_sub_fetch(&l->inflight, 1, __ATOMIC_RELAXED);
	if (l->mode != CLIMIT_AUTO || pthread_mutex_trylock(&l->lock))
		return;
	if (!l->win_start_ns)
		l->win_start_ns = now_ns;
	if (ok) {
		l->win_ok++;
		l->win_lat_sum_us += latency_us;
	} else {
		l->win_failed++;
	}
	if (l->win_ok >= CLIMIT_WINDOW_MAX ||
	    now_ns - l->win_start_ns >= (int64_t)CLIMIT_WINDOW_MS * 1000000) {
		window_close(l, now_ns);
		l->win_start_ns = now_ns;
		l->win_ok = l->win_failed = 0;
		l->win_lat_sum_us = 0;
	}
	pthread_mutex_unlock(&l->lock);
}
