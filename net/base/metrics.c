/*
 * metrics: counters, gauges, latency recorders and their Prometheus text
 * (see metrics.h).
 *
 * Latency histogram.  Bucket i covers [lo(i), lo(i) + width(i)):
 *
 *   v < LINEAR (64)        bucket v, width 1 (exact)
 *   2^e <= v < 2^(e+1)     e >= 6: 32 buckets of width 2^(e-5), so
 *                          width / lo <= 1/32
 *
 * giving LINEAR + 26 * 32 = 896 buckets up to 2^32 us.  A quantile is
 * reported as the middle of the bucket holding the nearest-rank sample,
 * off by at most (width - 1) / 2, i.e. 1/64 of the true value.
 *
 * Sliding window.  Slot `ep % SLOTS` holds the samples of epoch
 * ep = now / SLOT_NS.  The first writer of a newer epoch claims the slot
 * by moving its epoch to LAT_EPOCH_BUSY, clears it and publishes the new
 * epoch with release order; other writers wait for that.  Readers copy a
 * slot between two reads of its epoch and drop the copy if it moved.  A
 * writer stalled for a whole window between its epoch check and its adds
 * may see its sample wiped or counted in a later window; the cumulative
 * totals always keep it.
 */
#include "metrics.h"

#include "clock.h"
#include "util.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Slot epochs below 0: never written, and being cleared. */
#define LAT_EPOCH_EMPTY (-1)
#define LAT_EPOCH_BUSY	(-2)
/* Spins on a busy slot before yielding: a clear is ~1 us of stores. */
#define LAT_SPINS 64
/* Quantiles in thousandths, as exported. */
#define LAT_Q_SCALE 1000
/* Room for a latency family's longest suffix, "_count". */
#define SUFFIX_MAX 8
/* Decimal of a 64-bit integer with sign and NUL. */
#define NUM_MAX 24

_Static_assert(METRICS_LAT_BUCKETS == 896, "bucket layout changed");

/* ---- counters and gauges ---- */

static void node_init(struct metrics_node *n, enum metrics_kind kind)
{
	memset(n, 0, sizeof(*n));
	n->kind = kind;
}

void metrics_counter_init(struct metrics_counter *c)
{
	node_init(&c->node, METRICS_COUNTER);
	c->value = 0;
}

void metrics_counter_add(struct metrics_counter *c, uint64_t n)
{
	__atomic_fetch_add(&c->value, n, __ATOMIC_RELAXED);
}

uint64_t metrics_counter_get(const struct metrics_counter *c)
{
	return __atomic_load_n(&c->value, __ATOMIC_RELAXED);
}

void metrics_gauge_init(struct metrics_gauge *g)
{
	node_init(&g->node, METRICS_GAUGE);
	g->value = 0;
}

void metrics_gauge_set(struct metrics_gauge *g, int64_t v)
{
	__atomic_store_n(&g->value, v, __ATOMIC_RELAXED);
}

void metrics_gauge_add(struct metrics_gauge *g, int64_t delta)
{
	__atomic_fetch_add(&g->value, delta, __ATOMIC_RELAXED);
}

int64_t metrics_gauge_get(const struct metrics_gauge *g)
{
	return __atomic_load_n(&g->value, __ATOMIC_RELAXED);
}

/* ---- latency ---- */

static unsigned lat_bucket(uint64_t v)
{
	unsigned e;

	if (v < METRICS_LAT_LINEAR)
		return (unsigned)v;
	if (v >= METRICS_LAT_RANGE_US)
		v = METRICS_LAT_RANGE_US - 1;
	e = 63 - (unsigned)__builtin_clzll(v);
	return METRICS_LAT_LINEAR +
	       (e - METRICS_LAT_SUB_BITS - 1) * METRICS_LAT_SUB +
	       (unsigned)((v >> (e - METRICS_LAT_SUB_BITS)) &
			  (METRICS_LAT_SUB - 1));
}

