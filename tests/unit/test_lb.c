/*
 * lb tests: the hashes against known answers; each balancer's spread
 * against its weights; health and skip masks; consistent hashing's
 * stability when an instance leaves; la's preference for fast, idle
 * instances.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/lb.h"

#define TEST_TIMEOUT_S 60
#include "testutil.h"

#define NSRV 5

struct fixture {
	struct lb_server s[NSRV];
	struct lb_server *p[NSRV];
	char keys[NSRV][48];
	struct lb lb;
};

static void fx_init(struct fixture *f, enum lb_kind kind, size_t n,
		    const uint32_t *weights)
{
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < n; i++) {
		snprintf(f->keys[i], sizeof(f->keys[i]), "10.0.0.%zu:8000",
			 i + 1);
		f->s[i].key = f->keys[i];
		f->s[i].weight = weights ? weights[i] : 1;
		f->s[i].usable = true;
		f->p[i] = &f->s[i];
	}
	lb_init(&f->lb, kind, NULL, 12345);
	assert_int_equal(lb_set_servers(&f->lb, f->p, n), 0);
}

static void count_picks(struct fixture *f, int calls, unsigned *hits)
{
	for (int k = 0; k < calls; k++) {
		int i = lb_select(&f->lb, NULL, false, 0);

		assert_true(i >= 0 && i < NSRV);
		hits[i]++;
	}
}

static void test_hash_vectors(void **state)
{
	uint8_t md[16];
	char hex[33];

	(void)state;
	assert_int_equal(lb_murmur3_32("", 0, 0), 0);
	assert_int_equal(lb_murmur3_32("", 0, 1), 0x514e28b7u);
	assert_int_equal(lb_murmur3_32("hello", 5, 0), 0x248bfa47u);
	assert_int_equal(lb_murmur3_32("The quick brown fox jumps over the "
				       "lazy dog",
				       43, 0),
			 0x2e4ff723u);
	/* RFC 1321's test suite, short and multi-block inputs. */
	static const struct {
		const char *in, *out;
	} md5v[] = {
	    {"", "d41d8cd98f00b204e9800998ecf8427e"},
	    {"abc", "900150983cd24fb0d6963f7d28e17f72"},
	    {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
	    {"12345678901234567890123456789012345678901234567890123456789012"
	     "345678901234567890",
	     "57edf4a22be3c955ac49da2e2107b67a"},
	};
	for (size_t v = 0; v < sizeof(md5v) / sizeof(md5v[0]); v++) {
		lb_md5(md5v[v].in, strlen(md5v[v].in), md);
		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		assert_string_equal(hex, md5v[v].out);
	}
}

static void test_names(void **state)
{
	enum lb_kind k;

	(void)state;
	for (int i = LB_RR; i <= LB_C_MD5; i++) {
		assert_int_equal(lb_kind_parse(lb_kind_name(i), &k), 0);
		assert_int_equal(k, i);
	}
	assert_int_equal(lb_kind_parse("round_robin", &k), -EINVAL);
	assert_true(lb_needs_code(LB_C_MD5));
	assert_false(lb_needs_code(LB_LA));
}

static void test_rr_even_and_skips_unusable(void **state)
{
	struct fixture f;
	unsigned hits[NSRV] = {0};
	bool skip[NSRV] = {false};

	(void)state;
	fx_init(&f, LB_RR, NSRV, NULL);
	count_picks(&f, 5000, hits);
	for (int i = 0; i < NSRV; i++)
		assert_int_equal(hits[i], 1000);
	f.s[2].usable = false;
	memset(hits, 0, sizeof(hits));
	count_picks(&f, 4000, hits);
	assert_int_equal(hits[2], 0);
	/* A skipped one is passed over; all passed over: none. */
	skip[0] = skip[1] = skip[3] = true;
	assert_int_equal(lb_select(&f.lb, skip, false, 0), 4);
	skip[4] = true;
	assert_int_equal(lb_select(&f.lb, skip, false, 0), -EHOSTDOWN);
	lb_destroy(&f.lb);
}

static void test_wrr_exact_weights(void **state)
{
	static const uint32_t w[NSRV] = {1, 2, 3, 4, 0};
	struct fixture f;
	unsigned hits[NSRV] = {0};
	int run = 0, prev = -1, longest = 0;

	(void)state;
	fx_init(&f, LB_WRR, NSRV, w);
	/* 10 is the sum: every 1000 rounds give exactly the weights, and
	 * smoothly: never 4 of the same in a row. */
	for (int k = 0; k < 10000; k++) {
		int i = lb_select(&f.lb, NULL, false, 0);

		assert_true(i >= 0 && i < NSRV - 1);
		hits[i]++;
		run = i == prev ? run + 1 : 1;
		prev = i;
		if (run > longest)
			longest = run;
	}
	for (int i = 0; i < NSRV; i++)
		assert_int_equal(hits[i], 1000 * w[i]);
	assert_true(longest <= 2);
	lb_destroy(&f.lb);
}

