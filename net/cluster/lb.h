/*
 * lb: load balancers, as brpc names them, over a cluster's instances.
 *
 *   rr            round robin over the usable instances
 *   wrr           weighted round robin (smooth: a weight-5 instance
 *                 gets 5 calls of every sum-of-weights, spread out)
 *   wr            weighted random
 *   random        uniform random
 *   la            locality-aware: random, weighted by 1 / (latency *
 *                 (calls in flight + 1)), so fast idle instances get
 *                 more and a slow or loaded one less
 *   c_murmurhash  consistent hashing of a request code (MurmurHash3
 *   c_md5         x86_32, or MD5) on a ring of LB_REPLICAS points per
 *                 instance: when one of N leaves, about 1/N of the codes
 *                 move, and only those it held
 *
 * Weights (wrr, wr) come from the instances' tags, as brpc's: a tag that
 * is not a positive integer makes the instance unusable for them.
 *
 * The caller owns the servers (struct lb_server, one per instance, kept
 * across naming changes so that la's figures survive) and marks them
 * usable or not (health); lb only chooses.  Not thread-safe: one thread
 * (the cluster's loop) selects and reports.
 */
#ifndef RPCGATE_NET_LB_H
#define RPCGATE_NET_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"

enum lb_kind {
	LB_RR,
	LB_WRR,
	LB_WR,
	LB_RANDOM,
	LB_LA,
	LB_C_MURMURHASH,
	LB_C_MD5,
};

/* Points per instance on a consistent-hashing ring (brpc's default). */
#define LB_REPLICAS 100
/* wrr/wr weights above this are refused (sums stay far from overflow). */
#define LB_WEIGHT_MAX 100000

struct lb_server {
	const char *key; /* identity on the ring ("addr" or "addr tag") */
	uint32_t weight; /* wrr, wr: from the tag; 0: unusable for them */
	bool usable;	 /* the caller's: healthy, not isolated */
	/* la, kept by lb_feedback() */
	int64_t lat_us; /* moving average; 0: no answer yet */
	uint32_t inflight;
	/* wrr's running weight */
	int64_t cur;
};

struct lb_point {
	uint32_t hash;
	uint32_t idx;
};

struct lb {
	enum lb_kind kind;
	const struct mem *mem;
	struct lb_server *const *s;
	size_t n;
	uint64_t next; /* rr */
	uint64_t rng;  /* xorshift state */
	struct lb_point *ring;
	size_t nring;
};

/* "rr", "wrr", ... <-> enum; -EINVAL for other text. */
int lb_kind_parse(const char *name, enum lb_kind *out);
const char *lb_kind_name(enum lb_kind k);
/* Whether the balancer needs a request code (consistent hashing). */
bool lb_needs_code(enum lb_kind k);

void lb_init(struct lb *lb, enum lb_kind kind, const struct mem *mem,
	     uint64_t seed);
void lb_destroy(struct lb *lb);

/*
 * The instances from now on: s[0..n) (caller storage, kept until the
 * next call or lb_destroy; each's key and weight set).  Builds the ring
 * for consistent hashing.  0 or -ENOMEM (the previous set stays).
 */
int lb_set_servers(struct lb *lb, struct lb_server *const *s, size_t n);

/*
 * Chooses a usable instance not marked in `skip` (skip[i] true: already
 * tried by this call; NULL: none).  `code` is the request code for
 * consistent hashing (has_code false: -EINVAL there).  Returns its index,
 * or -EHOSTDOWN when none qualifies.
 */
int lb_select(struct lb *lb, const bool *skip, bool has_code, uint64_t code);

/* A call sent to server s (la counts it in flight).  By pointer: the
 * call may end after s left the set. */
void lb_server_begin(struct lb_server *s);
/* That call ended after latency_us; a failed one counts as slow. */
void lb_server_end(struct lb_server *s, int64_t latency_us, bool failed);

/* The hashes, exposed for tests (known vectors). */
uint32_t lb_murmur3_32(const void *p, size_t n, uint32_t seed);
void lb_md5(const void *p, size_t n, uint8_t out[16]);

#endif
