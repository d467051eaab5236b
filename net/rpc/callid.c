/*
 * callid: the correlation id table (see callid.h for the sequence, the
 * states and the id layout).
 *
 * A slot's word packs its version above two state bits:
 *
 *   63 ........ 2 | 1 0
 *   version (35)  | state: FREE, LIVE, CLAIMED, CONTENDED
 *
 * Every transition is one CAS on the word that checks the version, so an
 * id whose version is stale can never move a slot, and two parties can
 * never both see themselves win: a claim is the CAS LIVE -> CLAIMED.
 *
 * Orderings: alloc writes `call`, then publishes LIVE with a release
 * store; a claim's successful CAS acquires it before reading `call`.  The
 * holder clears `call` before the CAS that frees the slot, and the index
 * reaches the next alloc through the free-list mutex, which orders that
 * CAS before the next alloc's write of `call`.
 */
#include "callid.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

enum {
	CALLID_FREE = 0,
	CALLID_LIVE = 1,
	CALLID_CLAIMED = 2,
	CALLID_CONTENDED = 3, /* claimed, and someone else tried since */
};

#define STATE_BITS    2
#define STATE_MASK    ((UINT64_C(1) << STATE_BITS) - 1)
#define VERSION_MASK  ((UINT64_C(1) << CALLID_VERSION_BITS) - 1)
#define INDEX_MASK    ((UINT64_C(1) << CALLID_INDEX_BITS) - 1)
#define ATTEMPT_MASK  ((UINT64_C(1) << CALLID_ATTEMPT_BITS) - 1)
#define INDEX_SHIFT   CALLID_ATTEMPT_BITS
#define VERSION_SHIFT (CALLID_ATTEMPT_BITS + CALLID_INDEX_BITS)

_Static_assert(CALLID_VERSION_BITS + CALLID_INDEX_BITS + CALLID_ATTEMPT_BITS ==
		   63,
	       "the id's fields fill 63 bits; bit 63 stays 0 (positive int64)");
_Static_assert(CALLID_CAPACITY_DEFAULT <= CALLID_CAPACITY_MAX &&
		   (CALLID_CAPACITY_DEFAULT & (CALLID_CAPACITY_DEFAULT - 1)) ==
		       0,
	       "the default capacity is a power of two the index can name");

static inline uint64_t word_make(uint64_t version, uint64_t state)
{
	return version << STATE_BITS | state;
}

static inline uint64_t word_version(uint64_t word)
{
	return word >> STATE_BITS;
}

static inline uint64_t word_state(uint64_t word)
{
	return word & STATE_MASK;
}

static inline uint64_t id_make(uint64_t version, uint32_t index,
			       unsigned attempt)
{
	return version << VERSION_SHIFT | (uint64_t)index << INDEX_SHIFT |
	       (attempt + 1);
}

/*
 * Splits a peer-supplied id; false if no table could have issued it
 * (bit 63 set, attempt field 0, index beyond this table).
 */
static bool id_parse(const struct callid_table *tab, uint64_t id,
		     uint64_t *version, uint32_t *index, unsigned *attempt)
{
	uint64_t a = id & ATTEMPT_MASK;
	uint64_t i = id >> INDEX_SHIFT & INDEX_MASK;

	if (id >> 63 || a == 0 || i >= tab->capacity)
		return false;
	*version = id >> VERSION_SHIFT;
	*index = (uint32_t)i;
	*attempt = (unsigned)a - 1;
	return true;
}

void callid_options_default(struct callid_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->capacity = CALLID_CAPACITY_DEFAULT;
	opt->mem = NULL;
}

int callid_options_validate(const struct callid_options *opt)
{
	if (opt->capacity == 0 || opt->capacity > CALLID_CAPACITY_MAX)
		return -EINVAL;
	return 0;
}

