/*
 * pbd: descriptor sets read by hand (see pbd.h).
 *
 * The parts of descriptor.proto read here (field numbers are
 * descriptor.proto's):
 *
 *   FileDescriptorSet      1 file (FileDescriptorProto, repeated)
 *   FileDescriptorProto    1 name, 2 package, 4 message_type, 5 enum_type,
 *                          6 service, 12 syntax
 *   DescriptorProto        1 name, 2 field, 3 nested_type, 4 enum_type,
 *                          7 options (MessageOptions: 7 map_entry)
 *   FieldDescriptorProto   1 name, 3 number, 4 label, 5 type, 6 type_name,
 *                          7 default_value, 8 options (FieldOptions:
 *                          2 packed), 10 json_name
 *   EnumDescriptorProto    1 name, 2 value (1 name, 2 number)
 *   ServiceDescriptorProto 1 name, 2 method (1 name, 2 input_type,
 *                          3 output_type, 5 client_streaming,
 *                          6 server_streaming)
 *
 * Everything else (extensions, oneofs, options beyond those two,
 * reserved ranges, source info) is skipped: the wire bytes of a message
 * do not depend on them.
 *
 * Adding a set is all or nothing: the new definitions are staged, checked
 * for duplicates and resolved against the pool and the stage, and only
 * then merged; on failure the arena goes back to where it was.
 */
#include "pbd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fbuf.h"
#include "pbwire.h"

/* Arena chunks: a set's definitions usually fit in one. */
#define PBD_CHUNK_SIZE 16384

