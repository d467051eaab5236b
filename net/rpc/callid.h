/*
 * callid: the correlation id table: a 64-bit id that maps, in O(1), to a
 * call in flight, and hands each call to exactly one completer.
 *
 * The sequence, for one call:
 *
 *   callid_alloc(call)          -> id; the call is LIVE
 *   send attempt k with callid_make_attempt(id, k)   (k = 0 for the first)
 *   ...whichever comes first: a response (any attempt), the deadline
 *   timer, a cancel, the connection failing, callid_drain()...
 *   callid_claim(id)            -> 0 and the call: this caller WON
 *   every other claim           -> -ENOENT, and no pointer
 *   the winner runs the completion (done callback, freeing the call...)
 *   callid_release(id)          -> the slot is free; its version moves on
 *
 * Claim -> run done -> release, in that order: until the release the
 * slot stays claimed, so a late or duplicate response, a timer firing
 * after the response, a cancel after completion all get -ENOENT whether
 * they come before the release (the slot is claimed) or after it (the
 * version no longer matches, even once the slot is reused).
 *
 * Retries: the winner of a claim that decides to retry rather than
 * complete calls callid_unclaim() BEFORE sending the next attempt (else
 * that attempt's response could arrive while the call is still held and
 * be dropped).  unclaim returns 0 (the call is LIVE again) or -EBUSY:
 * someone else claimed while it was held and was told -ENOENT; that event
 * (a timeout, a cancel, a failure) is lost, so the holder keeps the claim
 * and must re-check what it can (deadline, cancel flag) and either
 * complete or unclaim again.  A call is released exactly once however
 * many times it is claimed.
 *
 * States of a slot (one atomic word: version and state):
 *
 *   FREE --alloc--> LIVE --claim--> CLAIMED --release--> FREE, version+1
 *                     ^               |  ^ |
 *                     +---unclaim-----+  | claim (loses, -ENOENT)
 *                                        v |
 *                                   CONTENDED --unclaim (-EBUSY)--> CLAIMED
 *                                        |
 *                                        +--release--> FREE, version+1
 *
 * Id layout (what brpc peers see: a positive int64, echoed verbatim):
 *
 *   63 | 62 ........ 28 | 27 ...... 8 | 7 ....... 0
 *    0 |  version (35)  |  index (20) | attempt + 1 (8)
 *
 * - bit 63 is 0: RpcMeta.correlation_id is an int64; ids stay positive.
 * - attempt + 1, never 0: brpc names attempt k of a call base + k + 1
 *   (spec/brpc-wire.md 1.6) and so do we, with base's low byte 0.  It
 *   also makes 0 impossible as an id.  8 bits give attempts 0..254: brpc's
 *   max_retry defaults to 3 and a backup request is one more attempt; a
 *   retry budget in the hundreds is a misconfiguration, not a need.
 * - index: 20 bits, up to 1,048,576 calls in flight per table; each one
 *   holds a controller and at least one 8 KiB buffer block, so the cap is
 *   8 GiB of calls, beyond any gateway this runs on.
 * - version: the rest, 35 bits.  A stale id matches only if its slot is
 *   recycled exactly 2^35 times before the stale response arrives.  Free
 *   slots are reused FIFO, so a freed slot comes back only after every
 *   other free slot has been handed out; at worst (one free slot) that is
 *   one reuse per call, and even then at 10 million calls per second a
 *   wrap takes 57 minutes, far beyond any deadline or connection
 *   lifetime that could carry the stale response.
 *
 * Concurrency: every call may be made from any thread.  Claim and
 * unclaim are lock-free (one CAS on the slot word); alloc and release
 * also take the free-list mutex, for a few instructions.  The free list
 * is a FIFO ring of indices under that mutex: FIFO rather than a lock-free LIFO
 * stack because a stack hands the hottest slot back at once, turning the
 * version bits into a short timer (see above); a mutex rather than a
 * spinlock because on a 2-core budget a preempted spinlock holder would
 * burn the other core.  Nothing blocks for long; nothing allocates after
 * init.
 *
 * Freed indices are handed out again once CALLID_REUSE_MIN of them
 * wait in the ring; until then a slot never used is taken, so the table
 * touches about (calls in flight + CALLID_REUSE_MIN) slots, not its
 * capacity: a gateway's 10,000 idle instances cost no slot memory.
 *
 * Memory: init makes one zeroed allocation through opt->mem (slots and
 * ring, 20 bytes per slot); destroy frees it.
 */
#ifndef RPCGATE_NET_CALLID_H
#define RPCGATE_NET_CALLID_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"

#define CALLID_ATTEMPT_BITS 8
#define CALLID_INDEX_BITS   20
#define CALLID_VERSION_BITS 35 /* 63 - index - attempt: bit 63 stays 0 */

/* Highest attempt number: the field holds attempt + 1 in 8 bits. */
#define CALLID_ATTEMPT_MAX ((1u << CALLID_ATTEMPT_BITS) - 2)
/* Most slots a table may have: what the index field can name. */
#define CALLID_CAPACITY_MAX (1u << CALLID_INDEX_BITS)
/*
 * Default slots per table: 65,536 calls in flight hold at least 512 MiB
 * of buffers (one 8 KiB block each), more than a gateway VM carries; the
 * table itself costs 1.25 MiB.
 */
