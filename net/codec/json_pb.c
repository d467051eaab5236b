/* json_pb: JSON <-> protobuf wire bytes by descriptor (see json_pb.h). */
#include "json_pb.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base64.h"
#include "json.h"
#include "pbwire.h"

/* Fields a message may have before the seen-set leaves the stack. */
#define JPB_STACK_FIELDS 256

/* The value text quoted in an error, as brpc quotes it. */
#define JPB_VALUE_SHOWN 64

static int set_why(char *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int set_why(char *why, const char *fmt, ...)
{
	va_list ap;

	if (why[0])
		return -EBADMSG; /* the first reason stands */
	va_start(ap, fmt);
	vsnprintf(why, JPB_WHY_MAX, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

/* A set of a message's fields (by index), on the stack when small. */
struct seen {
	uint64_t small[JPB_STACK_FIELDS / 64];
	uint64_t *bits;
	const struct mem *mem;
};

static int seen_init(struct seen *s, unsigned nfields, const struct mem *mem)
{
	size_t words = (nfields + 63) / 64;

	s->mem = mem;
	if (nfields <= JPB_STACK_FIELDS) {
		s->bits = s->small;
		memset(s->small, 0, sizeof(s->small));
		return 0;
	}
	s->bits = mem_zalloc(mem, words * sizeof(uint64_t));
	return s->bits ? 0 : -ENOMEM;
}

static void seen_destroy(struct seen *s)
{
	if (s->bits != s->small)
		mem_free(s->mem, s->bits);
}

static void seen_add(struct seen *s, unsigned i)
{
	s->bits[i / 64] |= 1ull << (i % 64);
}

static bool seen_has(const struct seen *s, unsigned i)
{
	return s->bits[i / 64] >> (i % 64) & 1;
}

/* The first required field of m not in `seen`, or NULL. */
static const struct pbd_field *missing(const struct pbd_msg *m,
				       const struct seen *s)
{
	for (unsigned i = 0; i < m->nfields && m->nrequired; i++)
		if (m->fields[i].label == PBD_REQUIRED && !seen_has(s, i))
			return &m->fields[i];
	return NULL;
}

static uint32_t wire_type_of(unsigned type)
{
	switch (type) {
	case PBD_DOUBLE:
	case PBD_FIXED64:
	case PBD_SFIXED64:
		return PBW_I64;
	case PBD_FLOAT:
	case PBD_FIXED32:
	case PBD_SFIXED32:
		return PBW_I32;
	case PBD_STRING:
	case PBD_BYTES:
	case PBD_MESSAGE:
		return PBW_LEN;
	default:
		return PBW_VARINT;
	}
}

/* ==== JSON -> wire ======================================================= */

struct j2p {
	struct json_rd r;
	struct fbuf *out;
	struct fbuf scratch; /* strings with escapes */
	struct fbuf tmp;     /* decoded base64 */
	const struct mem *mem;
	char *why;
	int depth;
	const struct pbd_msg *cur; /* the message being read, for texts */
};

static int msg_from_json(struct j2p *c, const struct pbd_msg *m);

/* "Invalid value `V' for field `F' which SHOULD be T", brpc's words. */
static int invalid(struct j2p *c, const struct pbd_field *f, const char *want)
{
	char v[JPB_VALUE_SHOWN + 1];
	int ch = json_peek(&c->r);

	if (ch < 0 || ch == '}' || ch == ']' || ch == ',' || ch == ':')
		return json_fail(&c->r, "expected a value");

	json_value_text(&c->r, v, sizeof(v));
	return set_why(c->why,
		       "Invalid value `%s' for field `%s.%s' which SHOULD be "
		       "%s",
		       v, f->owner->full_name, f->name, want);
}

static const char *want_of(const struct pbd_field *f)
{
	if (f->type == PBD_MESSAGE)
		return "object";
	if (f->type == PBD_ENUM)
		return f->enm->full_name;
	return pbd_type_name(f);
}

/* A number as text: a JSON number, or a JSON string holding one (the
 * proto3 mapping takes both for every numeric type). */
static int number_text(struct j2p *c, const char **s, size_t *n, bool *quoted)
{
	int ch = json_peek(&c->r);

	*quoted = ch == '"';
	if (*quoted)
		return json_string(&c->r, &c->scratch, s, n);
	if (ch == '-' || (ch >= '0' && ch <= '9'))
		return json_number(&c->r, s, n);
	return 1; /* not a number at all */
}

/*
 * One value of field f, as wire bytes of its type (with no key when it
 * goes into a packed run).  A message field's value is a LEN with the
 * message inside.
 */
static int value_from_json(struct j2p *c, const struct pbd_field *f)
{
	struct json_rd before = c->r;
	const char *s;
	size_t n;
	bool quoted;
	int ch = json_peek(&c->r), err;
	int64_t i;
	uint64_t u;
	double d;

	switch (f->type) {
	case PBD_MESSAGE: {
		size_t mark;

		if (ch != '{')
			return invalid(c, f, "object");
		if (++c->depth > JSON_MAX_DEPTH)
			return json_fail(&c->r, "nested too deep");
		mark = pbw_buf_len_begin(c->out);
		err = msg_from_json(c, f->msg);
		pbw_buf_len_end(c->out, mark);
		c->depth--;
		return err;
	}
	case PBD_STRING:
	case PBD_BYTES:
		if (ch != '"')
			return invalid(c, f, pbd_type_name(f));
		if ((err = json_string(&c->r, &c->scratch, &s, &n)))
			return err;
		if (f->type == PBD_BYTES) {
			fbuf_clear(&c->tmp);
			if (base64_decode(&c->tmp, s, n))
				return set_why(c->why,
					       "Fail to decode base64 "
					       "string=%.*s [%s]",
					       (int)(n > JPB_VALUE_SHOWN
							 ? JPB_VALUE_SHOWN
							 : n),
					       s, f->owner->name);
			s = (const char *)c->tmp.p;
			n = c->tmp.len;
		}
		pbw_buf_varint(c->out, n);
		fbuf_append(c->out, s, n);
		return 0;
	case PBD_BOOL:
		if (ch == 't' && !json_literal(&c->r, "true"))
			pbw_buf_varint(c->out, 1);
		else if (ch == 'f' && !json_literal(&c->r, "false"))
			pbw_buf_varint(c->out, 0);
		else
			return c->r = before, invalid(c, f, "bool");
		return 0;
	case PBD_ENUM: {
		const struct pbd_enum_value *ev = NULL;

		if (ch == '"') {
			if ((err = json_string(&c->r, &c->scratch, &s, &n)))
				return err;
			ev = pbd_enum_by_name(f->enm, s, n);
			if (!ev)
				return c->r = before, invalid(c, f, want_of(f));
			i = ev->number;
		} else if (ch == '-' || (ch >= '0' && ch <= '9')) {
			if ((err = json_number(&c->r, &s, &n)))
				return err;
			/* any int32: a number with no name is kept as it is
			 * (and written back as a number), as the wire keeps
			 * it */
			if (json_parse_i64(s, n, INT32_MIN, INT32_MAX, &i))
				return c->r = before, invalid(c, f, want_of(f));
		} else {
			return invalid(c, f, want_of(f));
		}
		pbw_buf_varint(c->out, (uint64_t)i);
		return 0;
	}
	default:
		break;
	}
	/* the numeric types */
	err = number_text(c, &s, &n, &quoted);
	if (err == 1)
		return invalid(c, f, pbd_type_name(f));
	if (err)
		return err;
	switch (f->type) {
	case PBD_INT32:
	case PBD_SINT32:
	case PBD_SFIXED32:
		err = json_parse_i64(s, n, INT32_MIN, INT32_MAX, &i);
		break;
	case PBD_INT64:
	case PBD_SINT64:
	case PBD_SFIXED64:
		err = json_parse_i64(s, n, INT64_MIN, INT64_MAX, &i);
		break;
	case PBD_UINT32:
	case PBD_FIXED32:
		err = json_parse_u64(s, n, UINT32_MAX, &u);
		break;
	case PBD_UINT64:
	case PBD_FIXED64:
		err = json_parse_u64(s, n, UINT64_MAX, &u);
		break;
	default: /* float, double */
		err = json_parse_double(s, n, &d);
		if (!err && f->type == PBD_FLOAT && isfinite(d) &&
		    fabs(d) > FLT_MAX)
			err = -ERANGE;
		break;
	}
	if (err)
		return c->r = before, invalid(c, f, pbd_type_name(f));
	switch (f->type) {
	case PBD_INT32:
	case PBD_INT64:
		pbw_buf_varint(c->out, (uint64_t)i);
		break;
	case PBD_SINT32:
		pbw_buf_varint(c->out, pbw_zigzag32((int32_t)i));
		break;
	case PBD_SINT64:
		pbw_buf_varint(c->out, pbw_zigzag64(i));
		break;
	case PBD_SFIXED32:
		pbw_buf_fixed32(c->out, (uint32_t)(int32_t)i);
		break;
	case PBD_SFIXED64:
		pbw_buf_fixed64(c->out, (uint64_t)i);
		break;
	case PBD_UINT32:
	case PBD_UINT64:
		pbw_buf_varint(c->out, u);
		break;
	case PBD_FIXED32:
		pbw_buf_fixed32(c->out, (uint32_t)u);
		break;
	case PBD_FIXED64:
		pbw_buf_fixed64(c->out, u);
		break;
	case PBD_FLOAT: {
		float fl = (float)d;
		uint32_t bits;

		memcpy(&bits, &fl, 4);
		pbw_buf_fixed32(c->out, bits);
		break;
	}
	default: {
		uint64_t bits;

		memcpy(&bits, &d, 8);
		pbw_buf_fixed64(c->out, bits);
	}
	}
	return 0;
}

static void put_key(struct j2p *c, uint32_t num, uint32_t wt)
{
	pbw_buf_varint(c->out, pbw_key(num, wt));
}

/* A map's key, from a JSON member name, as field 1 of the entry. */
static int map_key(struct j2p *c, const struct pbd_field *f, const char *s,
		   size_t n)
{
	const struct pbd_field *kf = &f->msg->fields[0];
	int64_t i;
	uint64_t u;
	int err = 0;

	put_key(c, 1, wire_type_of(kf->type));
	switch (kf->type) {
	case PBD_STRING:
		pbw_buf_varint(c->out, n);
		fbuf_append(c->out, s, n);
		return 0;
	case PBD_BOOL:
		if (n == 4 && !memcmp(s, "true", 4))
			pbw_buf_varint(c->out, 1);
		else if (n == 5 && !memcmp(s, "false", 5))
			pbw_buf_varint(c->out, 0);
		else
			err = -EINVAL;
		break;
	case PBD_INT32:
	case PBD_SINT32:
	case PBD_SFIXED32:
		err = json_parse_i64(s, n, INT32_MIN, INT32_MAX, &i);
		u = kf->type == PBD_SINT32 ? pbw_zigzag32((int32_t)i)
					   : (uint64_t)i;
		break;
	case PBD_INT64:
	case PBD_SINT64:
	case PBD_SFIXED64:
		err = json_parse_i64(s, n, INT64_MIN, INT64_MAX, &i);
		u = kf->type == PBD_SINT64 ? pbw_zigzag64(i) : (uint64_t)i;
		break;
	case PBD_UINT32:
	case PBD_FIXED32:
		err = json_parse_u64(s, n, UINT32_MAX, &u);
		break;
	default:
		err = json_parse_u64(s, n, UINT64_MAX, &u);
		break;
	}
	if (err)
		return set_why(c->why,
			       "Invalid map key `%.*s' for field `%s.%s' which "
			       "SHOULD be %s",
			       (int)(n > JPB_VALUE_SHOWN ? JPB_VALUE_SHOWN : n),
			       s, f->owner->full_name, f->name,
			       pbd_type_name(kf));
	if (kf->type == PBD_BOOL)
		return 0;
	if (kf->type == PBD_FIXED32 || kf->type == PBD_SFIXED32)
		pbw_buf_fixed32(c->out, (uint32_t)u);
	else if (kf->type == PBD_FIXED64 || kf->type == PBD_SFIXED64)
		pbw_buf_fixed64(c->out, u);
	else
		pbw_buf_varint(c->out, u);
	return 0;
}

static int map_from_json(struct j2p *c, const struct pbd_field *f)
{
	const struct pbd_field *vf = &f->msg->fields[1];
	const char *s;
	size_t n, mark;
	int more, err;

	if (json_peek(&c->r) != '{')
		return invalid(c, f, "object");
	c->r.p++;
	if (json_peek(&c->r) == '}') {
		c->r.p++;
		return 0;
	}
	do {
		if ((err = json_string(&c->r, &c->scratch, &s, &n)))
			return err;
		put_key(c, f->number, PBW_LEN);
		mark = pbw_buf_len_begin(c->out);
		if ((err = map_key(c, f, s, n)) ||
		    (err =
			 json_expect(&c->r, ':', "expected ':' after a name")))
			return err;
		if (json_peek(&c->r) == 'n')
			return invalid(c, vf, want_of(vf));
		put_key(c, 2, wire_type_of(vf->type));
		if ((err = value_from_json(c, vf)))
			return err;
		pbw_buf_len_end(c->out, mark);
		more = json_next(&c->r, '}');
		if (more < 0)
			return more;
	} while (more);
	return 0;
}

static int repeated_from_json(struct j2p *c, const struct pbd_field *f)
{
	size_t start = c->out->len, mark = 0;
	bool any = false;
	int more, err;

	if (json_peek(&c->r) != '[')
		return invalid(c, f, "array");
	c->r.p++;
	if (json_peek(&c->r) == ']') {
		c->r.p++;
		return 0;
	}
	if (f->packed) {
		put_key(c, f->number, PBW_LEN);
		mark = pbw_buf_len_begin(c->out);
	}
	do {
		if (json_peek(&c->r) == 'n')
			return invalid(c, f, want_of(f));
		if (!f->packed)
			put_key(c, f->number, wire_type_of(f->type));
		if ((err = value_from_json(c, f)))
			return err;
		any = true;
		more = json_next(&c->r, ']');
		if (more < 0)
			return more;
	} while (more);
	if (f->packed)
		pbw_buf_len_end(c->out, mark);
	if (!any)
		c->out->len = start;
	return 0;
}

static int msg_from_json(struct j2p *c, const struct pbd_msg *m)
{
	const struct pbd_msg *outer = c->cur;
	const struct pbd_field *f;
	struct seen seen;
	const char *s;
	size_t n;
	int more, err = 0;

	if ((err = json_expect(&c->r, '{', "expected an object")))
		return err;
	if (seen_init(&seen, m->nfields, c->mem))
		return -ENOMEM;
	c->cur = m;
	if (json_peek(&c->r) == '}') {
		c->r.p++;
		goto check;
	}
	do {
		if ((err = json_string(&c->r, &c->scratch, &s, &n)) ||
		    (err =
			 json_expect(&c->r, ':', "expected ':' after a name")))
			break;
		f = pbd_field_by_name(m, s, n);
		if (!f) {
			err = json_skip(&c->r, &c->scratch); /* as brpc */
		} else if (json_peek(&c->r) == 'n') {
			err = json_literal(&c->r, "null"); /* left unset */
		} else {
			if (f->is_map)
				err = map_from_json(c, f);
			else if (f->label == PBD_REPEATED)
				err = repeated_from_json(c, f);
			else {
				put_key(c, f->number, wire_type_of(f->type));
				err = value_from_json(c, f);
			}
			seen_add(&seen, (unsigned)(f - m->fields));
		}
		if (err)
			break;
		more = json_next(&c->r, '}');
		if (more < 0)
			err = more;
	} while (!err && more);
check:
	if (!err && (f = missing(m, &seen)))
		err = set_why(c->why, "Missing required field: %s.%s",
			      m->full_name, f->name);
	seen_destroy(&seen);
	if (!err)
		c->cur = outer; /* on an error the innermost is named */
	return err;
}

int jpb_from_json(const struct pbd_msg *m, const char *json, size_t n,
		  struct fbuf *pb, char why[JPB_WHY_MAX])
{
	struct j2p c = {.out = pb, .mem = pb->mem, .why = why, .cur = m};
	int err, ch;

	why[0] = '\0';
	json_rd_init(&c.r, json, n);
	ch = json_peek(&c.r);
	if (ch < 0)
		return m->nrequired ? -ENODATA : 0;
	if (ch != '{')
		return set_why(why, "The input is not a json object [%s]",
			       m->name);
	fbuf_init(&c.scratch, pb->mem, 0);
	fbuf_init(&c.tmp, pb->mem, 0);
	err = msg_from_json(&c, m);
	if (!err && json_peek(&c.r) >= 0)
		err = json_fail(&c.r, "the object is followed by more "
				      "bytes");
	if (!err && (c.scratch.err || c.tmp.err))
		err = -ENOMEM;
	if (!err && pb->err)
		err = pb->err;
	if (err == -EBADMSG && !why[0])
		snprintf(why, JPB_WHY_MAX,
			 "Invalid json: %s at offset %zu [%s]",
			 c.r.why ? c.r.why : "bad syntax", c.r.at, c.cur->name);
	fbuf_destroy(&c.scratch);
	fbuf_destroy(&c.tmp);
	return err;
}

/* ==== wire -> JSON ======================================================= */

/* One field's occurrence in a message's bytes. */
struct ent {
	uint32_t field; /* index in the message's fields */
	uint32_t wt;
	uint64_t v; /* VARINT, I32, I64 values */
	const uint8_t *p;
	size_t n; /* LEN values */
};

struct p2j {
	struct fbuf *out;
	struct fbuf ents; /* a stack of struct ent, one frame per message */
	char *why;
	int depth;
};

static int msg_to_json(struct p2j *c, const struct pbd_msg *m, const uint8_t *p,
		       size_t n);

static struct ent *ent_at(struct p2j *c, size_t i)
{
	return (struct ent *)(void *)c->ents.p + i;
}

static void put_enum(struct fbuf *o, const struct pbd_enum *e, int32_t v)
{
	const struct pbd_enum_value *ev = pbd_enum_by_number(e, v);

	if (ev)
		json_put_string(o, ev->name, strlen(ev->name));
	else
		json_put_i64(o, v);
}

/* A scalar from its VARINT, I32 or I64 value. */
static void put_scalar(struct fbuf *o, const struct pbd_field *f, uint64_t v)
{
	switch (f->type) {
	case PBD_INT32:
	case PBD_SFIXED32:
		json_put_i64(o, (int32_t)(uint32_t)v);
		break;
	case PBD_INT64:
	case PBD_SFIXED64:
		json_put_i64(o, (int64_t)v);
		break;
	case PBD_UINT32:
	case PBD_FIXED32:
		json_put_u64(o, (uint32_t)v);
		break;
	case PBD_UINT64:
	case PBD_FIXED64:
		json_put_u64(o, v);
		break;
	case PBD_SINT32:
		json_put_i64(o, pbw_unzigzag32((uint32_t)v));
		break;
	case PBD_SINT64:
		json_put_i64(o, pbw_unzigzag64(v));
		break;
	case PBD_BOOL:
		fbuf_puts(o, v ? "true" : "false");
		break;
	case PBD_ENUM:
		put_enum(o, f->enm, (int32_t)(uint32_t)v);
		break;
	case PBD_FLOAT: {
		uint32_t bits = (uint32_t)v;
		float fl;

		memcpy(&fl, &bits, 4);
		json_put_float(o, fl);
		break;
	}
	case PBD_DOUBLE: {
		double d;

		memcpy(&d, &v, 8);
		json_put_double(o, d);
		break;
	}
	}
}

static int bad_wire(struct p2j *c, const struct pbd_msg *m, uint32_t num)
{
	return set_why(c->why, "the bytes are not a %s (field %u)",
		       m->full_name, num);
}

/* A value of field f (not repeated-packed) from its occurrence. */
static int put_value(struct p2j *c, const struct pbd_field *f,
		     const struct ent *e)
{
	switch (f->type) {
	case PBD_STRING:
		json_put_string(c->out, (const char *)e->p, e->n);
		return 0;
	case PBD_BYTES:
		fbuf_putc(c->out, '"');
		base64_encode(c->out, e->p, e->n);
		fbuf_putc(c->out, '"');
		return 0;
	case PBD_MESSAGE:
		return msg_to_json(c, f->msg, e->p, e->n);
	default:
		put_scalar(c->out, f, e->v);
		return 0;
	}
}

/* The values of a packed run of field f. */
static int put_packed(struct p2j *c, const struct pbd_msg *m,
		      const struct pbd_field *f, const struct ent *e,
		      bool *first)
{
	uint32_t wt = wire_type_of(f->type), v32;
	struct pbw_rd r;
	uint64_t v;

	pbw_rd_init(&r, e->p, e->n);
	while (pbw_rd_more(&r)) {
		int err = wt == PBW_VARINT ? pbw_get_varint(&r, &v)
			  : wt == PBW_I64  ? pbw_get_fixed64(&r, &v)
					   : pbw_get_fixed32(&r, &v32);

		if (err)
			return bad_wire(c, m, f->number);
		if (wt == PBW_I32)
			v = v32;
		if (!*first)
			fbuf_putc(c->out, ',');
		*first = false;
		put_scalar(c->out, f, v);
	}
	return 0;
}

/* A map entry's key (field 1) and value (field 2): the last of each. */
static int put_map_entry(struct p2j *c, const struct pbd_field *f,
			 const struct ent *e)
{
	const struct pbd_msg *em = f->msg;
	const struct pbd_field *kf = &em->fields[0], *vf = &em->fields[1];
	struct ent k = {.wt = wire_type_of(kf->type)};
	struct ent v = {.wt = wire_type_of(vf->type)};
	bool has_v = false;
	struct pbw_rd r;
	uint32_t num, wt, v32;

	pbw_rd_init(&r, e->p, e->n);
	while (pbw_rd_more(&r)) {
		struct ent *t;
		int err;

		if (pbw_get_key(&r, &num, &wt))
			return bad_wire(c, em, 0);
		t = num == 1 ? &k : num == 2 ? &v : NULL;
		if (!t) {
			if (pbw_skip(&r, wt))
				return bad_wire(c, em, num);
			continue;
		}
		if (wt != t->wt)
			return bad_wire(c, em, num);
		err = wt == PBW_VARINT ? pbw_get_varint(&r, &t->v)
		      : wt == PBW_I64  ? pbw_get_fixed64(&r, &t->v)
		      : wt == PBW_I32  ? pbw_get_fixed32(&r, &v32)
				       : pbw_get_len(&r, &t->p, &t->n);
		if (err)
			return bad_wire(c, em, num);
		if (wt == PBW_I32)
			t->v = v32;
		has_v |= num == 2;
	}
	if (kf->type == PBD_STRING) {
		json_put_string(c->out, (const char *)k.p, k.n);
	} else {
		fbuf_putc(c->out, '"');
		put_scalar(c->out, kf, k.v);
		fbuf_putc(c->out, '"');
	}
	fbuf_putc(c->out, ':');
	if (!has_v && vf->type == PBD_MESSAGE) {
		fbuf_puts(c->out, "{}");
		return 0;
	}
	if (!has_v && vf->type == PBD_ENUM) {
		put_enum(c->out, vf->enm,
			 vf->enm->nvalues ? vf->enm->values[0].number : 0);
		return 0;
	}
	return put_value(c, vf, &v);
}

/* Reads m's bytes into a frame of occurrences, in field order. */
static int scan(struct p2j *c, const struct pbd_msg *m, const uint8_t *p,
		size_t n, size_t base, size_t *count)
{
	const struct pbd_field *f = NULL;
	struct pbw_rd r;
	uint32_t num, wt, v32;
	bool sorted = true;
	size_t k = 0, i, j;

	pbw_rd_init(&r, p, n);
	while (pbw_rd_more(&r)) {
		struct ent e = {0};
		int err;

		if (pbw_get_key(&r, &num, &wt))
			return bad_wire(c, m, 0);
		/* fields mostly come in order: try the next one first */
		if (!f || f->number != num) {
			const struct pbd_field *nx = f ? f + 1 : m->fields;

			f = nx < m->fields + m->nfields && nx->number == num
				? nx
				: pbd_field_by_number(m, num);
		}
		if (!f) {
			if (pbw_skip(&r, wt))
				return bad_wire(c, m, num);
			continue;
		}
		e.field = (uint32_t)(f - m->fields);
		e.wt = wt;
		if (wt != wire_type_of(f->type) &&
		    !(wt == PBW_LEN && f->label == PBD_REPEATED))
			return bad_wire(c, m, num);
		err = wt == PBW_VARINT ? pbw_get_varint(&r, &e.v)
		      : wt == PBW_I64  ? pbw_get_fixed64(&r, &e.v)
		      : wt == PBW_I32  ? pbw_get_fixed32(&r, &v32)
				       : pbw_get_len(&r, &e.p, &e.n);
		if (err)
			return bad_wire(c, m, num);
		if (wt == PBW_I32)
			e.v = v32;
		if (k && ent_at(c, base + k - 1)->field > e.field)
			sorted = false;
		fbuf_append(&c->ents, &e, sizeof(e));
		if (c->ents.err)
			return c->ents.err;
		k++;
	}
	if (!sorted) {
		/* stable insertion sort: rare, and runs are short */
		for (i = 1; i < k; i++) {
			struct ent e = *ent_at(c, base + i);

			for (j = i;
			     j && ent_at(c, base + j - 1)->field > e.field; j--)
				*ent_at(c, base + j) = *ent_at(c, base + j - 1);
			*ent_at(c, base + j) = e;
		}
	}
	*count = k;
	return 0;
}

static void put_name(struct p2j *c, const struct pbd_field *f, bool *first)
{
	if (!*first)
		fbuf_putc(c->out, ',');
	*first = false;
	json_put_string(c->out, f->name, strlen(f->name));
	fbuf_putc(c->out, ':');
}

/* A singular message given in more than one piece: merged, as the wire
 * format merges them, by joining the pieces. */
static int put_joined(struct p2j *c, const struct pbd_field *f, size_t from,
		      size_t to)
{
	struct fbuf joined;
	int err;

	fbuf_init(&joined, c->ents.mem, 0);
	for (size_t i = from; i < to; i++)
		fbuf_append(&joined, ent_at(c, i)->p, ent_at(c, i)->n);
	err = joined.err ? joined.err
			 : msg_to_json(c, f->msg, joined.p, joined.len);
	fbuf_destroy(&joined);
	return err;
}

static int msg_to_json(struct p2j *c, const struct pbd_msg *m, const uint8_t *p,
		       size_t n)
{
	size_t base = c->ents.len / sizeof(struct ent), count = 0, i, j;
	struct seen seen;
	bool first = true;
	int err;

	if (++c->depth > JSON_MAX_DEPTH) {
		c->depth--;
		return set_why(c->why, "%s nested more than %d deep",
			       m->full_name, JSON_MAX_DEPTH);
	}
	err = scan(c, m, p, n, base, &count);
	if (!err)
		err = seen_init(&seen, m->nfields, c->ents.mem);
	if (err)
		goto out;
	fbuf_putc(c->out, '{');
	for (i = 0; i < count && !err; i = j) {
		const struct pbd_field *f =
		    &m->fields[ent_at(c, base + i)->field];
		bool fv = true;

		for (j = i + 1; j < count && ent_at(c, base + j)->field ==
						 ent_at(c, base + i)->field;
		     j++)
			;
		seen_add(&seen, ent_at(c, base + i)->field);
		if (f->is_map)
			continue; /* after the others, as brpc */
		if (f->label == PBD_REPEATED &&
		    wire_type_of(f->type) != PBW_LEN) {
			/* empty packed runs hold no value: no field at all */
			size_t k = i;

			while (k < j && ent_at(c, base + k)->wt == PBW_LEN &&
			       !ent_at(c, base + k)->n)
				k++;
			if (k == j)
				continue;
		}
		put_name(c, f, &first);
		if (f->label != PBD_REPEATED) {
			/* singular: the last one wins, messages merge */
			struct ent last = *ent_at(c, base + j - 1);

			if (f->type == PBD_MESSAGE && j - i > 1)
				err = put_joined(c, f, base + i, base + j);
			else
				err = put_value(c, f, &last);
			continue;
		}
		fbuf_putc(c->out, '[');
		for (size_t k = i; k < j && !err; k++) {
			/* a copy: the stack of occurrences may move */
			struct ent e = *ent_at(c, base + k);

			if (e.wt == PBW_LEN &&
			    wire_type_of(f->type) != PBW_LEN) {
				err = put_packed(c, m, f, &e, &fv);
				continue;
			}
			if (!fv)
				fbuf_putc(c->out, ',');
			fv = false;
			err = put_value(c, f, &e);
		}
		fbuf_putc(c->out, ']');
	}
	/* maps, every one, empty or not */
	for (i = 0; i < m->nfields && !err; i++) {
		const struct pbd_field *f = &m->fields[i];
		bool fe = true;

		if (!f->is_map)
			continue;
		put_name(c, f, &first);
		fbuf_putc(c->out, '{');
		for (j = 0; j < count && !err; j++) {
			if (ent_at(c, base + j)->field != i)
				continue;
			struct ent e = *ent_at(c, base + j);

			if (!fe)
				fbuf_putc(c->out, ',');
			fe = false;
			err = put_map_entry(c, f, &e);
		}
		fbuf_putc(c->out, '}');
	}
	fbuf_putc(c->out, '}');
	if (!err) {
		const struct pbd_field *f = missing(m, &seen);

		if (f)
			err = set_why(c->why, "Missing required field: %s.%s",
				      m->full_name, f->name);
	}
	seen_destroy(&seen);
out:
	c->ents.len = base * sizeof(struct ent);
	c->depth--;
	return err;
}

int jpb_to_json(const struct pbd_msg *m, const uint8_t *pb, size_t n,
		struct fbuf *json, char why[JPB_WHY_MAX])
{
	struct p2j c = {.out = json, .why = why};
	int err;

	why[0] = '\0';
	fbuf_init(&c.ents, json->mem, 0);
	err = msg_to_json(&c, m, pb, n);
	if (!err && json->err)
		err = json->err;
	fbuf_destroy(&c.ents);
	return err;
}
