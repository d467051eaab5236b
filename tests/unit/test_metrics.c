/* Tests for net/base/metrics.c: counters, gauges, latency, Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/mem.h"
#include "base/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define THREADS		4
#define ADDS_PER_THREAD 200000
/* Latency model test: samples, and the bucket error bound of metrics.h. */
#define MODEL_SAMPLES 100000
#define REL_ERR	      (1.0 / (2 * METRICS_LAT_SUB))
/* Concurrent recording: per thread, spread over one 10-slot window. */
#define REC_PER_THREAD 100000
#define S	       METRICS_LAT_SLOT_NS
/* Lock-step slot changes: epochs, and samples per thread per epoch. */
#define RACE_EPOCHS    2000
#define RACE_PER_EPOCH 8
/* Values in the last buckets, which a slot clear reaches last. */
#define LATE_BUCKET (METRICS_LAT_RANGE_US - 1024)

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: reproducible, good enough for test data. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* Log-uniform in [0, 2^bits): every octave as likely. */
static uint64_t rng_loguni(uint64_t *s, unsigned bits)
{
	unsigned e = (unsigned)(rng_next(s) % (bits + 1));

	return e ? rng_next(s) % (1ULL << e) : 0;
}

struct adder {
	struct metrics_counter *c;
	struct metrics_gauge *g;
};

static void *adder_main(void *p)
{
	struct adder *a = p;
	int i;

	for (i = 0; i < ADDS_PER_THREAD; i++) {
		metrics_counter_add(a->c, (uint64_t)(i % 7 + 1));
		metrics_gauge_add(a->g, 3);
		metrics_gauge_add(a->g, -1);
	}
	return NULL;
}

static void test_counter_gauge_threads(void **state)
{
	struct metrics_counter c;
	struct metrics_gauge g;
	struct adder a = {&c, &g};
	pthread_t t[THREADS];
	uint64_t want = 0;
	int i;

	(void)state;
	metrics_counter_init(&c);
	metrics_gauge_init(&g);
	metrics_gauge_set(&g, -5);
	assert_int_equal(metrics_gauge_get(&g), -5);
	metrics_gauge_set(&g, 0);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, adder_main, &a),
				 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < ADDS_PER_THREAD; i++)
		want += (uint64_t)(i % 7 + 1);
	assert_int_equal(metrics_counter_get(&c), want * THREADS);
	assert_int_equal(metrics_gauge_get(&g),
			 2LL * ADDS_PER_THREAD * THREADS);
}

static struct metrics_latency *lat_new(void)
{
	struct metrics_latency *l = malloc(sizeof(*l));

	assert_non_null(l);
	metrics_latency_init(l);
	return l;
}

static void assert_close(uint64_t got, uint64_t want)
{
	double err = (double)(got > want ? got - want : want - got);

	if (want < METRICS_LAT_LINEAR) {
		assert_int_equal(got, want);
		return;
	}
	if (err > REL_ERR * (double)want)
		fail_msg("got %llu want %llu", (unsigned long long)got,
			 (unsigned long long)want);
}

/* One value next to a huge one: p50 is that value's bucket middle. */
static void check_one_value(struct metrics_latency *l, uint64_t v)
{
	struct metrics_latency_stats st;

	metrics_latency_init(l);
	metrics_latency_record_at(l, v, 0);
	metrics_latency_record_at(l, UINT64_MAX / 4, 0);
	metrics_latency_stats_at(l, 0, &st);
	assert_int_equal(st.count, 2);
	assert_close(st.p50, v);
}