struct pbd_chunk {
	struct pbd_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

/* A growing array of pointers (the stage's and the pool's lists). */
struct ptrs {
	void **v;
	unsigned n, cap;
};

struct stage {
	struct pbd_pool *pool;
	const char *origin;
	char *why;
	size_t why_size;
	int err;
	struct ptrs msgs, enums, services, files;
	/* the file being read */
	const char *file;
	const char *package;
	bool proto3;
};

/* ---- arena -------------------------------------------------------------- */

static void *arena_alloc(struct pbd_pool *pool, size_t size)
{
	struct pbd_chunk *c = pool->chunks;
	void *p;

	size = (size + 7) & ~(size_t)7;
	if (!c || c->cap - c->used < size) {
		size_t cap = size > PBD_CHUNK_SIZE ? size : PBD_CHUNK_SIZE;

		c = mem_alloc(pool->mem, sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = pool->chunks;
		pool->chunks = c;
	}
	p = (uint8_t *)c->data + c->used;
	c->used += size;
	memset(p, 0, size);
	return p;
}

/* Where the arena is, to go back to on failure. */
struct arena_mark {
	struct pbd_chunk *chunk;
	size_t used;
};

static struct arena_mark arena_mark(struct pbd_pool *pool)
{
	return (struct arena_mark){pool->chunks,
				   pool->chunks ? pool->chunks->used : 0};
}

static void arena_rewind(struct pbd_pool *pool, struct arena_mark m)
{
	while (pool->chunks != m.chunk) {
		struct pbd_chunk *c = pool->chunks;

		pool->chunks = c->next;
		mem_free(pool->mem, c);
	}
	if (m.chunk)
		m.chunk->used = m.used;
}

static char *arena_strndup(struct pbd_pool *pool, const void *s, size_t n)
{
	char *p = arena_alloc(pool, n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static int ptrs_push(const struct mem *mem, struct ptrs *a, void *p)
{
	if (a->n == a->cap) {
		unsigned cap = a->cap ? a->cap * 2 : 16;
		void **v = mem_alloc(mem, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		if (a->n)
			memcpy(v, a->v, a->n * sizeof(*v));
		mem_free(mem, a->v);
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = p;
	return 0;
}

/* ---- failures ------------------------------------------------------------ */

static int fail(struct stage *st, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The first failure is the one reported. */
static int fail(struct stage *st, int err, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (st->err)
		return st->err;
	st->err = err;
	if (!st->why || !st->why_size)
		return err;
	if (st->file)
		n = snprintf(st->why, st->why_size, "%s: %s: ", st->origin,
			     st->file);
	else
		n = snprintf(st->why, st->why_size, "%s: ", st->origin);
	if (n < 0 || (size_t)n >= st->why_size)
		return err;
	va_start(ap, fmt);
	vsnprintf(st->why + n, st->why_size - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

static int bad_bytes(struct stage *st, const char *what)
{
	return fail(st, -EBADMSG, "not a FileDescriptorSet (a broken %s)",
		    what);
}

static int no_memory(struct stage *st)
{
	return fail(st, -ENOMEM, "out of memory");
}

/* ---- reading ------------------------------------------------------------- */

/*
 * Calls fn(st, ctx, num, wt, value reader) for every field of the message
 * in p[0..n).  A LEN value comes as its bytes (sub.p .. sub.end), a
 * VARINT as `v`; other wire types are skipped.
 */
struct fld {
	uint32_t num, wt;
	uint64_t v;
	const uint8_t *p;
	size_t n;
};

static int next_field(struct pbw_rd *r, struct fld *f)
{
	if (pbw_get_key(r, &f->num, &f->wt))
		return -EBADMSG;
	if (f->wt == PBW_VARINT)
		return pbw_get_varint(r, &f->v);
	if (f->wt == PBW_LEN)
		return pbw_get_len(r, &f->p, &f->n);
	return pbw_skip(r, f->wt);
}

static char *dup_str(struct stage *st, const struct fld *f)
{
	char *s;

	if (memchr(f->p, '\0', f->n)) {
		bad_bytes(st, "name");
		return NULL;
	}
	s = arena_strndup(st->pool, f->p, f->n);
	if (!s)
		no_memory(st);
	return s;
}

static char *join_name(struct stage *st, const char *prefix, const char *name)
{
	size_t a = prefix ? strlen(prefix) : 0, b = strlen(name);
	char *s = arena_alloc(st->pool, a + b + 2);

	if (!s) {
		no_memory(st);
		return NULL;
	}
	if (a) {
		memcpy(s, prefix, a);
		s[a++] = '.';
	}
	memcpy(s + a, name, b + 1);
	return s;
}

static const void *copy_raw(struct stage *st, const uint8_t *p, size_t n)
{
	void *r = arena_alloc(st->pool, n ? n : 1);

	if (!r)
		no_memory(st);
	else if (n)
		memcpy(r, p, n);
	return r;
}

/* protoc's json_name: underscores dropped, the letter after one upper. */
static char *camel_name(struct stage *st, const char *name)
{
	char *s = arena_alloc(st->pool, strlen(name) + 1), *o = s;
	bool up = false;

	if (!s) {
		no_memory(st);
		return NULL;
	}
	for (; *name; name++) {
		if (*name == '_') {
			up = true;
			continue;
		}
		*o++ = up && *name >= 'a' && *name <= 'z' ? *name - 'a' + 'A'
							  : *name;
		up = false;
	}
	*o = '\0';
	return s;
}

static bool is_scalar_type(unsigned t)
{
	return t != PBD_STRING && t != PBD_BYTES && t != PBD_MESSAGE &&
	       t != PBD_GROUP;
}

struct field_tmp {
	bool has_type, has_packed, packed_opt;
};

static int parse_field(struct stage *st, struct pbd_msg *m, struct pbd_field *f,
		       struct field_tmp *t, const uint8_t *p, size_t n)
{
	struct pbw_rd r, o;
	struct fld x, y;

	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r)) {
		if (next_field(&r, &x))
			return bad_bytes(st, "field");
		switch (x.wt == PBW_LEN ? x.num : x.num | 0x100u) {
		case 1:
			f->name = dup_str(st, &x);
			break;
		case 3 | 0x100u:
			if (x.v < 1 || x.v > PBW_MAX_FIELD)
				return fail(st, -EBADMSG,
					    "%s: field number %llu out of "
					    "range",
					    m->full_name,
					    (unsigned long long)x.v);
			f->number = (uint32_t)x.v;
			break;
		case 4 | 0x100u:
			if (x.v < PBD_OPTIONAL || x.v > PBD_REPEATED)
				return bad_bytes(st, "field label");
			f->label = (uint8_t)x.v;
			break;
		case 5 | 0x100u:
			if (x.v < PBD_DOUBLE || x.v > PBD_SINT64)
				return bad_bytes(st, "field type");
			f->type = (uint8_t)x.v;
			t->has_type = true;
			break;
		case 6:
			f->type_name = dup_str(st, &x);
			break;
		case 7:
			f->default_value = dup_str(st, &x);
			break;
		case 8:
			pbw_rd_init(&o, x.p, x.n);
			while (pbw_rd_more(&o)) {
				if (next_field(&o, &y))
					return bad_bytes(st, "field options");
				if (y.num == 2 && y.wt == PBW_VARINT) {
					t->has_packed = true;
					t->packed_opt = y.v != 0;
				}
			}
			break;
		case 10:
			f->json_name = dup_str(st, &x);
			break;
		}
		if (st->err)
			return st->err;
	}
	if (!f->name || !f->number)
		return bad_bytes(st, "field (no name or number)");
	if (!f->label)
		f->label = PBD_OPTIONAL;
	if (t->has_type && f->type == PBD_GROUP)
		return fail(st, -EBADMSG,
			    "%s.%s: groups are not supported (proto2's "
			    "deprecated form; use a message field)",
			    m->full_name, f->name);
	if ((!t->has_type || f->type == PBD_MESSAGE || f->type == PBD_ENUM) &&
	    !f->type_name)
		return bad_bytes(st, "field (no type)");
	if (!f->json_name)
		f->json_name = camel_name(st, f->name);
	f->owner = m;
	return st->err;
}

static int parse_enum(struct stage *st, const char *prefix,
		      const struct pbd_msg *parent, const uint8_t *p, size_t n)
{
	struct pbd_enum *e = arena_alloc(st->pool, sizeof(*e));
	struct pbd_enum_value *vals;
	struct pbw_rd r, vr;
	struct fld x, y;
	const char *name = NULL;
	unsigned nv = 0, i = 0;

	if (!e)
		return no_memory(st);
	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r)) {
		if (next_field(&r, &x))
			return bad_bytes(st, "enum");
		if (x.num == 1 && x.wt == PBW_LEN)
			name = dup_str(st, &x);
		else if (x.num == 2 && x.wt == PBW_LEN)
			nv++;
		if (st->err)
			return st->err;
	}
	if (!name)
		return bad_bytes(st, "enum (no name)");
	vals = arena_alloc(st->pool, (nv ? nv : 1) * sizeof(*vals));
	if (!vals)
		return no_memory(st);
	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r)) {
		next_field(&r, &x);
		if (x.num != 2 || x.wt != PBW_LEN)
			continue;
		pbw_rd_init(&vr, x.p, x.n);
		while (pbw_rd_more(&vr)) {
			if (next_field(&vr, &y))
				return bad_bytes(st, "enum value");
			if (y.num == 1 && y.wt == PBW_LEN)
				vals[i].name = dup_str(st, &y);
			else if (y.num == 2 && y.wt == PBW_VARINT)
				vals[i].number = (int32_t)(uint32_t)y.v;
			if (st->err)
				return st->err;
		}
		if (!vals[i].name)
			return bad_bytes(st, "enum value (no name)");
		i++;
	}
	e->name = name;
	e->full_name = join_name(st, prefix, name);
	e->file = st->file;
	e->parent = parent;
	e->nvalues = nv;
	e->values = vals;
	e->raw = copy_raw(st, p, n);
	e->raw_len = n;
	if (!st->err && ptrs_push(st->pool->mem, &st->enums, e))
		return no_memory(st);
	return st->err;
}

static int parse_msg(struct stage *st, const char *prefix,
		     const struct pbd_msg *parent, const uint8_t *p, size_t n,
		     int depth)
{
	struct pbd_msg *m = arena_alloc(st->pool, sizeof(*m));
	struct field_tmp *tmp = NULL;
	struct pbw_rd r, o;
	struct fld x, y;
	unsigned nf = 0, i = 0;
	const char *name = NULL;

	if (!m)
		return no_memory(st);
	if (depth > PBD_MAX_DEPTH)
		return fail(st, -EBADMSG, "messages nested more than %d deep",
			    PBD_MAX_DEPTH);
	/* Pass 1: the name (needed for nested names), options, counts. */
	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r)) {
		if (next_field(&r, &x))
			return bad_bytes(st, "message");
		if (x.wt != PBW_LEN)
			continue;
		if (x.num == 1) {
			name = dup_str(st, &x);
		} else if (x.num == 2) {
			nf++;
		} else if (x.num == 7) {
			pbw_rd_init(&o, x.p, x.n);
			while (pbw_rd_more(&o)) {
				if (next_field(&o, &y))
					return bad_bytes(st, "message options");
				if (y.num == 7 && y.wt == PBW_VARINT)
					m->map_entry = y.v != 0;
			}
		}
		if (st->err)
			return st->err;
	}
	if (!name)
		return bad_bytes(st, "message (no name)");
	m->name = name;
	m->full_name = join_name(st, prefix, name);
	m->file = st->file;
	m->proto3 = st->proto3;
	m->parent = parent;
	m->raw = copy_raw(st, p, n);
	m->raw_len = n;
	m->fields = arena_alloc(st->pool, (nf ? nf : 1) * sizeof(*m->fields));
	tmp = arena_alloc(st->pool, (nf ? nf : 1) * sizeof(*tmp));
	if (st->err || !m->fields || !tmp)
		return no_memory(st);
	m->nfields = nf;
	if (ptrs_push(st->pool->mem, &st->msgs, m))
		return no_memory(st);
	/* Pass 2: fields, nested messages and enums. */
	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r) && !st->err) {
		next_field(&r, &x);
		if (x.wt != PBW_LEN)
			continue;
		if (x.num == 2) {
			parse_field(st, m, &m->fields[i], &tmp[i], x.p, x.n);
			i++;
		} else if (x.num == 3)
			parse_msg(st, m->full_name, m, x.p, x.n, depth + 1);
		else if (x.num == 4)
			parse_enum(st, m->full_name, m, x.p, x.n);
	}
	if (st->err)
		return st->err;
	for (i = 0; i < nf; i++) {
		struct pbd_field *f = &m->fields[i];

		if (!tmp[i].has_type)
			f->type = 0; /* message or enum: resolved later */
		if (f->label == PBD_REPEATED && tmp[i].has_type &&
		    is_scalar_type(f->type))
			f->packed =
			    tmp[i].has_packed ? tmp[i].packed_opt : st->proto3;
	}
	return 0;
}