/* Lower bound and width of bucket i. */
static void lat_bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
	unsigned oct, sub;

	if (i < METRICS_LAT_LINEAR) {
		*lo = i;
		*width = 1;
		return;
	}
	oct = (i - METRICS_LAT_LINEAR) / METRICS_LAT_SUB + 1;
	sub = (i - METRICS_LAT_LINEAR) % METRICS_LAT_SUB;
	*lo = (uint64_t)(METRICS_LAT_SUB + sub) << oct;
	*width = 1ULL << oct;
}

void metrics_latency_init(struct metrics_latency *l)
{
	size_t i;

	memset(l, 0, sizeof(*l));
	node_init(&l->node, METRICS_LATENCY);
	for (i = 0; i < METRICS_LAT_SLOTS; i++)
		l->slot[i].epoch = LAT_EPOCH_EMPTY;
}

static int64_t lat_epoch(int64_t now_ns)
{
	return now_ns > 0 ? now_ns / METRICS_LAT_SLOT_NS : 0;
}

static void lat_slot_clear(struct metrics_lat_slot *s)
{
	size_t i;

	/* Atomic stores: a stalled writer may still add (see the top). */
	__atomic_store_n(&s->sum, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->max, 0, __ATOMIC_RELAXED);
	for (i = 0; i < METRICS_LAT_BUCKETS; i++)
		__atomic_store_n(&s->bucket[i], 0, __ATOMIC_RELAXED);
}

/* Makes `s` hold epoch `ep` (or a newer one) and returns. */
static void lat_slot_enter(struct metrics_lat_slot *s, int64_t ep)
{
	int64_t cur;
	unsigned spins = 0;

	for (;;) {
		cur = __atomic_load_n(&s->epoch, __ATOMIC_ACQUIRE);
		if (cur >= ep)
			return; /* current, or newer: count it there */
		if (cur == LAT_EPOCH_BUSY) {
			if (++spins % LAT_SPINS == 0)
				sched_yield();
			continue;
		}
		if (__atomic_compare_exchange_n(&s->epoch, &cur, LAT_EPOCH_BUSY,
						false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED)) {
			lat_slot_clear(s);
			__atomic_store_n(&s->epoch, ep, __ATOMIC_RELEASE);
			return;
		}
	}
}