static void test_bucket_error_bound(void **state)
{
	struct metrics_latency *l = lat_new();
	uint64_t seed = 7, v;
	unsigned e;
	int i;

	(void)state;
	for (v = 0; v < 300; v++)
		check_one_value(l, v);
	for (e = 6; e < METRICS_LAT_RANGE_BITS; e++) {
		check_one_value(l, (1ULL << e) - 1);
		check_one_value(l, 1ULL << e);
		check_one_value(l, (1ULL << e) + 1);
	}
	for (i = 0; i < 3000; i++)
		check_one_value(l, rng_loguni(&seed, METRICS_LAT_RANGE_BITS));
	check_one_value(l, METRICS_LAT_RANGE_US - 1);
	free(l);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least q of them <= it. */
static uint64_t model_quantile(const uint64_t *sorted, size_t n, double q)
{
	size_t rank = (size_t)((double)n * q + 0.999999);

	return sorted[(rank ? rank : 1) - 1];
}

static void check_model(uint64_t *v, size_t n, unsigned bits, uint64_t seed)
{
	struct metrics_latency *l = lat_new();
	struct metrics_latency_stats st;
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		v[i] = rng_loguni(&seed, bits);
		sum += v[i];
		/* Spread over the window's ten slots. */
		metrics_latency_record_at(l, v[i], (int64_t)(i % 10) * S);
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	metrics_latency_stats_at(l, 9 * S + 1, &st);
	assert_int_equal(st.count, n);
	assert_int_equal(st.sum, sum);
	assert_int_equal(st.avg, sum / n);
	assert_int_equal(st.max, v[n - 1]);
	assert_int_equal(st.total_count, n);
	assert_int_equal(st.total_sum, sum);
	assert_close(st.p50, model_quantile(v, n, 0.5));
	assert_close(st.p90, model_quantile(v, n, 0.9));
	assert_close(st.p99, model_quantile(v, n, 0.99));
	assert_close(st.p999, model_quantile(v, n, 0.999));
	free(l);
}

static void test_latency_vs_model(void **state)
{
	uint64_t *v = malloc(MODEL_SAMPLES * sizeof(*v));

	(void)state;
	assert_non_null(v);
	check_model(v, MODEL_SAMPLES, 27, 1); /* up to ~2 min */
	check_model(v, MODEL_SAMPLES, 10, 2); /* many duplicates */
	check_model(v, 7, 20, 3);	      /* tiny window */
	check_model(v, 1, 31, 4);
	free(v);
}

static void test_latency_empty(void **state)
{
	struct metrics_latency *l = lat_new();
	struct metrics_latency_stats st;

	(void)state;
	metrics_latency_stats_at(l, 123 * S, &st);
	assert_int_equal(st.count + st.sum + st.avg + st.max, 0);
	assert_int_equal(st.p50 + st.p90 + st.p99 + st.p999, 0);
	/* Over the range: counted, max exact, quantile capped by max. */
	metrics_latency_record_at(l, METRICS_LAT_RANGE_US * 3, 0);
	metrics_latency_stats_at(l, 0, &st);
	assert_int_equal(st.count, 1);
	assert_int_equal(st.max, METRICS_LAT_RANGE_US * 3);
	assert_true(st.p999 <= st.max && st.p999 >= METRICS_LAT_RANGE_US / 2);
	/* Clock time works too. */
	metrics_latency_record(l, 5);
	metrics_latency_stats_at(l, clock_mono_ns(), &st);
	assert_int_equal(st.count, 1);
	assert_int_equal(st.p50, 5);
	free(l);
}

static void test_latency_window_slides(void **state)
{
	struct metrics_latency *l = lat_new();
	struct metrics_latency_stats st;
	const int64_t t0 = 100 * S;
	int i;

	(void)state;
	for (i = 0; i < 100; i++)
		metrics_latency_record_at(l, 1000, t0 + S / 5);
	for (i = 0; i < 50; i++)
		metrics_latency_record_at(l, 10, t0 + 5 * S + S / 2);
	metrics_latency_stats_at(l, t0 + 5 * S + S / 2, &st);
	assert_int_equal(st.count, 150);
	assert_int_equal(st.max, 1000);
	/* The oldest slot is still in at the end of the tenth... */
	metrics_latency_stats_at(l, t0 + 10 * S - 1, &st);
	assert_int_equal(st.count, 150);
	/* ...and out as the eleventh begins. */
	metrics_latency_stats_at(l, t0 + 10 * S, &st);
	assert_int_equal(st.count, 50);
	assert_int_equal(st.max, 10);
	assert_int_equal(st.p999, 10);
	metrics_latency_stats_at(l, t0 + 15 * S, &st);
	assert_int_equal(st.count, 0);
	assert_int_equal(st.max, 0);

	/* Reusing the first slot clears its stale data lazily. */
	for (i = 0; i < 3; i++)
		metrics_latency_record_at(l, 7, t0 + 10 * S + S / 3);
	metrics_latency_stats_at(l, t0 + 10 * S + S / 3, &st);
	assert_int_equal(st.count, 53);
	assert_int_equal(st.sum, 50 * 10 + 3 * 7);
	assert_int_equal(st.max, 10);
	assert_int_equal(st.total_count, 153);
	assert_int_equal(st.total_sum, 100 * 1000 + 50 * 10 + 3 * 7);

	/* One sample a second: the window holds the last ten. */
	metrics_latency_init(l);
	for (i = 0; i < 30; i++) {
		metrics_latency_record_at(l, (uint64_t)i, i * S + S / 2);
		metrics_latency_stats_at(l, i * S + S / 2, &st);
		assert_int_equal(st.count, i < 10 ? i + 1 : 10);
		assert_int_equal(st.max, i);
		assert_int_equal(st.p50, i < 10 ? i / 2 : i - 5);
	}
	free(l);
}

struct recorder {
	struct metrics_latency *l;
	int64_t base;
	uint64_t seed;
};

static void *recorder_main(void *p)
{
	struct recorder *r = p;
	int64_t step = 10 * S / REC_PER_THREAD;
	int i;

	for (i = 0; i < REC_PER_THREAD; i++)
		metrics_latency_record_at(r->l, rng_loguni(&r->seed, 20),
					  r->base + i * step);
	return NULL;
}

static void run_recorders(struct metrics_latency *l, int64_t base)
{
	struct recorder r[THREADS];
	pthread_t t[THREADS];
	int i;

	for (i = 0; i < THREADS; i++) {
		r[i] = (struct recorder){l, base, (uint64_t)i + 1};
		assert_int_equal(
		    pthread_create(&t[i], NULL, recorder_main, &r[i]), 0);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
}

/* Threads racing through slot changes lose no sample. */
static void test_latency_threads(void **state)
{
	struct metrics_latency *l = lat_new();
	struct metrics_latency_stats st;

	(void)state;
	run_recorders(l, 0);
	metrics_latency_stats_at(l, 10 * S - 1, &st);
	assert_int_equal(st.count, THREADS * REC_PER_THREAD);
	/* The next window reuses every slot. */
	run_recorders(l, 10 * S);
	metrics_latency_stats_at(l, 20 * S - 1, &st);
	assert_int_equal(st.count, THREADS * REC_PER_THREAD);
	assert_int_equal(st.total_count, 2 * THREADS * REC_PER_THREAD);
	assert_true(st.max < (1 << 20));
	free(l);
}

struct lockstep {
	struct metrics_latency *l;
	pthread_barrier_t bar;
	int bad; /* epochs whose window count was wrong */
};

/* All threads enter each new slot at once, then thread 0 checks it. */
static void *lockstep_main(void *p)
{
	struct lockstep *ls = p;
	struct metrics_latency_stats st;
	uint64_t want;
	int e, i;

	pthread_barrier_wait(&ls->bar);
	for (e = 0; e < RACE_EPOCHS; e++) {
		for (i = 0; i < RACE_PER_EPOCH; i++)
			metrics_latency_record_at(
			    ls->l, LATE_BUCKET + (uint64_t)i, e * S);
		if (pthread_barrier_wait(&ls->bar) ==
		    PTHREAD_BARRIER_SERIAL_THREAD) {
			metrics_latency_stats_at(ls->l, e * S, &st);
			want = (uint64_t)(e < METRICS_LAT_SLOTS
					      ? e + 1
					      : METRICS_LAT_SLOTS) *
			       THREADS * RACE_PER_EPOCH;
			if (st.count != want)
				ls->bad++;
		}
		pthread_barrier_wait(&ls->bar);
	}
	return NULL;
}

/* Writers meeting a slot being cleared wait for it: none is wiped. */
static void test_latency_rotation_race(void **state)
{
	struct lockstep ls = {.l = lat_new()};
	pthread_t t[THREADS];
	int i;

	(void)state;
	assert_int_equal(pthread_barrier_init(&ls.bar, NULL, THREADS), 0);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(
		    pthread_create(&t[i], NULL, lockstep_main, &ls), 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&ls.bar);
	assert_int_equal(ls.bad, 0);
	free(ls.l);
}

struct reg_fixture {
	struct metrics m;
	struct metrics_counter c[4];
	struct metrics_gauge g[2];
	struct metrics_latency l[3];
};

static struct reg_fixture *fixture_new(const struct metrics_options *opt)
{
	struct reg_fixture *f = malloc(sizeof(*f));
	int i;

	assert_non_null(f);
	assert_int_equal(metrics_init(&f->m, opt), 0);
	for (i = 0; i < 4; i++)
		metrics_counter_init(&f->c[i]);
	for (i = 0; i < 2; i++)
		metrics_gauge_init(&f->g[i]);
	for (i = 0; i < 3; i++)
		metrics_latency_init(&f->l[i]);
	return f;
}

static void fixture_free(struct reg_fixture *f)
{
	metrics_destroy(&f->m);
	free(f);
}

static void test_names_and_labels(void **state)
{
	static const char *const good[] = {
	    "a", "_x", ":y", "http_total", "a:b_C9", "Z",
	};
	static const char *const bad[] = {
	    "", "9a", "a-b", "a b", "\xc3\xa9", "a.b", "a\n",
	};
	static const char *const good_l[] = {
	    "port=\"8000\"",  "a=\"x\",b=\"y\"",	"a=\"\"",
	    "_a=\"\"",	      "a=\"q\\\"u\\\\o\\nte\"", "a=\"caf\xc3\xa9\"",
	    "quantile=\"1\"",
	};
	static const char *const bad_l[] = {
	    "port=8000", "port=\"8000",	    "=\"x\"",	      "__a=\"x\"",
	    "a=\"x\",",	 "a=\"x\",a=\"y\"", "a=\"x\"b=\"y\"", "a=\"\\t\"",
	    "1a=\"x\"",	 "a=\"x\" ",	    "a =\"x\"",	      "a=\"x\ny\"",
	    ",a=\"x\"",	 "a-b=\"x\"",
	};
	struct reg_fixture *f = fixture_new(NULL);
	struct metrics_counter *c = &f->c[0];
	char name[METRICS_NAME_MAX + 2];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(
		    metrics_register_counter(&f->m, c, good[i], "h", NULL), 0);
		metrics_unregister(&c->node);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(
		    metrics_register_counter(&f->m, c, bad[i], "h", NULL),
		    -EINVAL);
	assert_int_equal(metrics_register_counter(&f->m, c, NULL, "h", NULL),
			 -EINVAL);
	for (i = 0; i < sizeof(good_l) / sizeof(good_l[0]); i++) {
		assert_int_equal(
		    metrics_register_counter(&f->m, c, "n", NULL, good_l[i]),
		    0);
		metrics_unregister(&c->node);
	}
	for (i = 0; i < sizeof(bad_l) / sizeof(bad_l[0]); i++) {
		if (metrics_register_counter(&f->m, c, "n", "", bad_l[i]) !=
		    -EINVAL)
			fail_msg("labels accepted: %s", bad_l[i]);
	}
	/* A summary has its own "quantile" label. */
	assert_int_equal(metrics_register_latency(&f->m, &f->l[0], "lat", "",
						  "quantile=\"1\""),
			 -EINVAL);

	memset(name, 'n', sizeof(name));
	name[METRICS_NAME_MAX] = '\0';
	assert_int_equal(metrics_register_counter(&f->m, c, name, "", NULL), 0);
	metrics_unregister(&c->node);
	name[METRICS_NAME_MAX] = 'n';
	name[METRICS_NAME_MAX + 1] = '\0';
	assert_int_equal(metrics_register_counter(&f->m, c, name, "", NULL),
			 -ENAMETOOLONG);
	assert_int_equal(f->m.count, 0);
	fixture_free(f);
}

static void test_duplicates(void **state)
{
	struct reg_fixture *f = fixture_new(NULL);
	struct metrics *m = &f->m;

	(void)state;
	assert_int_equal(metrics_register_counter(m, &f->c[0], "req", "", NULL),
			 0);
	/* The same node twice. */
	assert_int_equal(metrics_register_counter(m, &f->c[0], "x", "", NULL),
			 -EINVAL);
	assert_int_equal(metrics_register_counter(m, &f->c[1], "req", "", NULL),
			 -EEXIST);
	assert_int_equal(
	    metrics_register_counter(m, &f->c[1], "req", "", "port=\"1\""), 0);
	assert_int_equal(
	    metrics_register_counter(m, &f->c[2], "req", "", "port=\"1\""),
	    -EEXIST);
	assert_int_equal(
	    metrics_register_counter(m, &f->c[2], "req", "", "port=\"2\""), 0);
	/* Another kind under a taken name. */
	assert_int_equal(
	    metrics_register_gauge(m, &f->g[0], "req", "", "port=\"3\""),
	    -EEXIST);
	/* A summary owns its _sum, _count and _max names. */
	assert_int_equal(metrics_register_latency(m, &f->l[0], "lat", "", NULL),
			 0);
	assert_int_equal(
	    metrics_register_counter(m, &f->c[3], "lat_max", "", NULL),
	    -EEXIST);
	assert_int_equal(
	    metrics_register_gauge(m, &f->g[0], "lat_count", "", NULL),
	    -EEXIST);
	assert_int_equal(
	    metrics_register_latency(m, &f->l[1], "lat_sum", "", NULL),
	    -EEXIST);
	assert_int_equal(
	    metrics_register_latency(m, &f->l[1], "req_max", "", NULL), 0);
	/* "req_max"'s "req_max_max" is free, but "req" is not a summary. */
	assert_int_equal(
	    metrics_register_latency(m, &f->l[2], "req", "", "port=\"9\""),
	    -EEXIST);
	assert_int_equal(
	    metrics_register_counter(m, &f->c[3], "lat_avg", "", NULL), 0);
	assert_int_equal(m->count, 6);
	/* Unregistering frees the name and labels. */
	metrics_unregister(&f->c[0].node);
	metrics_unregister(&f->c[0].node);
	assert_int_equal(m->count, 5);
	assert_int_equal(metrics_register_counter(m, &f->c[0], "req", "", NULL),
			 0);
	fixture_free(f);
}

/* Every line a comment or a sample; one TYPE per family, families whole. */
static void check_exposition(const char *text)
{
	char seen[16][METRICS_NAME_MAX + 8], fam[METRICS_NAME_MAX + 8] = "";
	const char *p = text, *e;
	char line[1024];
	regex_t comment, sample;
	int nseen = 0, i;

	assert_int_equal(
	    regcomp(&comment,
		    "^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE "
		    "[a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|summary))$",
		    REG_EXTENDED),
	    0);
	assert_int_equal(
	    regcomp(&sample,
		    "^[a-zA-Z_:][a-zA-Z0-9_:]*"
		    "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
		    "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})?"
		    " (-?[0-9]+|NaN)$",
		    REG_EXTENDED | REG_NOSUB),
	    0);
	while (*p) {
		e = strchr(p, '\n');
		assert_non_null(e);
		assert_true(e - p < (long)sizeof(line));
		memcpy(line, p, (size_t)(e - p));
		line[e - p] = '\0';
		p = e + 1;
		if (!strncmp(line, "# TYPE ", 7)) {
			assert_int_equal(regexec(&comment, line, 0, NULL, 0),
					 0);
			sscanf(line + 7, "%134s", fam);
			for (i = 0; i < nseen; i++)
				assert_string_not_equal(seen[i], fam);
			assert_true(nseen < 16);
			strcpy(seen[nseen++], fam);
			continue;
		}
		if (line[0] == '#') {
			assert_int_equal(regexec(&comment, line, 0, NULL, 0),
					 0);
			continue;
		}
		if (regexec(&sample, line, 0, NULL, 0))
			fail_msg("bad sample line: %s", line);
		/* Belongs to the family of the last TYPE line. */
		assert_int_equal(strncmp(line, fam, strlen(fam)), 0);
	}
	regfree(&comment);
	regfree(&sample);
}

static struct reg_fixture *fixture_exposition(void)
{
	struct reg_fixture *f = fixture_new(NULL);
	struct metrics *m = &f->m;
	uint64_t v;

	assert_int_equal(metrics_register_counter(m, &f->c[0], "rpc_requests",
						  "Requests served.",
						  "port=\"8000\""),
			 0);
	assert_int_equal(metrics_register_gauge(m, &f->g[0], "conns",
						"Open\nconnections \\ now",
						NULL),
			 0);
	assert_int_equal(metrics_register_latency(m, &f->l[0], "rpc_latency_us",
						  "Latency.",
						  "method=\"Echo\""),
			 0);
	/* Joins its family, ahead of the gauge. */
	assert_int_equal(metrics_register_counter(m, &f->c[1], "rpc_requests",
						  "ignored: first help wins",
						  "port=\"8001\""),
			 0);
	assert_int_equal(metrics_register_latency(m, &f->l[1], "rpc_latency_us",
						  "", "method=\"a\\\"b\""),
			 0);
	assert_int_equal(
	    metrics_register_counter(m, &f->c[2], "plain", "", NULL), 0);
	metrics_counter_add(&f->c[0], 5);
	metrics_counter_add(&f->c[1], 7);
	metrics_counter_add(&f->c[2], UINT64_MAX);
	metrics_gauge_set(&f->g[0], -3);
	for (v = 1; v <= 100; v++)
		metrics_latency_record_at(&f->l[0], v, 42 * S);
	/* Outside the window at 42 s: only in _sum and _count. */
	metrics_latency_record_at(&f->l[1], 9, 2 * S);
	return f;
}

static const char expected_text[] =
    "# HELP rpc_requests Requests served.\n"
    "# TYPE rpc_requests counter\n"
    "rpc_requests{port=\"8000\"} 5\n"
    "rpc_requests{port=\"8001\"} 7\n"
    "# HELP conns Open\\nconnections \\\\ now\n"
    "# TYPE conns gauge\n"
    "conns -3\n"
    "# HELP rpc_latency_us Latency.\n"
    "# TYPE rpc_latency_us summary\n"
    "rpc_latency_us{method=\"Echo\",quantile=\"0.5\"} 50\n"
    "rpc_latency_us{method=\"Echo\",quantile=\"0.9\"} 90\n"
    "rpc_latency_us{method=\"Echo\",quantile=\"0.99\"} 98\n"
    "rpc_latency_us{method=\"Echo\",quantile=\"0.999\"} 100\n"
    "rpc_latency_us_sum{method=\"Echo\"} 5050\n"
    "rpc_latency_us_count{method=\"Echo\"} 100\n"
    "rpc_latency_us{method=\"a\\\"b\",quantile=\"0.5\"} NaN\n"
    "rpc_latency_us{method=\"a\\\"b\",quantile=\"0.9\"} NaN\n"
    "rpc_latency_us{method=\"a\\\"b\",quantile=\"0.99\"} NaN\n"
    "rpc_latency_us{method=\"a\\\"b\",quantile=\"0.999\"} NaN\n"
    "rpc_latency_us_sum{method=\"a\\\"b\"} 9\n"
    "rpc_latency_us_count{method=\"a\\\"b\"} 1\n"
    "# HELP rpc_latency_us_max Latency. (window max)\n"
    "# TYPE rpc_latency_us_max gauge\n"
    "rpc_latency_us_max{method=\"Echo\"} 100\n"
    "rpc_latency_us_max{method=\"a\\\"b\"} 0\n"
    "# TYPE plain counter\n"
    "plain 18446744073709551615\n";

static void test_prometheus_text(void **state)
{
	struct reg_fixture *f = fixture_exposition();
	char *buf = malloc(8192);
	ssize_t n;

	(void)state;
	assert_non_null(buf);
	n = metrics_write_prometheus_at(&f->m, buf, 8192, 42 * S + 1);
	assert_string_equal(buf, expected_text);
	assert_int_equal(n, (ssize_t)strlen(expected_text));
	check_exposition(buf);

	/* Unregistering a member keeps the rest whole. */
	metrics_unregister(&f->c[0].node);
	metrics_unregister(&f->g[0].node);
	metrics_write_prometheus(&f->m, buf, 8192);
	check_exposition(buf);
	assert_null(strstr(buf, "8000"));
	assert_null(strstr(buf, "conns"));
	assert_non_null(strstr(buf, "rpc_requests{port=\"8001\"} 7\n"));

	/* Empty registry, empty text. */
	metrics_destroy(&f->m);
	assert_int_equal(metrics_init(&f->m, NULL), 0);
	assert_int_equal(metrics_write_prometheus(&f->m, buf, 8192), 0);
	assert_string_equal(buf, "");
	free(buf);
	fixture_free(f);
}

static void test_prometheus_small_buffer(void **state)
{
	struct reg_fixture *f = fixture_exposition();
	size_t full = strlen(expected_text), cap;
	char *buf;

	(void)state;
	assert_int_equal(metrics_write_prometheus_at(&f->m, NULL, 0, 42 * S),
			 (ssize_t)full);
	assert_int_equal(metrics_write_prometheus(&f->m, NULL, 1), -EINVAL);
	/* Exactly `cap` bytes each time so that ASan sees any overrun. */
	for (cap = 1; cap <= full + 1; cap++) {
		buf = malloc(cap);
		assert_non_null(buf);
		assert_int_equal(
		    metrics_write_prometheus_at(&f->m, buf, cap, 42 * S),
		    (ssize_t)full);
		assert_int_equal(strlen(buf), cap - 1 < full ? cap - 1 : full);
		assert_memory_equal(buf, expected_text, strlen(buf));
		free(buf);
	}
	fixture_free(f);
}

/* Only registration allocates (the family index), through the hook: a
 * failing hook refuses the registration and leaves nothing behind;
 * recording and writing never allocate; destroy frees it all. */
static void test_allocation(void **state)
{
	struct metrics_options opt;
	struct mem_failing mf;
	struct reg_fixture *f;
	char buf[4096];
	long calls;

	(void)state;
	mem_failing_init(&mf, 0);
	metrics_options_default(&opt);
	opt.mem = &mf.mem;
	f = fixture_new(&opt);
	assert_int_equal(
	    metrics_register_counter(&f->m, &f->c[0], "a", "", NULL), -ENOMEM);
	assert_null(f->c[0].node.reg);
	assert_int_equal(f->m.count, 0);
	assert_int_equal(mf.live, 0);
	mf.fail_at = -1;
	assert_int_equal(
	    metrics_register_counter(&f->m, &f->c[0], "a", "", NULL), 0);
	assert_int_equal(
	    metrics_register_latency(&f->m, &f->l[0], "b", "", "x=\"1\""), 0);
	calls = mf.calls;
	metrics_latency_record(&f->l[0], 12);
	assert_true(metrics_write_prometheus(&f->m, buf, sizeof(buf)) > 0);
	assert_int_equal(mf.calls, calls);
	metrics_unregister(&f->c[0].node);
	fixture_free(f);
	assert_int_equal(mf.live, 0);
}

/* A family of 20,000: registering is not quadratic (the test's time
 * bound), duplicates are refused, members taken out in any order leave
 * the index exact (every one left still refuses its twin, every one taken
 * out registers again), and the text keeps each family together. */
static void test_large_family(void **state)
{
	enum { N = 20000 };
	struct metrics m;
	struct metrics_gauge *g = calloc(N, sizeof(*g)), twin, other;
	char labels[64], *buf;
	size_t cap = 4 << 20;
	ssize_t len;

	(void)state;
	assert_non_null(g);
	assert_int_equal(metrics_init(&m, NULL), 0);
	metrics_gauge_init(&other);
	for (int i = 0; i < N; i++) {
		metrics_gauge_init(&g[i]);
		snprintf(labels, sizeof(labels), "instance=\"i%d\"", i);
		assert_int_equal(
		    metrics_register_gauge(&m, &g[i], "fam", "", labels), 0);
		if (i == N / 2)
			assert_int_equal(
			    metrics_register_gauge(&m, &other, "zz", "", NULL),
			    0);
	}
	/* out: every third one, from the middle outwards */
	for (int k = 0; k < N; k++) {
		int i = (k * 7919) % N;

		if (i % 3 == 0)
			metrics_unregister(&g[i].node);
	}
	for (int i = 0; i < N; i++) {
		snprintf(labels, sizeof(labels), "instance=\"i%d\"", i);
		metrics_gauge_init(&twin);
		assert_int_equal(
		    metrics_register_gauge(&m, &twin, "fam", "", labels),
		    i % 3 == 0 ? 0 : -EEXIST);
		if (i % 3 == 0)
			metrics_unregister(&twin.node);
	}
	buf = malloc(cap);
	assert_non_null(buf);
	len = metrics_write_prometheus(&m, buf, cap);
	assert_true(len > 0 && (size_t)len < cap);
	/* one TYPE line per family: "fam" never split by "zz" */
	assert_non_null(strstr(buf, "# TYPE fam gauge"));
	assert_null(strstr(strstr(buf, "# TYPE fam gauge") + 1,
			   "# TYPE fam gauge"));
	assert_null(strstr(strstr(buf, "# TYPE zz gauge"), "fam{"));
	free(buf);
	metrics_destroy(&m);
	free(g);
}

static void test_destroy_detaches(void **state)
{
	struct reg_fixture *f = fixture_new(NULL);

	(void)state;
	assert_int_equal(
	    metrics_register_counter(&f->m, &f->c[0], "a", "", NULL), 0);
	assert_int_equal(metrics_register_gauge(&f->m, &f->g[0], "b", "", NULL),
			 0);
	metrics_destroy(&f->m);
	assert_null(f->c[0].node.reg);
	assert_null(f->g[0].node.reg);
	metrics_unregister(&f->c[0].node); /* no-op after destroy */
	/* The metrics keep working and register again elsewhere. */
	metrics_counter_add(&f->c[0], 2);
	assert_int_equal(metrics_counter_get(&f->c[0]), 2);
	assert_int_equal(metrics_init(&f->m, NULL), 0);
	assert_int_equal(
	    metrics_register_counter(&f->m, &f->c[0], "a", "", NULL), 0);
	assert_int_equal(f->m.count, 1);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counter_gauge_threads),
	    cmocka_unit_test(test_bucket_error_bound),
	    cmocka_unit_test(test_latency_vs_model),
	    cmocka_unit_test(test_latency_empty),
	    cmocka_unit_test(test_latency_window_slides),
	    cmocka_unit_test(test_latency_threads),
	    cmocka_unit_test(test_latency_rotation_race),
	    cmocka_unit_test(test_names_and_labels),
	    cmocka_unit_test(test_duplicates),
	    cmocka_unit_test(test_prometheus_text),
	    cmocka_unit_test(test_prometheus_small_buffer),
	    cmocka_unit_test(test_allocation),
	    cmocka_unit_test(test_large_family),
	    cmocka_unit_test(test_destroy_detaches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
