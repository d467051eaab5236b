/*
 * lb: the load balancers (see lb.h).
 */
#include "lb.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* la: what a failed call counts as, and the latency assumed for an
 * instance that has not answered yet when no other has either. */
#define LA_FAIL_US    1000000
#define LA_UNKNOWN_US 1000
/* la: weight of a new sample in the moving average, 1/LA_EWMA_DIV. */
#define LA_EWMA_DIV 8

static const struct {
	const char *name;
	enum lb_kind kind;
} kinds[] = {
    {"rr", LB_RR},	   {"wrr", LB_WRR}, {"wr", LB_WR},
    {"random", LB_RANDOM}, {"la", LB_LA},   {"c_murmurhash", LB_C_MURMURHASH},
    {"c_md5", LB_C_MD5},
};

int lb_kind_parse(const char *name, enum lb_kind *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		if (!strcmp(name, kinds[i].name)) {
			*out = kinds[i].kind;
			return 0;
		}
	return -EINVAL;
}

const char *lb_kind_name(enum lb_kind k)
{
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		if (kinds[i].kind == k)
			return kinds[i].name;
	return "unknown";
}

bool lb_needs_code(enum lb_kind k)
{
	return k == LB_C_MURMURHASH || k == LB_C_MD5;
}

/* ---- hashes --------------------------------------------------------- */

