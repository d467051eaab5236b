/* etcd_msg: etcd v3 gateway JSON (see etcd_msg.h). */
#include "etcd_msg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "codec/base64.h"
#include "codec/json.h"

/* ---- requests ---------------------------------------------------------- */

void etcd_prefix_end(const char *prefix, size_t n, char *end, size_t *end_n)
{
	memcpy(end, prefix, n);
	while (n && (unsigned char)end[n - 1] == 0xff)
		n--;
	if (!n) { /* every key */
		end[0] = '\0';
		*end_n = 1;
		return;
	}
	end[n - 1]++;
	*end_n = n;
}

static void put_b64_member(struct fbuf *out, const char *name, const void *p,
			   size_t n)
{
	fbuf_printf(out, "\"%s\":\"", name);
	base64_encode(out, p, n);
	fbuf_putc(out, '"');
}

/* "key":..,"range_end":.. of every key under prefix */
static void put_prefix(struct fbuf *out, const char *prefix)
{
	size_t n = strlen(prefix), end_n;
	char end[ETCD_KEY_MAX];

	if (n > sizeof(end))
		n = sizeof(end);
	etcd_prefix_end(prefix, n, end, &end_n);
	put_b64_member(out, "key", n ? prefix : "", n ? n : 1);
	fbuf_putc(out, ',');
	put_b64_member(out, "range_end", end, end_n);
}

void etcd_put_range(struct fbuf *out, const char *prefix)
{
	fbuf_putc(out, '{');
	put_prefix(out, prefix);
	fbuf_putc(out, '}');
}

void etcd_put_watch(struct fbuf *out, const char *prefix, int64_t start_rev)
{
	fbuf_puts(out, "{\"create_request\":{");
	put_prefix(out, prefix);
	fbuf_printf(out, ",\"start_revision\":\"%lld\"}}", (long long)start_rev);
}

void etcd_put_grant(struct fbuf *out, int64_t ttl_s)
{
	fbuf_printf(out, "{\"TTL\":\"%lld\"}", (long long)ttl_s);
}

void etcd_put_lease_id(struct fbuf *out, int64_t id)
{
	fbuf_printf(out, "{\"ID\":\"%lld\"}", (long long)id);
}

void etcd_put_put(struct fbuf *out, const char *key, const char *value,
		  int64_t lease)
{
	fbuf_putc(out, '{');
	put_b64_member(out, "key", key, strlen(key));
	fbuf_putc(out, ',');
	put_b64_member(out, "value", value, strlen(value));
	if (lease)
		fbuf_printf(out, ",\"lease\":\"%lld\"", (long long)lease);
	fbuf_putc(out, '}');
}

/* ---- reading ------------------------------------------------------------ */

struct rd {
	struct json_rd r;
	struct fbuf *scratch;
	struct fbuf key, value; /* decoded */
	struct etcd_answer *a;
	etcd_kv_fn *fn;
	void *arg;
	int stop; /* what fn returned */
};

/* Members of the object at r->p, one call of `member` each
 * (json_each_member, with the reader's state). */
typedef int member_fn(struct rd *d, const char *name, void *ctx);

struct hop {
	struct rd *d;
	member_fn *fn;
	void *ctx;
};

static int hop_fn(struct json_rd *r, const char *name, void *arg)
{
	struct hop *h = arg;

	(void)r;
	return h->fn(h->d, name, h->ctx);
}

static int each_member(struct rd *d, member_fn *member, void *ctx)
{
	struct hop h = {d, member, ctx};

	return json_each_member(&d->r, d->scratch, hop_fn, &h);
}

/* An integer sent as a string ("12") or as a number (12). */
static int read_int(struct rd *d, int64_t *v)
{
	const char *s;
	size_t n;
	int err;

	if (json_peek(&d->r) == '"')
		err = json_string(&d->r, d->scratch, &s, &n);
	else
		err = json_number(&d->r, &s, &n);
	if (err)
		return err;
	if (json_parse_i64(s, n, INT64_MIN, INT64_MAX, v))
		return json_fail(&d->r, "expected an integer");
	return 0;
}

static int read_bool(struct rd *d, bool *v)
{
	if (json_peek(&d->r) == 't') {
		*v = true;
		return json_literal(&d->r, "true");
	}
	*v = false;
	return json_literal(&d->r, "false");
}

/* A base64 string, decoded into `to` (cleared); over `max` bytes:
 * *too_long, the value skipped. */
static int read_b64(struct rd *d, struct fbuf *to, size_t max, bool *too_long)
{
	const char *s;
	size_t n;
	int err = json_string(&d->r, d->scratch, &s, &n);

	if (err)
		return err;
	fbuf_clear(to);
	if (n / 4 * 3 > max + 2) {
		*too_long = true;
		return 0;
	}
	err = base64_decode(to, s, n);
	if (err == -ENOMEM)
		return err;
	if (err)
		return json_fail(&d->r, "a key or value is not base64");
	if (to->len > max)
		*too_long = true;
	return 0;
}