void metrics_latency_record_at(struct metrics_latency *l, uint64_t us,
			       int64_t now_ns)
{
	int64_t ep = lat_epoch(now_ns);
	struct metrics_lat_slot *s = &l->slot[ep % METRICS_LAT_SLOTS];
	uint64_t max;

	lat_slot_enter(s, ep);
	__atomic_fetch_add(&s->bucket[lat_bucket(us)], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->sum, us, __ATOMIC_RELAXED);
	max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
	while (us > max &&
	       !__atomic_compare_exchange_n(&s->max, &max, us, true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	__atomic_fetch_add(&l->total_count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&l->total_sum, us, __ATOMIC_RELAXED);
}

void metrics_latency_record(struct metrics_latency *l, uint64_t us)
{
	metrics_latency_record_at(l, us, clock_mono_ns());
}

/*
 * Adds slot `s` into `merged` if it belongs to the window ending at `ep`
 * and did not move while being copied.
 */
static void lat_slot_merge(const struct metrics_lat_slot *s, int64_t ep,
			   uint64_t *merged, struct metrics_latency_stats *st)
{
	uint32_t snap[METRICS_LAT_BUCKETS];
	uint64_t sum, max;
	int64_t e1, e2;
	size_t i;

	e1 = __atomic_load_n(&s->epoch, __ATOMIC_ACQUIRE);
	if (e1 < 0 || e1 <= ep - METRICS_LAT_SLOTS)
		return;
	/*
	 * Acquire loads keep the second epoch read after them (a fence would
	 * do, but ThreadSanitizer does not model fences); free on x86.
	 */
	for (i = 0; i < METRICS_LAT_BUCKETS; i++)
		snap[i] = __atomic_load_n(&s->bucket[i], __ATOMIC_ACQUIRE);
	sum = __atomic_load_n(&s->sum, __ATOMIC_ACQUIRE);
	max = __atomic_load_n(&s->max, __ATOMIC_ACQUIRE);
	e2 = __atomic_load_n(&s->epoch, __ATOMIC_RELAXED);
	if (e2 != e1)
		return; /* reused for a newer epoch meanwhile: not ours */
	for (i = 0; i < METRICS_LAT_BUCKETS; i++) {
		merged[i] += snap[i];
		st->count += snap[i];
	}
	st->sum += sum;
	if (max > st->max)
		st->max = max;
}

/* Max over the window ending at `ep`, without the histogram copy. */
static uint64_t lat_window_max(const struct metrics_latency *l, int64_t ep)
{
	const struct metrics_lat_slot *s;
	uint64_t max = 0, v;
	int64_t e1;
	size_t i;

	for (i = 0; i < METRICS_LAT_SLOTS; i++) {
		s = &l->slot[i];
		e1 = __atomic_load_n(&s->epoch, __ATOMIC_ACQUIRE);
		if (e1 < 0 || e1 <= ep - METRICS_LAT_SLOTS)
			continue;
		v = __atomic_load_n(&s->max, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&s->epoch, __ATOMIC_RELAXED) == e1 &&
		    v > max)
			max = v;
	}
	return max;
}

/* Nearest-rank quantile q/LAT_Q_SCALE of `count` samples in `merged`. */
static uint64_t lat_quantile(const uint64_t *merged, uint64_t count,
			     uint64_t max, unsigned q)
{
	uint64_t rank = (count * q + LAT_Q_SCALE - 1) / LAT_Q_SCALE;
	uint64_t seen = 0, lo, width, mid;
	unsigned i;

	if (!count)
		return 0;
	if (!rank)
		rank = 1;
	for (i = 0; i < METRICS_LAT_BUCKETS; i++) {
		seen += merged[i];
		if (seen >= rank)
			break;
	}
	lat_bucket_range(i, &lo, &width);
	mid = lo + (width - 1) / 2;
	return mid < max ? mid : max;
}

void metrics_latency_stats_at(const struct metrics_latency *l, int64_t now_ns,
			      struct metrics_latency_stats *out)
{
	uint64_t merged[METRICS_LAT_BUCKETS] = {0};
	int64_t ep = lat_epoch(now_ns);
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < METRICS_LAT_SLOTS; i++)
		lat_slot_merge(&l->slot[i], ep, merged, out);
	if (out->count)
		out->avg = out->sum / out->count;
	out->p50 = lat_quantile(merged, out->count, out->max, 500);
	out->p90 = lat_quantile(merged, out->count, out->max, 900);
	out->p99 = lat_quantile(merged, out->count, out->max, 990);
	out->p999 = lat_quantile(merged, out->count, out->max, 999);
	out->total_count = __atomic_load_n(&l->total_count, __ATOMIC_RELAXED);
	out->total_sum = __atomic_load_n(&l->total_sum, __ATOMIC_RELAXED);
}

/* ---- registry ---- */

void metrics_options_default(struct metrics_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->mem = NULL;
}

int metrics_init(struct metrics *m, const struct metrics_options *opt)
{
	int err;

	memset(m, 0, sizeof(*m));
	if (opt)
		m->opt = *opt;
	else
		metrics_options_default(&m->opt);
	m->opt.mem = mem_or_default(m->opt.mem);
	err = pthread_mutex_init(&m->lock, NULL);
	if (err)
		return -err;
	m->head.next = &m->head;
	m->head.prev = &m->head;
	return 0;
}

static struct metrics_node *node_of(struct metrics_link *l)
{
	return container_of(l, struct metrics_node, link);
}

static void link_insert_after(struct metrics_link *pos, struct metrics_link *l)
{
	l->prev = pos;
	l->next = pos->next;
	pos->next->prev = l;
	pos->next = l;
}

