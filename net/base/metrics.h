/*
 * metrics: counters, gauges and latency recorders, exported in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * Everything lives in caller storage.  A metric is embedded in the object
 * it measures, set up with metrics_<kind>_init() and usable from then on,
 * registered or not.  A `struct metrics` registry links registered metrics
 * through the intrusive `node`; it never allocates.
 *
 * Threads: counter, gauge and latency updates and reads are lock-free and
 * may run on any thread at any time.  Register, unregister and the writers
 * take the registry's mutex (never held during updates).  metrics_destroy()
 * must not race with any other call on the registry.
 *
 * A latency recorder takes values in microseconds and reports count, sum,
 * average, max and the 0.5/0.9/0.99/0.999 quantiles over a sliding window
 * of METRICS_LAT_SLOTS slots of METRICS_LAT_SLOT_NS each (the newest slot
 * still filling), plus cumulative count and sum.  Quantiles come from a
 * log-linear histogram: exact below METRICS_LAT_LINEAR, otherwise within a
 * relative error of 1/(2 * METRICS_LAT_SUB) (1.6%), up to
 * METRICS_LAT_RANGE_US; larger values count in the top bucket (their
 * quantile is then only bounded by the exact max).
 */
#ifndef RPCGATE_NET_METRICS_H
#define RPCGATE_NET_METRICS_H

#include <stdint.h>
#include <sys/types.h>

#include <pthread.h>

#include "mem.h"

/* Longest metric name; Prometheus sets none, brpc's bvar names are < 64. */
#define METRICS_NAME_MAX 127
/* Longest label string, e.g. `method="Echo",port="8000"`; same reasoning. */
#define METRICS_LABELS_MAX 255

/*
 * brpc's LatencyRecorder window: bvar_dump_interval, 10 s, in slots of one
 * second (bvar's sampler tick).
 */
#define METRICS_LAT_SLOT_NS 1000000000LL
#define METRICS_LAT_SLOTS   10
/* Sub-buckets per power of two: bucket width / lower bound = 1/32. */
#define METRICS_LAT_SUB_BITS 5
#define METRICS_LAT_SUB	     (1 << METRICS_LAT_SUB_BITS)
/* Values below this have a bucket each (an octave of width-1 buckets). */
#define METRICS_LAT_LINEAR (2 * METRICS_LAT_SUB)
/* 2^32 us = 71.6 min: covers the brief's "up to an hour". */
#define METRICS_LAT_RANGE_BITS 32
#define METRICS_LAT_RANGE_US   (1ULL << METRICS_LAT_RANGE_BITS)
#define METRICS_LAT_BUCKETS                                                    \
	(METRICS_LAT_LINEAR +                                                  \
	 (METRICS_LAT_RANGE_BITS - METRICS_LAT_SUB_BITS - 1) *                 \
	     METRICS_LAT_SUB)

enum metrics_kind {
	METRICS_COUNTER,
	METRICS_GAUGE,
	METRICS_LATENCY,
};

struct metrics_link {
	struct metrics_link *next, *prev;
};

/* Registration state; private to metrics.c. */
struct metrics_node {
	struct metrics_link link;
	struct metrics *reg; /* NULL while unregistered */
	enum metrics_kind kind;
	const char *help; /* borrowed until unregistered */
	char name[METRICS_NAME_MAX + 1];
	char labels[METRICS_LABELS_MAX + 1];
};

struct metrics_counter {
	struct metrics_node node;
	uint64_t value;
};

struct metrics_gauge {
	struct metrics_node node;
	int64_t value;
};

struct metrics_lat_slot {
	int64_t epoch; /* now / SLOT_NS of its data, or < 0 */
	uint64_t sum;
	uint64_t max;
	uint32_t bucket[METRICS_LAT_BUCKETS];
};

/* About 36 KiB: embed it in long-lived objects (server, method, port). */
struct metrics_latency {
	struct metrics_node node;
	uint64_t total_count;
	uint64_t total_sum;
	struct metrics_lat_slot slot[METRICS_LAT_SLOTS];
};

/* Window figures; quantiles and max are 0 when count is 0. */
struct metrics_latency_stats {
	uint64_t count, sum, avg, max; /* over the window; avg rounds down */
	uint64_t p50, p90, p99, p999;
	uint64_t total_count, total_sum; /* since init */
};

struct metrics_options {
	const struct mem *mem; /* the family index; NULL: mem_default() */
};