static int parse_service(struct stage *st, const uint8_t *p, size_t n)
{
	struct pbd_service *s = arena_alloc(st->pool, sizeof(*s));
	struct pbd_method *ms;
	struct pbw_rd r, mr;
	struct fld x, y;
	const char *name = NULL;
	unsigned nm = 0, i = 0;

	if (!s)
		return no_memory(st);
	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r)) {
		if (next_field(&r, &x))
			return bad_bytes(st, "service");
		if (x.num == 1 && x.wt == PBW_LEN)
			name = dup_str(st, &x);
		else if (x.num == 2 && x.wt == PBW_LEN)
			nm++;
		if (st->err)
			return st->err;
	}
	if (!name)
		return bad_bytes(st, "service (no name)");
	ms = arena_alloc(st->pool, (nm ? nm : 1) * sizeof(*ms));
	if (!ms)
		return no_memory(st);
	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r)) {
		next_field(&r, &x);
		if (x.num != 2 || x.wt != PBW_LEN)
			continue;
		pbw_rd_init(&mr, x.p, x.n);
		while (pbw_rd_more(&mr)) {
			if (next_field(&mr, &y))
				return bad_bytes(st, "method");
			if (y.num == 1 && y.wt == PBW_LEN)
				ms[i].name = dup_str(st, &y);
			else if (y.num == 2 && y.wt == PBW_LEN)
				ms[i].input_name = dup_str(st, &y);
			else if (y.num == 3 && y.wt == PBW_LEN)
				ms[i].output_name = dup_str(st, &y);
			else if (y.num == 5 && y.wt == PBW_VARINT)
				ms[i].client_streaming = y.v != 0;
			else if (y.num == 6 && y.wt == PBW_VARINT)
				ms[i].server_streaming = y.v != 0;
			if (st->err)
				return st->err;
		}
		if (!ms[i].name || !ms[i].input_name || !ms[i].output_name)
			return bad_bytes(st, "method (no name or types)");
		i++;
	}
	s->name = name;
	s->full_name = join_name(st, st->package, name);
	s->file = st->file;
	s->nmethods = nm;
	s->methods = ms;
	s->raw = copy_raw(st, p, n);
	s->raw_len = n;
	if (!st->err && ptrs_push(st->pool->mem, &st->services, s))
		return no_memory(st);
	return st->err;
}