static uint32_t round_pow2(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

int callid_init(struct callid_table *tab, const struct callid_options *opt)
{
	size_t slots_size;
	uint32_t n;
	int err;

	err = callid_options_validate(opt);
	if (err)
		return err;

	memset(tab, 0, sizeof(*tab));
	n = round_pow2(opt->capacity);
	tab->capacity = n;
	tab->mask = n - 1;
	tab->mem = mem_or_default(opt->mem);

	/* One block: slots (8-byte aligned) first, then the ring. */
	slots_size = (size_t)n * sizeof(*tab->slots);
	/* Zeroed by the allocator: a large block comes straight from mmap,
	 * so slots never handed out cost no memory. */
	tab->slots =
	    mem_zalloc(tab->mem, slots_size + (size_t)n * sizeof(*tab->ring));
	if (!tab->slots)
		return -ENOMEM;
	tab->ring = (uint32_t *)(void *)((char *)tab->slots + slots_size);

	err = -pthread_mutex_init(&tab->lock, NULL);
	if (err)
		goto out_free_slots;

	/* Version 0, FREE (zeroed); none handed out yet. */
	tab->head = tab->tail = tab->fresh = 0;
	return 0;

out_free_slots:
	mem_free(tab->mem, tab->slots);
	tab->slots = NULL;
	tab->ring = NULL;
	return err;
}

void callid_destroy(struct callid_table *tab)
{
	if (!tab->slots)
		return;
	pthread_mutex_destroy(&tab->lock);
	mem_free(tab->mem, tab->slots);
	tab->slots = NULL;
	tab->ring = NULL;
}

uint32_t callid_live(struct callid_table *tab)
{
	uint32_t free_count;

	pthread_mutex_lock(&tab->lock);
	free_count = tab->tail - tab->head + (tab->capacity - tab->fresh);
	pthread_mutex_unlock(&tab->lock);
	return tab->capacity - free_count;
}

int callid_alloc(struct callid_table *tab, void *call, uint64_t *id)
{
	struct callid_slot *s;
	uint64_t version;
	uint32_t index;

	pthread_mutex_lock(&tab->lock);
	if (tab->fresh < tab->capacity &&
	    tab->tail - tab->head < CALLID_REUSE_MIN) {
		index = tab->fresh++; /* a slot never used */
	} else if (tab->head == tab->tail) {
		pthread_mutex_unlock(&tab->lock);
		return -EAGAIN;
	} else {
		index = tab->ring[tab->head & tab->mask];
		tab->head++;
	}
	pthread_mutex_unlock(&tab->lock);

	/*
	 * The slot is ours alone: FREE and off the list, so no transition
	 * can race with this store (claims of older versions fail on the
	 * version, and nobody holds the one it has).
	 */
	s = &tab->slots[index];
	version = word_version(__atomic_load_n(&s->word, __ATOMIC_RELAXED));
	s->call = call;
	__atomic_store_n(&s->word, word_make(version, CALLID_LIVE),
			 __ATOMIC_RELEASE);
	*id = id_make(version, index, 0);
	return 0;
}

int callid_make_attempt(uint64_t id, unsigned attempt, uint64_t *out)
{
	if (attempt > CALLID_ATTEMPT_MAX)
		return -ERANGE;
	*out = (id & ~ATTEMPT_MASK) + attempt + 1;
	return 0;
}

int callid_claim_attempt(struct callid_table *tab, uint64_t id, void **call,
			 unsigned *attempt)
{
	struct callid_slot *s;
	uint64_t version, word, next;
	uint32_t index;
	unsigned a;

	if (!id_parse(tab, id, &version, &index, &a))
		return -ENOENT;
	s = &tab->slots[index];
	word = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
	for (;;) {
		if (word_version(word) != version)
			return -ENOENT;
		switch (word_state(word)) {
		case CALLID_LIVE:
			next = word_make(version, CALLID_CLAIMED);
			break;
		case CALLID_CLAIMED:
			/* Lost: leave a mark so a retrying holder knows. */
			next = word_make(version, CALLID_CONTENDED);
			break;
		default: /* FREE (never issued at this version), CONTENDED */
			return -ENOENT;
		}
		if (__atomic_compare_exchange_n(&s->word, &word, next, false,
						__ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			break;
		/* `word` now holds what changed under us: judge it again. */
	}
	if (word_state(word) != CALLID_LIVE)
		return -ENOENT;
	*call = s->call;
	if (attempt)
		*attempt = a;
	return 0;
}

int callid_claim(struct callid_table *tab, uint64_t id, void **call)
{
	return callid_claim_attempt(tab, id, call, NULL);
}

int callid_unclaim(struct callid_table *tab, uint64_t id)
{
	struct callid_slot *s;
	uint64_t version, word, claimed, contended;
	uint32_t index;
	unsigned a;

	if (!id_parse(tab, id, &version, &index, &a))
		return -EINVAL;
	s = &tab->slots[index];
	claimed = word_make(version, CALLID_CLAIMED);
	contended = word_make(version, CALLID_CONTENDED);
	word = claimed;
	if (__atomic_compare_exchange_n(&s->word, &word,
					word_make(version, CALLID_LIVE), false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return 0;
	if (word != contended)
		return -EINVAL;
	/*
	 * Only the holder moves a slot out of CONTENDED, so this store
	 * cannot lose a transition; the next contender marks it again.
	 */
	__atomic_store_n(&s->word, claimed, __ATOMIC_RELEASE);
	return -EBUSY;
}

int callid_release(struct callid_table *tab, uint64_t id)
{
	struct callid_slot *s;
	uint64_t version, word, next;
	uint32_t index;
	unsigned a;

	if (!id_parse(tab, id, &version, &index, &a))
		return -EINVAL;
	s = &tab->slots[index];
	word = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
	next = word_make((version + 1) & VERSION_MASK, CALLID_FREE);
	for (;;) {
		if (word_version(word) != version ||
		    (word_state(word) != CALLID_CLAIMED &&
		     word_state(word) != CALLID_CONTENDED))
			return -EINVAL;
		/*
		 * Clearing `call` must come after the check (a bad release
		 * must change nothing); it is ours while we hold the claim,
		 * and a failed CAS below only means CLAIMED -> CONTENDED.
		 */
		s->call = NULL;
		if (__atomic_compare_exchange_n(&s->word, &word, next, false,
						__ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			break;
	}

	pthread_mutex_lock(&tab->lock);
	tab->ring[tab->tail & tab->mask] = index;
	tab->tail++;
	pthread_mutex_unlock(&tab->lock);
	return 0;
}

size_t callid_drain(struct callid_table *tab, callid_drain_fn *fn, void *arg)
{
	uint64_t word, id;
	size_t drained = 0;
	uint32_t i;
	void *call;

	for (i = 0; i < tab->capacity; i++) {
		word = __atomic_load_n(&tab->slots[i].word, __ATOMIC_ACQUIRE);
		if (word_state(word) == CALLID_FREE)
			continue;
		/*
		 * Through the one claim path, held slots included: a holder
		 * that means to unclaim must learn (-EBUSY) that the drain
		 * came by, or the call would outlive its channel.
		 */
		id = id_make(word_version(word), i, 0);
		if (callid_claim(tab, id, &call) != 0)
			continue;
		fn(arg, id, call);
		drained++;
	}
	return drained;
}