static void link_remove(struct metrics_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->next = l->prev = NULL;
}

void metrics_destroy(struct metrics *m)
{
	struct metrics_link *l;

	while ((l = m->head.next) != &m->head) {
		node_of(l)->reg = NULL;
		link_remove(l);
	}
	m->count = 0;
	for (size_t i = 0; i < m->nfam; i++)
		mem_free(m->opt.mem, m->fam[i].slot);
	mem_free(m->opt.mem, m->fam);
	m->fam = NULL;
	m->nfam = m->capfam = 0;
	pthread_mutex_destroy(&m->lock);
}

static bool is_alpha_(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static bool name_valid(const char *s)
{
	if (!is_alpha_(*s) && *s != ':')
		return false;
	while (*++s)
		if (!is_alpha_(*s) && !is_digit(*s) && *s != ':')
			return false;
	return true;
}

/*
 * `a="x",b="y"`: label names [a-zA-Z_][a-zA-Z0-9_]*, not "__"-prefixed
 * (reserved), not repeated, not "quantile" when `no_quantile`; values
 * with only \\, \" and \n escapes.
 */
static bool labels_valid(const char *s, bool no_quantile)
{
	const char *names[METRICS_LABELS_MAX / 4 + 1];
	size_t lens[METRICS_LABELS_MAX / 4 + 1];
	size_t n = 0, len, i;
	const char *name;

	for (;;) {
		name = s;
		if (!is_alpha_(*s) || (s[0] == '_' && s[1] == '_'))
			return false;
		while (is_alpha_(*s) || is_digit(*s))
			s++;
		len = (size_t)(s - name);
		if (no_quantile && len == 8 && !memcmp(name, "quantile", 8))
			return false;
		for (i = 0; i < n; i++)
			if (lens[i] == len && !memcmp(names[i], name, len))
				return false;
		names[n] = name; /* `x=""` takes 4 bytes: n stays in range */
		lens[n++] = len;
		if (*s++ != '=' || *s++ != '"')
			return false;
		while (*s != '"') {
			if (!*s || *s == '\n')
				return false;
			if (*s == '\\' && s[1] != '\\' && s[1] != '"' &&
			    s[1] != 'n')
				return false;
			s += *s == '\\' ? 2 : 1;
		}
		s++;
		if (!*s)
			return true;
		if (*s++ != ',')
			return false;
	}
}

/* The names a family exports besides its own. */
static const char *const lat_suffixes[] = {"", "_sum", "_count", "_max"};
static const char *const plain_suffixes[] = {""};

static size_t suffixes_of(const struct metrics_node *n, const char *const **out)
{
	if (n->kind == METRICS_LATENCY) {
		*out = lat_suffixes;
		return ARRAY_SIZE(lat_suffixes);
	}
	*out = plain_suffixes;
	return 1;
}

/* Would two different families export a common name? */
static bool families_clash(const struct metrics_node *a,
			   const struct metrics_node *b)
{
	char x[METRICS_NAME_MAX + SUFFIX_MAX], y[METRICS_NAME_MAX + SUFFIX_MAX];
	const char *const *sa, *const *sb;
	size_t na = suffixes_of(a, &sa), nb = suffixes_of(b, &sb), i, j;

	for (i = 0; i < na; i++) {
		snprintf(x, sizeof(x), "%s%s", a->name, sa[i]);
		for (j = 0; j < nb; j++) {
			snprintf(y, sizeof(y), "%s%s", b->name, sb[j]);
			if (!strcmp(x, y))
				return true;
		}
	}
	return false;
}

/* FNV-1a of a metric's labels. */
static size_t labels_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return (size_t)h;
}

static struct metrics_family *family_find(struct metrics *m, const char *name)
{
	for (size_t i = 0; i < m->nfam; i++)
		if (!strcmp(m->fam[i].any->name, name))
			return &m->fam[i];
	return NULL;
}