struct kv_ctx {
	struct etcd_kv kv;
	bool too_long, has_key;
};

static int kv_member(struct rd *d, const char *name, void *ctx)
{
	struct kv_ctx *k = ctx;
	int err;

	if (!strcmp(name, "key")) {
		k->has_key = true;
		return read_b64(d, &d->key, ETCD_KEY_MAX, &k->too_long);
	}
	if (!strcmp(name, "value"))
		return read_b64(d, &d->value, ETCD_VALUE_MAX, &k->too_long);
	if (!strcmp(name, "mod_revision"))
		return read_int(d, &k->kv.mod_revision);
	err = json_skip(&d->r, d->scratch);
	return err;
}

/* One kv object; passed to fn unless it is too long. */
static int read_kv(struct rd *d, bool deleted)
{
	struct kv_ctx k = {.kv.deleted = deleted};
	int err;

	fbuf_clear(&d->key);
	fbuf_clear(&d->value);
	if ((err = each_member(d, kv_member, &k)))
		return err;
	if (!k.has_key)
		return json_fail(&d->r, "a kv without a key");
	if (k.too_long) {
		d->a->skipped++;
		return 0;
	}
	/* NUL-terminated for the callback's convenience (not counted). */
	fbuf_cstr(&d->key);
	fbuf_cstr(&d->value);
	if (d->key.err || d->value.err)
		return -ENOMEM;
	k.kv.key = (const char *)d->key.p;
	k.kv.key_n = d->key.len;
	k.kv.value = (const char *)d->value.p;
	k.kv.value_n = d->value.len;
	d->a->nkv++;
	d->stop = d->fn ? d->fn(d->arg, &k.kv) : 0;
	return d->stop;
}

struct ev_ctx {
	bool deleted;
	bool kv_seen;
	const char *kv_at; /* the kv object, read once the type is known */
};

static int ev_member(struct rd *d, const char *name, void *ctx)
{
	struct ev_ctx *e = ctx;

	if (!strcmp(name, "type")) {
		const char *s;
		size_t n;
		int err = json_string(&d->r, d->scratch, &s, &n);

		if (!err)
			e->deleted = n == 6 && !memcmp(s, "DELETE", 6);
		return err;
	}
	if (!strcmp(name, "kv")) {
		/* The type may come after the kv: find it first, read the
		 * kv after the event's object ends. */
		e->kv_seen = true;
		e->kv_at = d->r.p;
	}
	return json_skip(&d->r, d->scratch);
}

static int read_event(struct rd *d)
{
	struct ev_ctx e = {0};
	struct json_rd after;
	int err;

	if ((err = each_member(d, ev_member, &e)))
		return err;
	if (!e.kv_seen)
		return 0;
	after = d->r;
	d->r.p = e.kv_at;
	err = read_kv(d, e.deleted);
	if (err)
		return err;
	d->r = after;
	return 0;
}

static int read_array(struct rd *d, int (*one)(struct rd *d, void *ctx),
		      void *ctx)
{
	struct json_rd *r = &d->r;
	int err, more;

	if (json_peek(r) == 'n')
		return json_literal(r, "null");
	if ((err = json_expect(r, '[', "expected an array")))
		return err;
	if (json_peek(r) == ']') {
		r->p++;
		return 0;
	}
	do {
		if ((err = one(d, ctx)))
			return err;
		more = json_next(r, ']');
		if (more < 0)
			return more;
	} while (more);
	return 0;
}

static int one_kv(struct rd *d, void *ctx)
{
	(void)ctx;
	return read_kv(d, false);
}

static int one_event(struct rd *d, void *ctx)
{
	(void)ctx;
	return read_event(d);
}

static int header_member(struct rd *d, const char *name, void *ctx)
{
	(void)ctx;
	if (!strcmp(name, "revision"))
		return read_int(d, &d->a->revision);
	return json_skip(&d->r, d->scratch);
}

static void take_message(struct rd *d, const char *s, size_t n)
{
	snprintf(d->a->message, sizeof(d->a->message), "%.*s",
		 (int)(n < sizeof(d->a->message) ? n : sizeof(d->a->message) - 1),
		 s);
}

static int error_member(struct rd *d, const char *name, void *ctx)
{
	int64_t v;
	int err;

	(void)ctx;
	if (!strcmp(name, "message")) {
		const char *s;
		size_t n;

		err = json_string(&d->r, d->scratch, &s, &n);
		if (!err)
			take_message(d, s, n);
		return err;
	}
	if (!strcmp(name, "grpc_code") || !strcmp(name, "code")) {
		err = read_int(d, &v);
		d->a->code = (int)v;
		return err;
	}
	return json_skip(&d->r, d->scratch);
}