static int parse_file(struct stage *st, const uint8_t *p, size_t n)
{
	struct pbw_rd r;
	struct fld x;

	st->file = NULL;
	st->package = NULL;
	st->proto3 = false;
	/* Pass 1: name, package, syntax (protoc writes syntax last). */
	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r)) {
		if (next_field(&r, &x))
			return bad_bytes(st, "file");
		if (x.wt != PBW_LEN)
			continue;
		if (x.num == 1)
			st->file = dup_str(st, &x);
		else if (x.num == 2)
			st->package = dup_str(st, &x);
		else if (x.num == 12)
			st->proto3 = x.n == 6 && !memcmp(x.p, "proto3", 6);
		if (st->err)
			return st->err;
	}
	if (!st->file)
		return bad_bytes(st, "file (no name)");
	if (ptrs_push(st->pool->mem, &st->files, (void *)st->file))
		return no_memory(st);
	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r) && !st->err) {
		next_field(&r, &x);
		if (x.wt != PBW_LEN)
			continue;
		if (x.num == 4)
			parse_msg(st, st->package, NULL, x.p, x.n, 1);
		else if (x.num == 5)
			parse_enum(st, st->package, NULL, x.p, x.n);
		else if (x.num == 6)
			parse_service(st, x.p, x.n);
	}
	return st->err;
}

/* ---- checking and resolving ---------------------------------------------- */

/* Every kind of definition starts with its full name, then file, and
 * keeps its DescriptorProto bytes at the same place in each struct. */
struct def {
	const char *full_name;
	const char *file;
	const uint8_t *raw;
	size_t raw_len;
};

static struct def def_of_msg(const void *p)
{
	const struct pbd_msg *m = p;

	return (struct def){m->full_name, m->file, m->raw, m->raw_len};
}

static struct def def_of_enum(const void *p)
{
	const struct pbd_enum *e = p;

	return (struct def){e->full_name, e->file, e->raw, e->raw_len};
}