#define CALLID_CAPACITY_DEFAULT 65536u
/* Freed indices waiting before one is reused (each index comes back
 * after at least this many others). */
#define CALLID_REUSE_MIN 64u

struct callid_options {
	uint32_t capacity;     /* 1..CALLID_CAPACITY_MAX; rounded up to a
				  power of two */
	const struct mem *mem; /* NULL: mem_default() */
};

/* Private: one per slot; `word` holds version and state. */
struct callid_slot {
	uint64_t word;
	void *call;
};

struct callid_table {
	/* Read-mostly. */
	struct callid_slot *slots;
	uint32_t *ring; /* free indices, FIFO */
	uint32_t capacity;
	uint32_t mask;
	const struct mem *mem;

	/* Free list, under `lock`.  head, tail count forever (mod 2^32). */
	char pad[64];
	pthread_mutex_t lock;
	uint32_t head;	/* next freed index to hand out: ring[head & mask] */
	uint32_t tail;	/* next place to put a freed index */
	uint32_t fresh; /* indices [fresh, capacity) were never handed out */
};

/*
 * Called by callid_drain() for each call it claimed: the function now
 * holds the claim on `id` and must callid_release() it (or unclaim it),
 * now or later, from any thread.
 */
typedef void callid_drain_fn(void *arg, uint64_t id, void *call);

/* Defaults: CALLID_CAPACITY_DEFAULT slots, mem_default(). */
void callid_options_default(struct callid_options *opt);

/* 0, or -EINVAL for a capacity of 0 or above CALLID_CAPACITY_MAX. */
int callid_options_validate(const struct callid_options *opt);

/*
 * Initialises `tab` in caller storage with every slot free.  0, -EINVAL
 * (bad options), -ENOMEM, or the -errno of pthread_mutex_init; on failure
 * nothing is held.
 */
int callid_init(struct callid_table *tab, const struct callid_options *opt);

/*
 * Frees the table.  No call may be live or claimed (drain first); no
 * other thread may still use the table.
 */
void callid_destroy(struct callid_table *tab);

/* Slots after rounding: the most calls that can be in flight at once. */
static inline uint32_t callid_capacity(const struct callid_table *tab)
{
	return tab->capacity;
}

/*
 * Calls in flight (live or claimed, not yet released).  A snapshot: it
 * may be stale by the time it returns while other threads work.
 */
uint32_t callid_live(struct callid_table *tab);

/*
 * Takes a free slot for `call` (opaque; never dereferenced) and stores
 * the call's id (attempt 0) in `*id`: positive, never 0.  0, or -EAGAIN
 * when every slot is in flight (`*id` untouched).  Any thread.
 */
int callid_alloc(struct callid_table *tab, void *call, uint64_t *id);

/*
 * The id of attempt `attempt` of the call `id` (any attempt of it) in
 * `*out`: base + attempt + 1.  0, or -ERANGE if attempt >
 * CALLID_ATTEMPT_MAX.  Pure: no table needed.
 */
int callid_make_attempt(uint64_t id, unsigned attempt, uint64_t *out);

/*
 * Tries to win the call `id` (any attempt of it, e.g. as read from a
 * response).  0: this caller holds the claim, `*call` is the pointer
 * given to alloc; it must release or unclaim.  -ENOENT: the id is not
 * a live call (malformed, unknown, stale, already claimed, or released);
 * nothing changed except, if another caller holds the claim, a mark that
 * makes its next unclaim return -EBUSY.  Lock-free.  Any thread.
 */
int callid_claim(struct callid_table *tab, uint64_t id, void **call);

/* callid_claim(), also giving the attempt number the id names. */
int callid_claim_attempt(struct callid_table *tab, uint64_t id, void **call,
			 unsigned *attempt);

/*
 * Hands a claimed call back (retry: see above).  0: the call is live
 * again.  -EBUSY: another claim came while it was held; the caller still
 * holds it.  -EINVAL: `id` is not claimed (a bug in the caller; nothing
 * changed).  Lock-free.  Any thread, holder only.
 */
int callid_unclaim(struct callid_table *tab, uint64_t id);

/*
 * Ends the call `id`, which the caller holds: the slot's version moves on
 * and the slot goes back to the free list.  Call it after the completion
 * has run and nothing will touch the call through the table again.  0, or
 * -EINVAL if `id` is not claimed (nothing changed).  Takes the
 * free-list mutex briefly; never blocks for long.  Any thread, holder
 * only.
 */
int callid_release(struct callid_table *tab, uint64_t id);

/*
 * Claims every live call and hands each to `fn` (see callid_drain_fn), to
 * fail them all when a channel closes.  Calls claimed by others (before
 * or during the drain) are theirs, not drained: every call is still
 * claimed by exactly one party; a holder of one that unclaims gets
 * -EBUSY, so it learns of the drain.  Calls allocated while the drain
 * runs may be missed: stop allocating first.  Returns the number of
 * calls given to `fn`, which runs on the calling thread.  Lock-free.  Any
 * thread.
 */
size_t callid_drain(struct callid_table *tab, callid_drain_fn *fn, void *arg);

#endif
