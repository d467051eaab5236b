/*
 * climit: a limit on calls in flight, fixed or adaptive (max_concurrency=
 * auto), for a server, one of its methods or a gateway route.
 *
 * A call enters before its handler runs (climit_enter: 0, or RPC_ELIMIT
 * and the text to answer with, at once) and leaves when its answer is
 * queued (climit_leave, with its latency and whether it succeeded).
 *
 * The adaptive limit follows brpc's auto concurrency limiter (Little's
 * law with an exploration margin), not Envoy's gradient filter:
 *
 *   every window (CLIMIT_WINDOW_MS, or CLIMIT_WINDOW_MAX successes
 *   sooner; a window with fewer than CLIMIT_WINDOW_MIN is dropped):
 *     avg      the window's mean latency of successful calls
 *     qps      its successful calls per second
 *     min_lat  the no-load latency: the EMA of windows faster than it
 *     max_qps  the peak: qps when higher, else a slow EMA towards it
 *     explore  grows by CLIMIT_EXPLORE_STEP while latency stays within
 *              CLIMIT_EXPLORE_MIN of min_lat (or qps still climbs),
 *              shrinks otherwise, within [CLIMIT_EXPLORE_MIN,
 *              CLIMIT_EXPLORE_MAX]
 *     limit  = max_qps * ((2 + explore) * min_lat - avg), but never
 *              lowered while avg is within CLIMIT_NO_QUEUE of min_lat
 *              (no queue worth the name: a light load with some jitter
 *              would otherwise pin the
 *              limit to the concurrency in use, and refuse bursts a
 *              backend with room would serve; brpc lowers it)
 *
 *   When avg rises above min_lat by more than the margin, the limit
 *   falls below what max_qps * min_lat needs: the queue that made the
 *   latency climb is refused instead of kept.  Every
 *   CLIMIT_REMEASURE_MS the limit is cut to CLIMIT_REMEASURE_CUT of
 *   itself for one window and min_lat is taken afresh from it, so a
 *   no-load latency that grew (a slower disk, a busier host) is learnt
 *   again.  (brpc cuts by a tenth; a half-cut window runs without a
 *   queue even at a small limit, so its latency is the no-load one and
 *   the limit cannot ratchet up under a lasting overload.)
 *
 * Failed calls are neither latency samples (a fast error would pull
 * min_lat down) nor part of the window's qps (errors are not goodput).
 * Thread-safe: enter
 * and leave are atomics; the window is closed by whichever leave gets
 * its try-lock (a sample that finds it taken is dropped).
 */
#ifndef RPCGATE_NET_CLIMIT_H
#define RPCGATE_NET_CLIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLIMIT_WINDOW_MS       1000
#define CLIMIT_WINDOW_MIN      100
#define CLIMIT_WINDOW_MAX      200
#define CLIMIT_INITIAL	       40 /* brpc's auto_cl_initial_max_concurrency */
#define CLIMIT_FLOOR	       2  /* never refuses everyone */
#define CLIMIT_CEILING	       100000
#define CLIMIT_EMA_ALPHA       0.1
#define CLIMIT_EXPLORE_MIN     0.06
#define CLIMIT_EXPLORE_MAX     0.3
#define CLIMIT_EXPLORE_STEP    0.02
#define CLIMIT_NO_QUEUE	       0.3
#define CLIMIT_REMEASURE_MS    30000
#define CLIMIT_REMEASURE_CUT   0.5

enum climit_mode {
	CLIMIT_NONE = 0,  /* no limit */
	CLIMIT_FIXED = 1, /* at most `fixed` */
	CLIMIT_AUTO = 2,  /* adaptive */
};

struct climit {
	enum climit_mode mode;
	int fixed;
	const char *what; /* "server", "method example.EchoService.Echo" */
	int64_t inflight; /* atomic */
	int limit;	  /* atomic: the adaptive limit now */
	uint64_t refused; /* atomic: calls answered ELIMIT */

	/* the window (under `lock`, taken with trylock) */
	pthread_mutex_t lock;
	int64_t win_start_ns;
	uint32_t win_ok, win_failed;
	uint64_t win_lat_sum_us;
	double min_lat_us; /* 0: not measured yet */
	double max_qps;
	double explore;
	int64_t next_remeasure_ns;
	bool remeasuring; /* this window runs cut; min_lat taken from it */
	uint64_t windows; /* closed, for tests and /status */
};

/* mode/fixed as parsed by climit_parse; `what` is kept (a literal or
 * outlives the limit). */
void climit_init(struct climit *l, enum climit_mode mode, int fixed,
		 const char *what);
void climit_destroy(struct climit *l);

/*
 * "auto", "0" (none) or a positive count: 0, or -EINVAL with the reason
 * in why.
 */
int climit_parse(const char *text, enum climit_mode *mode, int *fixed,
		 char *why, size_t why_size);

/* The call counts in flight (0), or is refused: RPC_ELIMIT, not
 * counted, the reason in why. */
int climit_enter(struct climit *l, char *why, size_t why_size);

/* A call that entered is answered: `latency_us` from request to answer.
 * now_ns: clock_mono_ns() (given, so tests can drive time). */
void climit_leave(struct climit *l, uint64_t latency_us, bool ok,
		  int64_t now_ns);

/* The limit in force now: 0 for none. */
int climit_current(const struct climit *l);

#endif