/* The slot of `labels` in f's index, or the empty one where it goes. */
static size_t family_probe(const struct metrics_family *f, const char *labels)
{
	size_t i = labels_hash(labels) & f->mask;

	while (f->slot[i] && strcmp(f->slot[i]->labels, labels))
		i = (i + 1) & f->mask;
	return i;
}

/* Adds n to f's index, growing it at half full.  0 or -ENOMEM. */
static int family_index(struct metrics *m, struct metrics_family *f,
			const struct metrics_node *n)
{
	if (!f->slot || 2 * (f->n + 1) > f->mask + 1) {
		size_t slots = f->slot ? 2 * (f->mask + 1) : 16;
		const struct metrics_node **old = f->slot;
		size_t old_slots = f->slot ? f->mask + 1 : 0;

		f->slot = mem_zalloc(m->opt.mem, slots * sizeof(*f->slot));
		if (!f->slot) {
			f->slot = old;
			return -ENOMEM;
		}
		f->mask = slots - 1;
		for (size_t i = 0; i < old_slots; i++)
			if (old[i])
				f->slot[family_probe(f, old[i]->labels)] = old[i];
		mem_free(m->opt.mem, old);
	}
	f->slot[family_probe(f, n->labels)] = n;
	return 0;
}

/* Takes n out of f's index (linear probing: the run after it moves up
 * so that no lookup stops early). */
static void family_unindex(struct metrics_family *f,
			   const struct metrics_node *n)
{
	size_t i = family_probe(f, n->labels), j = i;

	if (f->slot[i] != n)
		return;
	f->slot[i] = NULL;
	for (;;) {
		size_t home;

		j = (j + 1) & f->mask;
		if (!f->slot[j])
			return;
		home = labels_hash(f->slot[j]->labels) & f->mask;
		/* Move slot j up to i unless its home lies in (i, j]. */
		if ((j > i && (home <= i || home > j)) ||
		    (j < i && home <= i && home > j)) {
			f->slot[i] = f->slot[j];
			f->slot[j] = NULL;
			i = j;
		}
	}
}

/* Checks `n` against the registry and files it in its family (a new
 * one at the end of the list); sets *pos to insert after. */
static int registry_place(struct metrics *m, struct metrics_node *n,
			  struct metrics_link **pos)
{
	struct metrics_family *f = family_find(m, n->name);

	if (f) {
		if (f->any->kind != n->kind ||
		    f->slot[family_probe(f, n->labels)])
			return -EEXIST;
	} else {
		for (size_t i = 0; i < m->nfam; i++)
			if (families_clash(m->fam[i].any, n))
				return -EEXIST;
		if (m->nfam == m->capfam) {
			size_t cap = m->capfam ? 2 * m->capfam : 32;
			struct metrics_family *v =
			    mem_alloc(m->opt.mem, cap * sizeof(*v));

			if (!v)
				return -ENOMEM;
			if (m->nfam)
				memcpy(v, m->fam, m->nfam * sizeof(*v));
			mem_free(m->opt.mem, m->fam);
			m->fam = v;
			m->capfam = cap;
		}
		f = &m->fam[m->nfam];
		*f = (struct metrics_family){.any = n, .last = m->head.prev};
		if (family_index(m, f, n))
			return -ENOMEM;
		m->nfam++;
		*pos = f->last;
		f->last = &n->link;
		f->n = 1;
		return 0;
	}
	if (family_index(m, f, n))
		return -ENOMEM;
	*pos = f->last; /* keep a family together: after its last member */
	f->last = &n->link;
	f->n++;
	return 0;
}

/* Takes n out of its family (the registry's lock held). */
static void registry_unplace(struct metrics *m, struct metrics_node *n)
{
	struct metrics_family *f = family_find(m, n->name);

	if (!f)
		return;
	family_unindex(f, n);
	if (--f->n == 0) {
		mem_free(m->opt.mem, f->slot);
		*f = m->fam[--m->nfam];
		return;
	}
	if (f->last == &n->link)
		f->last = n->link.prev; /* a member: the family is adjacent */
	if (f->any == n) {
		struct metrics_link *l = f->last;

		f->any = node_of(l);
	}
}