/* The metrics of one name: adjacent in the registry's list, their labels
 * indexed, so that a registration costs O(families), not O(metrics): a
 * gateway's route of 10,000 instances registers 40,000. */
struct metrics_family {
	const struct metrics_node *any; /* a member: its name and kind */
	struct metrics_link *last;	/* insert after it */
	size_t n;
	const struct metrics_node **slot; /* by labels; NULL empty */
	size_t mask;
};

struct metrics {
	struct metrics_options opt;
	pthread_mutex_t lock;
	struct metrics_link head; /* same-name metrics kept adjacent */
	size_t count;
	struct metrics_family *fam;
	size_t nfam, capfam;
};

void metrics_options_default(struct metrics_options *opt);

/* 0, or -errno from pthread_mutex_init().  `opt` may be NULL (defaults). */
int metrics_init(struct metrics *m, const struct metrics_options *opt);
/* Unregisters whatever is still registered (their owners may still call
 * metrics_unregister(), which is then a no-op). */
void metrics_destroy(struct metrics *m);

void metrics_counter_init(struct metrics_counter *c);
void metrics_counter_add(struct metrics_counter *c, uint64_t n);
uint64_t metrics_counter_get(const struct metrics_counter *c);

void metrics_gauge_init(struct metrics_gauge *g);
void metrics_gauge_set(struct metrics_gauge *g, int64_t v);
void metrics_gauge_add(struct metrics_gauge *g, int64_t delta);
int64_t metrics_gauge_get(const struct metrics_gauge *g);

void metrics_latency_init(struct metrics_latency *l);
/* Records one value at clock_mono_ns(). */
void metrics_latency_record(struct metrics_latency *l, uint64_t us);
/*
 * Records at `now_ns` (monotonic, >= 0).  Lock-free except once per slot
 * per window: the first record of a new slot clears it, and records racing
 * with that clear spin (yielding) until it is done.
 */
void metrics_latency_record_at(struct metrics_latency *l, uint64_t us,
			       int64_t now_ns);
/* The window ending in the slot holding `now_ns`. */
void metrics_latency_stats_at(const struct metrics_latency *l, int64_t now_ns,
			      struct metrics_latency_stats *out);

/*
 * Register a metric under `name` ([a-zA-Z_:][a-zA-Z0-9_:]*) with `help`
 * (borrowed, must outlive the registration) and `labels`: NULL/"" or
 * `name="value"` pairs joined by ',' (label names [a-zA-Z_][a-zA-Z0-9_]*
 * not starting "__", values escaping only \\, \" and \n; a latency
 * recorder may not use "quantile").  Name and labels are copied.
 *
 * Metrics sharing a name form one family: same kind, distinct labels
 * (compared as strings, so keep a fixed label order).  A latency recorder
 * `x` also owns `x_sum`, `x_count` and `x_max`.
 *
 * 0; -EINVAL for a bad name or labels, or a metric already registered;
 * -ENAMETOOLONG past METRICS_NAME_MAX/METRICS_LABELS_MAX; -EEXIST for the
 * same name and labels, or a name clashing with another family.
 */
int metrics_register_counter(struct metrics *m, struct metrics_counter *c,
			     const char *name, const char *help,
			     const char *labels);
int metrics_register_gauge(struct metrics *m, struct metrics_gauge *g,
			   const char *name, const char *help,
			   const char *labels);
int metrics_register_latency(struct metrics *m, struct metrics_latency *l,
			     const char *name, const char *help,
			     const char *labels);
/* Pass &metric->node.  No-op if not registered. */
void metrics_unregister(struct metrics_node *node);

/*
 * Writes every registered metric into `buf` as Prometheus text, families
 * in registration order, NUL-terminated when cap > 0 (buf may be NULL when
 * cap is 0).  Returns the full length (without the NUL), like snprintf():
 * a result >= cap means the text was cut and a buffer of result + 1 bytes
 * is needed.  A latency family is a summary (`x{quantile="0.5"}`..,
 * `x_sum`, `x_count`, cumulative; quantiles NaN on an empty window) and a
 * gauge `x_max` (window max).  Values are integers as recorded.  Empty
 * help omits the HELP line.  -EINVAL if buf is NULL with cap > 0.
 */
ssize_t metrics_write_prometheus(struct metrics *m, char *buf, size_t cap);
/* The same, with latency windows taken at `now_ns`. */
ssize_t metrics_write_prometheus_at(struct metrics *m, char *buf, size_t cap,
				    int64_t now_ns);

#endif