static uint32_t rotl32(uint32_t x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static uint32_t load_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint32_t lb_murmur3_32(const void *p, size_t n, uint32_t seed)
{
	const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
	const uint8_t *b = p;
	uint32_t h = seed, k;
	size_t i;

	for (i = 0; i + 4 <= n; i += 4) {
		k = load_le32(b + i) * c1;
		k = rotl32(k, 15) * c2;
		h ^= k;
		h = rotl32(h, 13) * 5 + 0xe6546b64;
	}
	k = 0;
	switch (n & 3) {
	case 3:
		k ^= (uint32_t)b[i + 2] << 16;
		/* fall through */
	case 2:
		k ^= (uint32_t)b[i + 1] << 8;
		/* fall through */
	case 1:
		k ^= b[i];
		k = rotl32(k * c1, 15) * c2;
		h ^= k;
	}
	h ^= (uint32_t)n;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* MD5 (RFC 1321): its sine-derived constants, computed once. */
static uint32_t md5_k[64];
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;

static void md5_init_k(void)
{
	for (int i = 0; i < 64; i++)
		md5_k[i] =
		    (uint32_t)(fabs(sin((double)(i + 1))) * 4294967296.0);
}

static void md5_block(uint32_t st[4], const uint8_t *blk)
{
	static const int shift[4][4] = {
	    {7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};
	uint32_t a = st[0], b = st[1], c = st[2], d = st[3], w[16];

	for (int i = 0; i < 16; i++)
		w[i] = load_le32(blk + 4 * i);
	for (int i = 0; i < 64; i++) {
		uint32_t f, t;
		int g, r = i / 16;

		switch (r) {
		case 0:
			f = (b & c) | (~b & d);
			g = i;
			break;
		case 1:
			f = (d & b) | (~d & c);
			g = (5 * i + 1) % 16;
			break;
		case 2:
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
			break;
		default:
			f = c ^ (b | ~d);
			g = (7 * i) % 16;
			break;
		}
		t = d;
		d = c;
		c = b;
		b = b + rotl32(a + f + md5_k[i] + w[g], shift[r][i % 4]);
		a = t;
	}
	st[0] += a;
	st[1] += b;
	st[2] += c;
	st[3] += d;
}

void lb_md5(const void *p, size_t n, uint8_t out[16])
{
	uint32_t st[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
	const uint8_t *b = p;
	uint8_t tail[128] = {0};
	uint64_t bits = (uint64_t)n * 8;
	size_t full = n & ~(size_t)63, rest = n - full, tn;

	pthread_once(&md5_once, md5_init_k);
	for (size_t i = 0; i < full; i += 64)
		md5_block(st, b + i);
	memcpy(tail, b + full, rest);
	tail[rest] = 0x80;
	tn = rest + 1 + 8 <= 64 ? 64 : 128;
	for (int i = 0; i < 8; i++)
		tail[tn - 8 + i] = (uint8_t)(bits >> (8 * i));
	for (size_t i = 0; i < tn; i += 64)
		md5_block(st, tail + i);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			out[4 * i + j] = (uint8_t)(st[i] >> (8 * j));
}

/* ---- set-up --------------------------------------------------------- */

void lb_init(struct lb *lb, enum lb_kind kind, const struct mem *mem,
	     uint64_t seed)
{
	memset(lb, 0, sizeof(*lb));
	lb->kind = kind;
	lb->mem = mem_or_default(mem);
	lb->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

void lb_destroy(struct lb *lb)
{
	mem_free(lb->mem, lb->ring);
	lb->ring = NULL;
	lb->nring = 0;
	lb->s = NULL;
	lb->n = 0;
}

static int point_cmp(const void *a, const void *b)
{
	const struct lb_point *x = a, *y = b;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The ring's points of server i: LB_REPLICAS hashes of "key-r". */
static void ring_points(enum lb_kind kind, const char *key, uint32_t idx,
			struct lb_point *out)
{
	char buf[256];
	uint8_t md[16];
	int len;

	if (kind == LB_C_MURMURHASH) {
		for (int r = 0; r < LB_REPLICAS; r++) {
			len = snprintf(buf, sizeof(buf), "%s-%d", key, r);
			out[r].hash = lb_murmur3_32(buf, (size_t)len, 0);
			out[r].idx = idx;
		}
		return;
	}
	/* MD5: four points out of each digest, as ketama does. */
	for (int r = 0; r < LB_REPLICAS / 4; r++) {
		len = snprintf(buf, sizeof(buf), "%s-%d", key, r);
		lb_md5(buf, (size_t)len, md);
		for (int j = 0; j < 4; j++) {
			out[4 * r + j].hash = load_le32(md + 4 * j);
			out[4 * r + j].idx = idx;
		}
	}
}

int lb_set_servers(struct lb *lb, struct lb_server *const *s, size_t n)
{
	struct lb_point *ring = NULL;

	if (lb_needs_code(lb->kind) && n) {
		ring = mem_alloc(lb->mem, n * LB_REPLICAS * sizeof(*ring));
		if (!ring)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			ring_points(lb->kind, s[i]->key, (uint32_t)i,
				    ring + i * LB_REPLICAS);
		qsort(ring, n * LB_REPLICAS, sizeof(*ring), point_cmp);
	}
	mem_free(lb->mem, lb->ring);
	lb->ring = ring;
	lb->nring = ring ? n * LB_REPLICAS : 0;
	lb->s = s;
	lb->n = n;
	for (size_t i = 0; i < n; i++)
		s[i]->cur = 0;
	return 0;
}

/* ---- choosing ------------------------------------------------------- */

static uint64_t next_rand(struct lb *lb)
{
	uint64_t x = lb->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	lb->rng = x;
	return x;
}

static bool can_use(const struct lb *lb, const bool *skip, size_t i)
{
	if (!lb->s[i]->usable || (skip && skip[i]))
		return false;
	if ((lb->kind == LB_WRR || lb->kind == LB_WR) && !lb->s[i]->weight)
		return false;
	return true;
}

/* The first usable instance from `start` on, wrapping. */
static int scan_from(const struct lb *lb, const bool *skip, size_t start)
{
	for (size_t k = 0; k < lb->n; k++) {
		size_t i = (start + k) % lb->n;

		if (can_use(lb, skip, i))
			return (int)i;
	}
	return -EHOSTDOWN;
}

/* Smooth weighted round robin: every usable one gains its weight, the
 * richest is chosen and pays the total. */
static int pick_wrr(struct lb *lb, const bool *skip)
{
	int64_t total = 0;
	int best = -EHOSTDOWN;

	for (size_t i = 0; i < lb->n; i++) {
		struct lb_server *s = lb->s[i];

		if (!can_use(lb, skip, i))
			continue;
		s->cur += s->weight;
		total += s->weight;
		if (best < 0 || s->cur > lb->s[best]->cur)
			best = (int)i;
	}
	if (best >= 0)
		lb->s[best]->cur -= total;
	return best;
}

/* la's weight of server s: inverse of latency times load. */
static double la_weight(const struct lb_server *s, int64_t default_us)
{
	int64_t lat = s->lat_us > 0 ? s->lat_us : default_us;

	return 1e9 / ((double)lat * (double)(s->inflight + 1));
}

/* Random, each usable one with probability weight / total. */
static int pick_weighted(struct lb *lb, const bool *skip)
{
	double total = 0, x;
	int64_t known = 0, sum = 0, def;
	int last = -EHOSTDOWN;

	if (lb->kind == LB_LA) {
		/* An instance not measured yet is assumed average. */
		for (size_t i = 0; i < lb->n; i++)
			if (lb->s[i]->lat_us > 0) {
				sum += lb->s[i]->lat_us;
				known++;
			}
	}
	def = known ? sum / known : LA_UNKNOWN_US;
	for (size_t i = 0; i < lb->n; i++)
		if (can_use(lb, skip, i))
			total += lb->kind == LB_LA ? la_weight(lb->s[i], def)
						   : (double)lb->s[i]->weight;
	if (total <= 0)
		return -EHOSTDOWN;
	x = (double)(next_rand(lb) >> 11) / 9007199254740992.0 * total;
	for (size_t i = 0; i < lb->n; i++) {
		double w;

		if (!can_use(lb, skip, i))
			continue;
		w = lb->kind == LB_LA ? la_weight(lb->s[i], def)
				      : (double)lb->s[i]->weight;
		last = (int)i;
		if (x < w)
			return (int)i;
		x -= w;
	}
	return last; /* rounding left x a hair above the last weight */
}

static uint32_t code_hash(enum lb_kind kind, uint64_t code)
{
	uint8_t b[8], md[16];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(code >> (8 * i));
	if (kind == LB_C_MURMURHASH)
		return lb_murmur3_32(b, sizeof(b), 0);
	lb_md5(b, sizeof(b), md);
	return load_le32(md);
}

/* The first point at or after the code's hash, then on round the ring
 * past instances that cannot take the call. */
static int pick_ring(struct lb *lb, const bool *skip, uint64_t code)
{
	uint32_t h = code_hash(lb->kind, code);
	size_t lo = 0, hi = lb->nring;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (lb->ring[mid].hash < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t k = 0; k < lb->nring; k++) {
		uint32_t i = lb->ring[(lo + k) % lb->nring].idx;

		if (can_use(lb, skip, i))
			return (int)i;
	}
	return -EHOSTDOWN;
}

int lb_select(struct lb *lb, const bool *skip, bool has_code, uint64_t code)
{
	if (lb_needs_code(lb->kind) && !has_code)
		return -EINVAL;
	if (!lb->n)
		return -EHOSTDOWN;
	switch (lb->kind) {
	case LB_RR:
		return scan_from(lb, skip, (size_t)(lb->next++ % lb->n));
	case LB_RANDOM:
		return scan_from(lb, skip, (size_t)(next_rand(lb) % lb->n));
	case LB_WRR:
		return pick_wrr(lb, skip);
	case LB_WR:
	case LB_LA:
		return pick_weighted(lb, skip);
	case LB_C_MURMURHASH:
	case LB_C_MD5:
		return pick_ring(lb, skip, code);
	}
	return -EHOSTDOWN;
}

void lb_server_begin(struct lb_server *s)
{
	s->inflight++;
}

void lb_server_end(struct lb_server *s, int64_t latency_us, bool failed)
{
	int64_t sample =
	    failed ? LA_FAIL_US : (latency_us > 0 ? latency_us : 1);

	if (s->inflight)
		s->inflight--;
	s->lat_us = s->lat_us > 0
			? s->lat_us + (sample - s->lat_us) / LA_EWMA_DIV
			: sample;
}