static int top_member(struct rd *d, const char *name, void *ctx)
{
	struct etcd_answer *a = d->a;
	int err;

	if (!strcmp(name, "result"))
		return each_member(d, top_member, ctx);
	if (!strcmp(name, "header"))
		return each_member(d, header_member, NULL);
	if (!strcmp(name, "kvs"))
		return read_array(d, one_kv, NULL);
	if (!strcmp(name, "events"))
		return read_array(d, one_event, NULL);
	if (!strcmp(name, "created"))
		return read_bool(d, &a->created);
	if (!strcmp(name, "canceled"))
		return read_bool(d, &a->canceled);
	if (!strcmp(name, "compact_revision"))
		return read_int(d, &a->compact_revision);
	if (!strcmp(name, "count"))
		return read_int(d, &a->count);
	if (!strcmp(name, "ID"))
		return read_int(d, &a->id);
	if (!strcmp(name, "TTL"))
		return read_int(d, &a->ttl);
	if (!strcmp(name, "error")) {
		a->error = true;
		if (json_peek(&d->r) == '{')
			return each_member(d, error_member, NULL);
		if (json_peek(&d->r) == '"') {
			const char *s;
			size_t n;

			err = json_string(&d->r, d->scratch, &s, &n);
			if (!err && !a->message[0])
				take_message(d, s, n);
			return err;
		}
		return json_skip(&d->r, d->scratch);
	}
	if (!strcmp(name, "message") || !strcmp(name, "code"))
		return error_member(d, name, NULL);
	return json_skip(&d->r, d->scratch);
}

int etcd_parse(const char *p, size_t n, struct etcd_answer *a, etcd_kv_fn *fn,
	       void *arg, struct fbuf *scratch, const char **why)
{
	struct rd d = {.scratch = scratch, .a = a, .fn = fn, .arg = arg};
	int err;

	memset(a, 0, sizeof(*a));
	*why = NULL;
	json_rd_init(&d.r, p, n);
	fbuf_init(&d.key, scratch->mem, 0);
	fbuf_init(&d.value, scratch->mem, 0);
	err = each_member(&d, top_member, NULL);
	if (!err && json_peek(&d.r) >= 0)
		err = json_fail(&d.r, "data after the object");
	fbuf_destroy(&d.key);
	fbuf_destroy(&d.value);
	if (d.stop)
		return d.stop;
	if (err == -EBADMSG)
		*why = d.r.why;
	return err;
}

long etcd_msg_len(const char *p, size_t n)
{
	size_t i = 0;
	long depth = 0;
	bool in_str = false;

	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' ||
			 p[i] == '\n'))
		i++;
	if (i == n)
		return 0;
	if (p[i] != '{')
		return -EBADMSG;
	for (; i < n; i++) {
		char c = p[i];

		if (in_str) {
			if (c == '\\')
				i++; /* the escaped byte (past n: not yet) */
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (--depth == 0)
				return (long)i + 1;
			if (depth < 0)
				return -EBADMSG;
		}
	}
	return 0;
}

/* ---- values --------------------------------------------------------------- */

struct val_ctx {
	struct naming_node *out;
	bool has_addr;
	int64_t weight;
	bool bad;
};

static int val_member(struct rd *d, const char *name, void *ctx)
{
	struct val_ctx *v = ctx;
	const char *s;
	size_t n;
	int err;

	if (!strcmp(name, "addr") || !strcmp(name, "tag")) {
		bool addr = name[0] == 'a';
		char *to = addr ? v->out->addr : v->out->tag;
		size_t cap = addr ? sizeof(v->out->addr) : sizeof(v->out->tag);

		err = json_string(&d->r, d->scratch, &s, &n);
		if (err)
			return err;
		if (n >= cap || memchr(s, ' ', n) || memchr(s, '\0', n))
			v->bad = true;
		else
			snprintf(to, cap, "%.*s", (int)n, s);
		v->has_addr |= addr;
		return 0;
	}
	if (!strcmp(name, "weight"))
		return read_int(d, &v->weight);
	return json_skip(&d->r, d->scratch);
}

int etcd_node_from_value(const char *v, size_t n, struct naming_node *out,
			 struct fbuf *scratch)
{
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n'))
		i++;
	if (i < n && v[i] == '{') {
		struct rd d = {.scratch = scratch};
		struct val_ctx c = {.out = out, .weight = -1};
		int err;

		json_rd_init(&d.r, v, n);
		err = each_member(&d, val_member, &c);
		if (err == -ENOMEM)
			return err;
		if (err || c.bad || !c.has_addr ||
		    !naming_addr_valid(out->addr) || c.weight > 1000000)
			return -EINVAL;
		if (c.weight >= 0 && !out->tag[0])
			snprintf(out->tag, sizeof(out->tag), "%lld",
				 (long long)c.weight);
		return 0;
	}
	if (memchr(v, '\0', n))
		return -EINVAL;
	return naming_parse_entry(v, n, out);
}