static int metrics_register(struct metrics *m, struct metrics_node *n,
			    const char *name, const char *help,
			    const char *labels)
{
	struct metrics_link *pos;
	size_t name_len, labels_len;
	int err;

	if (!name || n->reg)
		return -EINVAL;
	if (!labels)
		labels = "";
	name_len = strlen(name);
	labels_len = strlen(labels);
	if (name_len > METRICS_NAME_MAX || labels_len > METRICS_LABELS_MAX)
		return -ENAMETOOLONG;
	if (!name_valid(name))
		return -EINVAL;
	if (labels_len && !labels_valid(labels, n->kind == METRICS_LATENCY))
		return -EINVAL;
	memcpy(n->name, name, name_len + 1);
	memcpy(n->labels, labels, labels_len + 1);
	n->help = help ? help : "";

	pthread_mutex_lock(&m->lock);
	err = registry_place(m, n, &pos);
	if (!err) {
		link_insert_after(pos, &n->link);
		n->reg = m;
		m->count++;
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

int metrics_register_counter(struct metrics *m, struct metrics_counter *c,
			     const char *name, const char *help,
			     const char *labels)
{
	return metrics_register(m, &c->node, name, help, labels);
}

int metrics_register_gauge(struct metrics *m, struct metrics_gauge *g,
			   const char *name, const char *help,
			   const char *labels)
{
	return metrics_register(m, &g->node, name, help, labels);
}

int metrics_register_latency(struct metrics *m, struct metrics_latency *l,
			     const char *name, const char *help,
			     const char *labels)
{
	return metrics_register(m, &l->node, name, help, labels);
}

void metrics_unregister(struct metrics_node *node)
{
	struct metrics *m = node->reg;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	registry_unplace(m, node);
	link_remove(&node->link);
	node->reg = NULL;
	m->count--;
	pthread_mutex_unlock(&m->lock);
}

/* ---- Prometheus text ---- */

/* An snprintf-like cursor: counts everything, stores what fits. */
struct prom_out {
	char *buf;
	size_t cap;
	size_t len;
};

static void out_mem(struct prom_out *o, const char *s, size_t n)
{
	size_t room;

	if (o->len + 1 < o->cap) {
		room = o->cap - 1 - o->len;
		memcpy(o->buf + o->len, s, n < room ? n : room);
	}
	o->len += n;
}

static void out_str(struct prom_out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

static void out_u64(struct prom_out *o, uint64_t v)
{
	char num[NUM_MAX];

	out_mem(
	    o, num,
	    (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)v));
}

static void out_i64(struct prom_out *o, int64_t v)
{
	char num[NUM_MAX];

	out_mem(o, num,
		(size_t)snprintf(num, sizeof(num), "%lld", (long long)v));
}

/* HELP (skipped when empty; escapes only \\ and newline), then TYPE. */
static void out_help(struct prom_out *o, const char *name, const char *suffix,
		     const char *help, const char *extra, const char *type)
{
	const char *p;

	if (*help) {
		out_str(o, "# HELP ");
		out_str(o, name);
		out_str(o, suffix);
		out_str(o, " ");
		for (p = help; *p; p++) {
			if (*p == '\\')
				out_str(o, "\\\\");
			else if (*p == '\n')
				out_str(o, "\\n");
			else
				out_mem(o, p, 1);
		}
		out_str(o, extra);
		out_str(o, "\n");
	}
	out_str(o, "# TYPE ");
	out_str(o, name);
	out_str(o, suffix);
	out_str(o, " ");
	out_str(o, type);
	out_str(o, "\n");
}

/* `name<suffix>{labels,extra} ` up to the value. */
static void out_series(struct prom_out *o, const struct metrics_node *n,
		       const char *suffix, const char *extra)
{
	bool has_labels = n->labels[0] != '\0';

	out_str(o, n->name);
	out_str(o, suffix);
	if (has_labels || extra) {
		out_str(o, "{");
		out_str(o, n->labels);
		if (has_labels && extra)
			out_str(o, ",");
		if (extra)
			out_str(o, extra);
		out_str(o, "}");
	}
	out_str(o, " ");
}

static void out_latency(struct prom_out *o, const struct metrics_node *n,
			int64_t now_ns)
{
	const struct metrics_latency *l =
	    container_of(n, struct metrics_latency, node);
	struct metrics_latency_stats st;
	const struct {
		const char *label;
		const uint64_t *value;
	} q[] = {
	    {"quantile=\"0.5\"", &st.p50},
	    {"quantile=\"0.9\"", &st.p90},
	    {"quantile=\"0.99\"", &st.p99},
	    {"quantile=\"0.999\"", &st.p999},
	};
	size_t i;

	metrics_latency_stats_at(l, now_ns, &st);
	for (i = 0; i < ARRAY_SIZE(q); i++) {
		out_series(o, n, "", q[i].label);
		if (st.count)
			out_u64(o, *q[i].value);
		else
			out_str(o, "NaN");
		out_str(o, "\n");
	}
	out_series(o, n, "_sum", NULL);
	out_u64(o, st.total_sum);
	out_str(o, "\n");
	out_series(o, n, "_count", NULL);
	out_u64(o, st.total_count);
	out_str(o, "\n");
}

static void out_value(struct prom_out *o, const struct metrics_node *n)
{
	out_series(o, n, "", NULL);
	if (n->kind == METRICS_COUNTER)
		out_u64(o, metrics_counter_get(
			       container_of(n, struct metrics_counter, node)));
	else
		out_i64(o, metrics_gauge_get(
			       container_of(n, struct metrics_gauge, node)));
	out_str(o, "\n");
}

/* Writes the family starting at `first`; returns the link after it. */
static struct metrics_link *out_family(struct prom_out *o,
				       const struct metrics_link *end,
				       struct metrics_link *first,
				       int64_t now_ns)
{
	static const char *const types[] = {
	    [METRICS_COUNTER] = "counter",
	    [METRICS_GAUGE] = "gauge",
	    [METRICS_LATENCY] = "summary",
	};
	const struct metrics_node *f = node_of(first), *n;
	struct metrics_link *l = first;

	out_help(o, f->name, "", f->help, "", types[f->kind]);
	for (; l != end && !strcmp(node_of(l)->name, f->name); l = l->next) {
		n = node_of(l);
		if (n->kind == METRICS_LATENCY)
			out_latency(o, n, now_ns);
		else
			out_value(o, n);
	}
	if (f->kind != METRICS_LATENCY)
		return l;

	out_help(o, f->name, "_max", f->help, " (window max)", "gauge");
	for (l = first; l != end && !strcmp(node_of(l)->name, f->name);
	     l = l->next) {
		n = node_of(l);
		out_series(o, n, "_max", NULL);
		out_u64(o, lat_window_max(
			       container_of(n, struct metrics_latency, node),
			       lat_epoch(now_ns)));
		out_str(o, "\n");
	}
	return l;
}

ssize_t metrics_write_prometheus_at(struct metrics *m, char *buf, size_t cap,
				    int64_t now_ns)
{
	struct prom_out o = {buf, cap, 0};
	struct metrics_link *l;

	if (!buf && cap)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	for (l = m->head.next; l != &m->head;)
		l = out_family(&o, &m->head, l, now_ns);
	pthread_mutex_unlock(&m->lock);
	if (cap)
		buf[o.len < cap ? o.len : cap - 1] = '\0';
	return (ssize_t)o.len;
}

ssize_t metrics_write_prometheus(struct metrics *m, char *buf, size_t cap)
{
	return metrics_write_prometheus_at(m, buf, cap, clock_mono_ns());
}