static struct def def_of_service(const void *p)
{
	const struct pbd_service *s = p;

	return (struct def){s->full_name, s->file, s->raw, s->raw_len};
}

typedef struct def def_fn(const void *);

static def_fn *sort_def;

static int cmp_def(const void *a, const void *b)
{
	return strcmp(sort_def(*(void *const *)a).full_name,
		      sort_def(*(void *const *)b).full_name);
}

static void sort_defs(void **v, unsigned n, def_fn *def)
{
	sort_def = def; /* one add at a time: pbd_pool_add_set's contract */
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_def);
}

static void *find_def(void *const *v, unsigned n, def_fn *def, const char *name)
{
	unsigned lo = 0, hi = n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = strcmp(def(v[mid]).full_name, name);

		if (!c)
			return v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool same_def(struct def a, struct def b)
{
	return a.raw_len == b.raw_len && !memcmp(a.raw, b.raw, a.raw_len);
}

/*
 * Drops from the stage what the pool (or the stage, earlier) already has
 * identically; fails on a name defined twice differently.
 */
static int dedup(struct stage *st, struct ptrs *a, void *const *pool_v,
		 unsigned pool_n, def_fn *def, const char *kind)
{
	unsigned i, o = 0;

	sort_defs(a->v, a->n, def);
	for (i = 0; i < a->n; i++) {
		struct def d = def(a->v[i]);
		void *old = find_def(pool_v, pool_n, def, d.full_name);
		struct def od;

		if (!old && o &&
		    !strcmp(def(a->v[o - 1]).full_name, d.full_name))
			old = a->v[o - 1];
		if (!old) {
			a->v[o++] = a->v[i];
			continue;
		}
		od = def(old);
		if (!same_def(d, od)) {
			st->file = NULL;
			return fail(st, -EBADMSG,
				    "%s %s is defined differently in %s and "
				    "%s",
				    kind, d.full_name, od.file, d.file);
		}
	}
	a->n = o;
	return 0;
}

static const void *lookup(struct stage *st, const char *type_name,
			  bool *is_enum)
{
	const struct pbd_pool *pool = st->pool;
	const char *name = type_name[0] == '.' ? type_name + 1 : type_name;
	void *p;

	p = find_def(st->msgs.v, st->msgs.n, def_of_msg, name);
	if (!p)
		p = find_def((void *const *)pool->msgs, pool->nmsgs, def_of_msg,
			     name);
	if (p) {
		*is_enum = false;
		return p;
	}
	p = find_def(st->enums.v, st->enums.n, def_of_enum, name);
	if (!p)
		p = find_def((void *const *)pool->enums, pool->nenums,
			     def_of_enum, name);
	*is_enum = true;
	return p;
}

static int cmp_field_number(const void *a, const void *b)
{
	const struct pbd_field *x = a, *y = b;

	return x->number < y->number ? -1 : x->number > y->number;
}

static int cmp_field_name(const void *a, const void *b)
{
	const struct pbd_field *x = *(const struct pbd_field *const *)a;
	const struct pbd_field *y = *(const struct pbd_field *const *)b;

	return strcmp(x->name, y->name);
}

static int resolve_msg(struct stage *st, struct pbd_msg *m)
{
	const struct pbd_field **by_name;
	unsigned i;

	st->file = m->file;
	for (i = 0; i < m->nfields; i++) {
		struct pbd_field *f = &m->fields[i];
		bool untyped = f->type == 0, is_enum;
		const void *t;

		if (!untyped && f->type != PBD_MESSAGE && f->type != PBD_ENUM)
			continue;
		t = lookup(st, f->type_name, &is_enum);
		if (!t || (f->type == PBD_MESSAGE && is_enum) ||
		    (f->type == PBD_ENUM && !is_enum))
			return fail(st, -EBADMSG,
				    "%s.%s: type %s is in no file of the set "
				    "(make it with protoc --include_imports)",
				    m->full_name, f->name, f->type_name);
		if (is_enum) {
			f->type = PBD_ENUM;
			f->enm = t;
			if (untyped && f->label == PBD_REPEATED)
				f->packed = m->proto3; /* the default */
		} else {
			f->type = PBD_MESSAGE;
			f->msg = t;
			f->is_map =
			    f->label == PBD_REPEATED && f->msg->map_entry;
		}
	}
	qsort(m->fields, m->nfields, sizeof(*m->fields), cmp_field_number);
	by_name = arena_alloc(st->pool,
			      (m->nfields ? m->nfields : 1) * sizeof(*by_name));
	if (!by_name)
		return no_memory(st);
	for (i = 0; i < m->nfields; i++) {
		if (i && m->fields[i].number == m->fields[i - 1].number)
			return fail(st, -EBADMSG,
				    "%s: field number %u used twice",
				    m->full_name, m->fields[i].number);
		by_name[i] = &m->fields[i];
		m->nrequired += m->fields[i].label == PBD_REQUIRED;
	}
	qsort(by_name, m->nfields, sizeof(*by_name), cmp_field_name);
	m->by_name = by_name;
	return 0;
}

static int resolve_service(struct stage *st, struct pbd_service *s)
{
	unsigned i;

	st->file = s->file;
	for (i = 0; i < s->nmethods; i++) {
		struct pbd_method *me = (struct pbd_method *)&s->methods[i];
		bool ie, oe;

		me->input = lookup(st, me->input_name, &ie);
		me->output = lookup(st, me->output_name, &oe);
		if (!me->input || ie || !me->output || oe)
			return fail(st, -EBADMSG,
				    "%s.%s: type %s is in no file of the set "
				    "(make it with protoc --include_imports)",
				    s->full_name, me->name,
				    !me->input || ie ? me->input_name
						     : me->output_name);
	}
	return 0;
}

/* Appends the stage's list to the pool's and sorts it. */
static int merge(struct pbd_pool *pool, const void ***v, unsigned *n,
		 unsigned *cap, const struct ptrs *add, def_fn *def)
{
	if (*n + add->n > *cap) {
		unsigned c = *cap ? *cap : 16;
		const void **nv;

		while (c < *n + add->n)
			c *= 2;
		nv = mem_alloc(pool->mem, c * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		if (*n)
			memcpy(nv, *v, *n * sizeof(*nv));
		mem_free(pool->mem, *v);
		*v = nv;
		*cap = c;
	}
	if (add->n)
		memcpy(*v + *n, add->v, add->n * sizeof(**v));
	*n += add->n;
	if (def)
		sort_defs((void **)*v, *n, def);
	return 0;
}

/* ---- the pool ------------------------------------------------------------ */

void pbd_pool_init(struct pbd_pool *pool, const struct mem *mem)
{
	memset(pool, 0, sizeof(*pool));
	pool->mem = mem;
}

void pbd_pool_destroy(struct pbd_pool *pool)
{
	arena_rewind(pool, (struct arena_mark){NULL, 0});
	mem_free(pool->mem, pool->msgs);
	mem_free(pool->mem, pool->enums);
	mem_free(pool->mem, pool->services);
	mem_free(pool->mem, pool->files);
	memset(pool, 0, sizeof(*pool));
}

static void stage_free(struct stage *st)
{
	const struct mem *mem = st->pool->mem;

	mem_free(mem, st->msgs.v);
	mem_free(mem, st->enums.v);
	mem_free(mem, st->services.v);
	mem_free(mem, st->files.v);
}

int pbd_pool_add_set(struct pbd_pool *pool, const void *bytes, size_t len,
		     const char *origin, char *why, size_t why_size)
{
	struct stage st = {.pool = pool,
			   .origin = origin ? origin : "descriptor set",
			   .why = why,
			   .why_size = why_size};
	struct arena_mark mark = arena_mark(pool);
	unsigned nmsgs = pool->nmsgs, nenums = pool->nenums;
	unsigned nservices = pool->nservices;
	struct pbw_rd r;
	struct fld x;
	unsigned i;

	if (why && why_size)
		why[0] = '\0';
	pbw_rd_init(&r, bytes, len);
	while (pbw_rd_more(&r) && !st.err) {
		if (next_field(&r, &x)) {
			bad_bytes(&st, "set");
			break;
		}
		if (x.num == 1 && x.wt == PBW_LEN)
			parse_file(&st, x.p, x.n);
	}
	if (!st.err && !st.files.n)
		fail(&st, -EBADMSG, "not a FileDescriptorSet (no file in it)");
	if (!st.err)
		dedup(&st, &st.msgs, (void *const *)pool->msgs, pool->nmsgs,
		      def_of_msg, "message");
	if (!st.err)
		dedup(&st, &st.enums, (void *const *)pool->enums, pool->nenums,
		      def_of_enum, "enum");
	if (!st.err)
		dedup(&st, &st.services, (void *const *)pool->services,
		      pool->nservices, def_of_service, "service");
	for (i = 0; !st.err && i < st.msgs.n; i++)
		resolve_msg(&st, st.msgs.v[i]);
	for (i = 0; !st.err && i < st.services.n; i++)
		resolve_service(&st, st.services.v[i]);
	if (!st.err &&
	    (merge(pool, (const void ***)&pool->msgs, &pool->nmsgs,
		   &pool->cap_msgs, &st.msgs, def_of_msg) ||
	     merge(pool, (const void ***)&pool->enums, &pool->nenums,
		   &pool->cap_enums, &st.enums, def_of_enum) ||
	     merge(pool, (const void ***)&pool->services, &pool->nservices,
		   &pool->cap_services, &st.services, def_of_service) ||
	     merge(pool, (const void ***)&pool->files, &pool->nfiles,
		   &pool->cap_files, &st.files, NULL)))
		no_memory(&st);
	if (st.err) {
		/* Lists keep their (larger) storage; only counts go back. */
		pool->nmsgs = nmsgs;
		pool->nenums = nenums;
		pool->nservices = nservices;
		arena_rewind(pool, mark);
	}
	stage_free(&st);
	return st.err;
}

/* ---- lookups ------------------------------------------------------------- */

const struct pbd_msg *pbd_find_msg(const struct pbd_pool *pool,
				   const char *full_name)
{
	return find_def((void *const *)pool->msgs, pool->nmsgs, def_of_msg,
			full_name);
}

const struct pbd_enum *pbd_find_enum(const struct pbd_pool *pool,
				     const char *full_name)
{
	return find_def((void *const *)pool->enums, pool->nenums, def_of_enum,
			full_name);
}

static bool name_is(const char *s, const char *name, size_t n)
{
	return !strncmp(s, name, n) && s[n] == '\0';
}

const struct pbd_service *pbd_find_service(const struct pbd_pool *pool,
					   const char *name, size_t n)
{
	const struct pbd_service *shortm = NULL;
	unsigned i, nshort = 0;

	for (i = 0; i < pool->nservices; i++) {
		const struct pbd_service *s = pool->services[i];

		if (name_is(s->full_name, name, n))
			return s;
		if (name_is(s->name, name, n)) {
			shortm = s;
			nshort++;
		}
	}
	return nshort == 1 ? shortm : NULL;
}

const struct pbd_method *pbd_find_method(const struct pbd_service *svc,
					 const char *name, size_t n)
{
	for (unsigned i = 0; i < svc->nmethods; i++)
		if (name_is(svc->methods[i].name, name, n))
			return &svc->methods[i];
	return NULL;
}

const struct pbd_field *pbd_field_by_number(const struct pbd_msg *m,
					    uint32_t number)
{
	unsigned lo = 0, hi = m->nfields;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (m->fields[mid].number == number)
			return &m->fields[mid];
		if (m->fields[mid].number < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* strcmp(s, name[0..n)) where name need not end at n. */
static int cmp_name(const char *s, const char *name, size_t n)
{
	int c = strncmp(s, name, n);

	return c ? c : s[n] != '\0';
}

const struct pbd_field *pbd_field_by_name(const struct pbd_msg *m,
					  const char *name, size_t n)
{
	unsigned lo = 0, hi = m->nfields, i;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = cmp_name(m->by_name[mid]->name, name, n);

		if (!c)
			return m->by_name[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = 0; i < m->nfields; i++)
		if (name_is(m->fields[i].json_name, name, n))
			return &m->fields[i];
	return NULL;
}

const struct pbd_enum_value *pbd_enum_by_number(const struct pbd_enum *e,
						int32_t number)
{
	for (unsigned i = 0; i < e->nvalues; i++)
		if (e->values[i].number == number)
			return &e->values[i];
	return NULL;
}

const struct pbd_enum_value *pbd_enum_by_name(const struct pbd_enum *e,
					      const char *name, size_t n)
{
	for (unsigned i = 0; i < e->nvalues; i++)
		if (name_is(e->values[i].name, name, n))
			return &e->values[i];
	return NULL;
}

static const char *const type_names[] = {
    [PBD_DOUBLE] = "double",	 [PBD_FLOAT] = "float",
    [PBD_INT64] = "int64",	 [PBD_UINT64] = "uint64",
    [PBD_INT32] = "int32",	 [PBD_FIXED64] = "fixed64",
    [PBD_FIXED32] = "fixed32",	 [PBD_BOOL] = "bool",
    [PBD_STRING] = "string",	 [PBD_GROUP] = "group",
    [PBD_MESSAGE] = "message",	 [PBD_BYTES] = "bytes",
    [PBD_UINT32] = "uint32",	 [PBD_ENUM] = "enum",
    [PBD_SFIXED32] = "sfixed32", [PBD_SFIXED64] = "sfixed64",
    [PBD_SINT32] = "sint32",	 [PBD_SINT64] = "sint64",
};

const char *pbd_type_name(const struct pbd_field *f)
{
	if (f->type == PBD_MESSAGE)
		return f->msg->full_name;
	if (f->type == PBD_ENUM)
		return f->enm->full_name;
	return f->type < sizeof(type_names) / sizeof(*type_names) &&
		       type_names[f->type]
		   ? type_names[f->type]
		   : "?";
}

/* ---- printing ------------------------------------------------------------ */

static void indent(struct fbuf *o, int depth)
{
	for (int i = 0; i < depth; i++)
		fbuf_puts(o, "  ");
}

static void print_enum(struct fbuf *o, const struct pbd_enum *e, int depth)
{
	indent(o, depth);
	fbuf_printf(o, "enum %s {\n", e->name);
	for (unsigned i = 0; i < e->nvalues; i++) {
		indent(o, depth + 1);
		fbuf_printf(o, "%s = %d;\n", e->values[i].name,
			    e->values[i].number);
	}
	indent(o, depth);
	fbuf_puts(o, "}\n");
}

static void print_type(struct fbuf *o, const struct pbd_field *f)
{
	if (f->type == PBD_MESSAGE || f->type == PBD_ENUM)
		fbuf_putc(o, '.');
	fbuf_puts(o, pbd_type_name(f));
}

/* A default as .proto writes it: strings quoted, the rest as they are. */
static void print_default(struct fbuf *o, const struct pbd_field *f)
{
	const char *s = f->default_value;

	if (f->type != PBD_STRING && f->type != PBD_BYTES) {
		fbuf_printf(o, " [default = %s]", s);
		return;
	}
	fbuf_puts(o, " [default = \"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fbuf_printf(o, "\\%c", *s);
		else if ((unsigned char)*s < 0x20 || *s == 0x7f)
			fbuf_printf(o, "\\%03o", (unsigned char)*s);
		else
			fbuf_putc(o, *s);
	}
	fbuf_puts(o, "\"]");
}

static void print_field(struct fbuf *o, const struct pbd_field *f, int depth)
{
	static const char *const labels[] = {"", "optional ", "required ",
					     "repeated "};

	indent(o, depth);
	if (f->is_map) {
		fbuf_puts(o, "map<");
		print_type(o, &f->msg->fields[0]);
		fbuf_puts(o, ", ");
		print_type(o, &f->msg->fields[1]);
		fbuf_puts(o, "> ");
	} else {
		/* proto3's singular fields have no label */
		if (!(f->owner->proto3 && f->label == PBD_OPTIONAL))
			fbuf_puts(o, labels[f->label]);
		print_type(o, f);
		fbuf_putc(o, ' ');
	}
	fbuf_printf(o, "%s = %u", f->name, f->number);
	if (f->default_value)
		print_default(o, f);
	else if (f->packed && !f->owner->proto3)
		fbuf_puts(o, " [packed = true]");
	fbuf_puts(o, ";\n");
}

static bool map_entry_ok(const struct pbd_msg *m)
{
	return m->nfields == 2 && m->fields[0].number == 1 &&
	       m->fields[1].number == 2;
}

static void print_msg(const struct pbd_pool *pool, struct fbuf *o,
		      const struct pbd_msg *m, int depth)
{
	unsigned i;

	indent(o, depth);
	fbuf_printf(o, "message %s {\n", m->name);
	for (i = 0; i < pool->nmsgs; i++)
		if (pool->msgs[i]->parent == m &&
		    !(pool->msgs[i]->map_entry && map_entry_ok(pool->msgs[i])))
			print_msg(pool, o, pool->msgs[i], depth + 1);
	for (i = 0; i < pool->nenums; i++)
		if (pool->enums[i]->parent == m)
			print_enum(o, pool->enums[i], depth + 1);
	for (i = 0; i < m->nfields; i++) {
		const struct pbd_field *f = &m->fields[i];

		if (f->is_map && !map_entry_ok(f->msg)) {
			struct pbd_field plain = *f;

			plain.is_map = false;
			print_field(o, &plain, depth + 1);
		} else {
			print_field(o, f, depth + 1);
		}
	}
	indent(o, depth);
	fbuf_puts(o, "}\n");
}

static void print_service(struct fbuf *o, const struct pbd_service *s)
{
	fbuf_printf(o, "service %s {\n", s->name);
	for (unsigned i = 0; i < s->nmethods; i++) {
		const struct pbd_method *me = &s->methods[i];

		fbuf_printf(o, "  rpc %s(%s.%s) returns (%s.%s);\n", me->name,
			    me->client_streaming ? "stream " : "",
			    me->input->full_name,
			    me->server_streaming ? "stream " : "",
			    me->output->full_name);
	}
	fbuf_puts(o, "}\n");
}

int pbd_print(const struct pbd_pool *pool, const char *full_name,
	      struct fbuf *out)
{
	const struct pbd_service *s;
	const struct pbd_msg *m;
	const struct pbd_enum *e;

	if ((m = pbd_find_msg(pool, full_name)))
		print_msg(pool, out, m, 0);
	else if ((e = pbd_find_enum(pool, full_name)))
		print_enum(out, e, 0);
	else if ((s = pbd_find_service(pool, full_name, strlen(full_name))) &&
		 !strcmp(s->full_name, full_name))
		print_service(out, s);
	else
		return -ENOENT;
	return 0;
}