static void test_random_and_wr_within_tolerance(void **state)
{
	static const uint32_t w[NSRV] = {1, 1, 2, 4, 8};
	struct fixture f;
	unsigned hits[NSRV] = {0};
	const int calls = 64000;

	(void)state;
	fx_init(&f, LB_RANDOM, NSRV, NULL);
	count_picks(&f, calls, hits);
	for (int i = 0; i < NSRV; i++)
		assert_in_range(hits[i], calls / NSRV * 90 / 100,
				calls / NSRV * 110 / 100);
	lb_destroy(&f.lb);

	memset(hits, 0, sizeof(hits));
	fx_init(&f, LB_WR, NSRV, w);
	count_picks(&f, calls, hits);
	for (int i = 0; i < NSRV; i++) {
		unsigned want = calls / 16 * w[i];

		assert_in_range(hits[i], want * 85 / 100, want * 115 / 100);
	}
	lb_destroy(&f.lb);
}

static void test_la_prefers_fast_and_idle(void **state)
{
	struct fixture f;
	unsigned hits[NSRV] = {0};

	(void)state;
	fx_init(&f, LB_LA, 3, NULL);
	/* Instance 0 answers in 1 ms, 1 in 10 ms, 2 fails. */
	for (int k = 0; k < 50; k++) {
		lb_server_begin(&f.s[0]);
		lb_server_end(&f.s[0], 1000, false);
		lb_server_begin(&f.s[1]);
		lb_server_end(&f.s[1], 10000, false);
		lb_server_begin(&f.s[2]);
		lb_server_end(&f.s[2], 500, true);
	}
	for (int k = 0; k < 10000; k++)
		hits[lb_select(&f.lb, NULL, false, 0)]++;
	assert_true(hits[0] > 8 * hits[1]);
	assert_true(hits[1] > hits[2]);
	/* Load counts too: 0 with 20 calls in flight loses its lead. */
	memset(hits, 0, sizeof(hits));
	for (int k = 0; k < 20; k++)
		lb_server_begin(&f.s[0]);
	for (int k = 0; k < 10000; k++)
		hits[lb_select(&f.lb, NULL, false, 0)]++;
	assert_true(hits[1] > hits[0]);
	lb_destroy(&f.lb);
}

/* Codes 0..N-1 mapped with all instances, then without `gone`: only the
 * codes `gone` held move, and they are about 1/n of all. */
static void ring_stability(enum lb_kind kind)
{
	enum { CODES = 20000 };
	static int before[CODES];
	struct fixture f;
	int moved = 0, held = 0;
	const int gone = 3;
	unsigned hits[NSRV] = {0};

	fx_init(&f, kind, NSRV, NULL);
	assert_int_equal(lb_select(&f.lb, NULL, false, 0), -EINVAL);
	for (int c = 0; c < CODES; c++) {
		before[c] = lb_select(&f.lb, NULL, true, (uint64_t)c * 7919);
		assert_true(before[c] >= 0);
		hits[before[c]]++;
		held += before[c] == gone;
	}
	/* 100 points each: shares within a factor of 2 of the mean. */
	for (int i = 0; i < NSRV; i++)
		assert_in_range(hits[i], CODES / NSRV / 2, CODES / NSRV * 2);
	f.s[gone].usable = false;
	for (int c = 0; c < CODES; c++) {
		int now = lb_select(&f.lb, NULL, true, (uint64_t)c * 7919);

		assert_int_not_equal(now, gone);
		if (now != before[c]) {
			assert_int_equal(before[c], gone);
			moved++;
		}
	}
	assert_int_equal(moved, held);
	assert_in_range(moved, CODES / NSRV / 2, CODES / NSRV * 2);
	/* Same code, same instance, every time. */
	f.s[gone].usable = true;
	for (int c = 0; c < 100; c++)
		assert_int_equal(
		    lb_select(&f.lb, NULL, true, (uint64_t)c * 7919),
		    before[c]);
	lb_destroy(&f.lb);
}

static void test_consistent_hashing(void **state)
{
	(void)state;
	ring_stability(LB_C_MURMURHASH);
	ring_stability(LB_C_MD5);
}

static void test_empty_and_weightless(void **state)
{
	struct fixture f;
	static const uint32_t zero[2] = {0, 0};

	(void)state;
	fx_init(&f, LB_RR, 0, NULL);
	assert_int_equal(lb_select(&f.lb, NULL, false, 0), -EHOSTDOWN);
	lb_destroy(&f.lb);
	fx_init(&f, LB_WRR, 2, zero);
	assert_int_equal(lb_select(&f.lb, NULL, false, 0), -EHOSTDOWN);
	lb_destroy(&f.lb);
	fx_init(&f, LB_WR, 2, zero);
	assert_int_equal(lb_select(&f.lb, NULL, false, 0), -EHOSTDOWN);
	lb_destroy(&f.lb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_hash_vectors),
	    TEST_BOUNDED(test_names),
	    TEST_BOUNDED(test_rr_even_and_skips_unusable),
	    TEST_BOUNDED(test_wrr_exact_weights),
	    TEST_BOUNDED(test_random_and_wr_within_tolerance),
	    TEST_BOUNDED(test_la_prefers_fast_and_idle),
	    TEST_BOUNDED(test_consistent_hashing),
	    TEST_BOUNDED(test_empty_and_weightless),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
