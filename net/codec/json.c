/* json: the lexer and the writer (see json.h). */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

void json_rd_init(struct json_rd *r, const char *p, size_t n)
{
	*r = (struct json_rd){.p = p, .start = p, .end = n ? p + n : p};
}

int json_fail(struct json_rd *r, const char *why)
{
	if (!r->why) {
		r->why = why;
		r->at = (size_t)(r->p - r->start);
	}
	return -EBADMSG;
}

int json_peek(struct json_rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' ||
				 *r->p == '\n' || *r->p == '\r'))
		r->p++;
	return r->p < r->end ? (unsigned char)*r->p : -1;
}

int json_expect(struct json_rd *r, char c, const char *why)
{
	if (json_peek(r) != (unsigned char)c)
		return json_fail(r, why);
	r->p++;
	return 0;
}

int json_next(struct json_rd *r, char close)
{
	int c = json_peek(r);

	if (c == ',') {
		r->p++;
		return true;
	}
	if (c == (unsigned char)close) {
		r->p++;
		return false;
	}
	return json_fail(r, close == '}' ? "expected ',' or '}' after a member"
					 : "expected ',' or ']' after a value");
}

static int hex4(const char *p, uint32_t *v)
{
	uint32_t x = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		x <<= 4;
		if (c >= '0' && c <= '9')
			x |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			x |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			x |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*v = x;
	return 0;
}

static size_t put_utf8(uint8_t *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (uint8_t)(0xc0 | cp >> 6);
		o[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (uint8_t)(0xe0 | cp >> 12);
		o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (uint8_t)(0xf0 | cp >> 18);
	o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * The length of the UTF-8 sequence at p (p < end, *p >= 0x80), or 0 when
 * it is not one (overlong, a surrogate, past U+10FFFF, cut short).
 */
static size_t utf8_len(const uint8_t *p, const uint8_t *end)
{
	size_t n, i;
	uint32_t cp;

	if (*p >= 0xc2 && *p <= 0xdf)
		n = 2, cp = *p & 0x1f;
	else if (*p >= 0xe0 && *p <= 0xef)
		n = 3, cp = *p & 0x0f;
	else if (*p >= 0xf0 && *p <= 0xf4)
		n = 4, cp = *p & 0x07;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

int json_string(struct json_rd *r, struct fbuf *scratch, const char **s,
		size_t *n)
{
	const uint8_t *end = (const uint8_t *)r->end, *p, *run;
	bool copied = false;

	if (json_peek(r) != '"')
		return json_fail(r, "expected a string");
	p = (const uint8_t *)r->p + 1;
	run = p;
	for (;;) {
		size_t k;

		if (p == end) {
			r->p = (const char *)p;
			return json_fail(r, "unterminated string");
		}
		if (*p == '"')
			break;
		if (*p < 0x20) {
			r->p = (const char *)p;
			return json_fail(r, "control character in a string");
		}
		if (*p < 0x80 && *p != '\\') {
			p++;
			continue;
		}
		if (*p >= 0x80) {
			if (!(k = utf8_len(p, end))) {
				r->p = (const char *)p;
				return json_fail(r,
						 "invalid UTF-8 in a string");
			}
			p += k;
			continue;
		}
		/* an escape: the bytes so far go to the scratch buffer */
		if (!copied) {
			fbuf_clear(scratch);
			copied = true;
		}
		fbuf_append(scratch, run, (size_t)(p - run));
		if (end - p < 2) {
			r->p = (const char *)p;
			return json_fail(r, "unterminated string");
		}
		switch (p[1]) {
		case '"':
		case '\\':
		case '/':
			fbuf_putc(scratch, (char)p[1]);
			p += 2;
			break;
		case 'b':
			fbuf_putc(scratch, '\b');
			p += 2;
			break;
		case 'f':
			fbuf_putc(scratch, '\f');
			p += 2;
			break;
		case 'n':
			fbuf_putc(scratch, '\n');
			p += 2;
			break;
		case 'r':
			fbuf_putc(scratch, '\r');
			p += 2;
			break;
		case 't':
			fbuf_putc(scratch, '\t');
			p += 2;
			break;
		case 'u': {
			uint32_t cp, lo;
			uint8_t *o;

			if (end - p < 6 || hex4((const char *)p + 2, &cp)) {
				r->p = (const char *)p;
				return json_fail(r, "bad \\u escape");
			}
			p += 6;
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				r->p = (const char *)p - 6;
				return json_fail(r, "lone low surrogate");
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (end - p < 6 || p[0] != '\\' ||
				    p[1] != 'u' ||
				    hex4((const char *)p + 2, &lo) ||
				    lo < 0xdc00 || lo > 0xdfff) {
					r->p = (const char *)p - 6;
					return json_fail(r,
							 "lone high surrogate");
				}
				p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			}
			o = fbuf_room(scratch, 4);
			if (o)
				scratch->len += put_utf8(o, cp);
			break;
		}
		default:
			r->p = (const char *)p;
			return json_fail(r, "bad escape in a string");
		}
		run = p;
	}
	if (copied) {
		fbuf_append(scratch, run, (size_t)(p - run));
		if (scratch->err)
			return scratch->err;
		*s = (const char *)scratch->p;
		*n = scratch->len;
	} else {
		*s = r->p + 1;
		*n = (size_t)((const char *)p - (r->p + 1));
	}
	r->p = (const char *)p + 1;
	return 0;
}

static bool digit(const char *p, const char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

int json_number(struct json_rd *r, const char **s, size_t *n)
{
	const char *p, *end = r->end;

	json_peek(r);
	p = r->p;
	if (p < end && *p == '-')
		p++;
	if (!digit(p, end))
		return json_fail(r, "expected a value");
	if (*p == '0')
		p++;
	else
		while (digit(p, end))
			p++;
	if (p < end && *p == '.') {
		p++;
		if (!digit(p, end)) {
			r->p = p;
			return json_fail(r, "expected a digit after '.'");
		}
		while (digit(p, end))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!digit(p, end)) {
			r->p = p;
			return json_fail(r, "expected a digit in an exponent");
		}
		while (digit(p, end))
			p++;
	}
	*s = r->p;
	*n = (size_t)(p - r->p);
	r->p = p;
	return 0;
}

int json_literal(struct json_rd *r, const char *word)
{
	size_t n = strlen(word);

	json_peek(r);
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n))
		return json_fail(r, "expected a value");
	r->p += n;
	return 0;
}

int json_each_member(struct json_rd *r, struct fbuf *scratch,
		     json_member_fn *fn, void *ctx)
{
	int err, more;

	if ((err = json_expect(r, '{', "expected an object")))
		return err;
	if (++r->depth > JSON_MAX_DEPTH)
		return json_fail(r, "nested too deep");
	if (json_peek(r) == '}') {
		r->p++;
		r->depth--;
		return 0;
	}
	do {
		char name[JSON_NAME_MAX + 1] = "";
		const char *s;
		size_t n;

		if ((err = json_string(r, scratch, &s, &n)) ||
		    (err = json_expect(r, ':', "expected ':' after a name")))
			return err;
		if (n <= JSON_NAME_MAX) {
			memcpy(name, s, n);
			name[n] = '\0';
		}
		if ((err = fn(r, name, ctx)))
			return err;
		more = json_next(r, '}');
		if (more < 0)
			return more;
	} while (more);
	r->depth--;
	return 0;
}

int json_skip(struct json_rd *r, struct fbuf *scratch)
{
	const char *s;
	size_t n;
	int c = json_peek(r), more;

	switch (c) {
	case '"':
		return json_string(r, scratch, &s, &n);
	case 't':
		return json_literal(r, "true");
	case 'f':
		return json_literal(r, "false");
	case 'n':
		return json_literal(r, "null");
	case '{':
	case '[':
		if (++r->depth > JSON_MAX_DEPTH)
			return json_fail(r, "nested too deep");
		r->p++;
		if (json_peek(r) == (c == '{' ? '}' : ']')) {
			r->p++;
			r->depth--;
			return 0;
		}
		do {
			int err;

			if (c == '{' &&
			    ((err = json_string(r, scratch, &s, &n)) ||
			     (err = json_expect(r, ':',
						"expected ':' after a name"))))
				return err;
			if ((err = json_skip(r, scratch)))
				return err;
			more = json_next(r, c == '{' ? '}' : ']');
			if (more < 0)
				return more;
		} while (more);
		r->depth--;
		return 0;
	default:
		return json_number(r, &s, &n);
	}
}

size_t json_value_text(const struct json_rd *r, char *buf, size_t max)
{
	struct json_rd c = *r;
	struct fbuf scratch;
	const char *p;
	size_t n;

	if (!max)
		return 0;
	fbuf_init(&scratch, NULL, 0);
	json_peek(&c);
	p = c.p;
	c.why = NULL;
	if (json_skip(&c, &scratch))
		c.p = p + (size_t)(c.end - p < 16 ? c.end - p : 16);
	fbuf_destroy(&scratch);
	n = (size_t)(c.p - p);
	if (n >= max)
		n = max - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return n;
}

/* ---- writing ------------------------------------------------------------ */

/* The two-character escapes of RFC 8259 section 7, by the byte. */
static const char short_escape[] = {
    ['"'] = '"',  ['\\'] = '\\', ['\n'] = 'n', ['\r'] = 'r',
    ['\t'] = 't', ['\b'] = 'b',	 ['\f'] = 'f',
};

void json_put_string(struct fbuf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = (const uint8_t *)s, *end = n ? p + n : p, *run;

	fbuf_putc(out, '"');
	run = p;
	while (p < end) {
		size_t k;

		if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
			p++;
			continue;
		}
		if (*p >= 0x80 && (k = utf8_len(p, end))) {
			p += k;
			continue;
		}
		fbuf_append(out, run, (size_t)(p - run));
		if (*p < sizeof(short_escape) && short_escape[*p]) {
			char e[2] = {'\\', short_escape[*p]};

			fbuf_append(out, e, sizeof(e));
		} else if (*p < 0x20) {
			char e[6] = {'\\', 'u',		 '0',
				     '0',  hex[*p >> 4], hex[*p & 15]};

			fbuf_append(out, e, sizeof(e));
		} else {
			/* invalid UTF-8: U+FFFD, as the reader would give it
			 * back */
			fbuf_puts(out, "\xef\xbf\xbd");
		}
		p++;
		run = p;
	}
	fbuf_append(out, run, (size_t)(p - run));
	fbuf_putc(out, '"');
}

static bool put_special(struct fbuf *out, double v)
{
	if (isnan(v))
		fbuf_puts(out, "\"NaN\"");
	else if (isinf(v))
		fbuf_puts(out, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
		return false;
	return true;
}

/*
 * The shortest %g form that reads back as v: any decimal of at most
 * DBL_DIG (15) digits survives the trip through a double, so 15 digits
 * are tried first, then 16 and 17 (always enough).
 */
void json_put_double(struct fbuf *out, double v)
{
	char buf[40];

	if (put_special(out, v))
		return;
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (prec == 17 || strtod(buf, NULL) == v)
			break;
	}
	fbuf_puts(out, buf);
}

void json_put_float(struct fbuf *out, float v)
{
	char buf[40];

	if (put_special(out, v))
		return;
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, (double)v);
		if (prec == 9 || strtof(buf, NULL) == v)
			break;
	}
	fbuf_puts(out, buf);
}

void json_put_u64(struct fbuf *out, uint64_t v)
{
	char buf[20];

	fbuf_append(out, buf,
		    (size_t)(put_decimal(buf, buf + sizeof(buf), v) - buf));
}

void json_put_i64(struct fbuf *out, int64_t v)
{
	if (v < 0) {
		fbuf_putc(out, '-');
		json_put_u64(out, (uint64_t)0 - (uint64_t)v);
	} else {
		json_put_u64(out, (uint64_t)v);
	}
}

/* ---- numbers -------------------------------------------------------------- */

/* Digits only (after an optional '-'): the magnitude, exactly.  1: not
 * of that form (a fraction or exponent); -ERANGE: over 2^64 - 1. */
static int plain_digits(const char *s, size_t n, bool *neg, uint64_t *mag)
{
	size_t i = 0;
	uint64_t m = 0;

	*neg = n && s[0] == '-';
	i = *neg;
	if (i == n)
		return -EINVAL;
	for (; i < n; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return 1;
		d = (unsigned)(s[i] - '0');
		if (m > (UINT64_MAX - d) / 10)
			return -ERANGE;
		m = m * 10 + d;
	}
	*mag = m;
	return 0;
}

/* Text that strtod must take whole: JSON's number grammar, checked. */
static int to_double(const char *s, size_t n, double *v)
{
	struct json_rd r;
	const char *t;
	size_t tn;
	char buf[64], *e;

	json_rd_init(&r, s, n);
	if (json_number(&r, &t, &tn) || tn != n || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	*v = strtod(buf, &e);
	return e == buf + n ? 0 : -EINVAL;
}

/* An integral double within 2^53 (exact), as a magnitude and sign. */
static int integral(const char *s, size_t n, bool *neg, uint64_t *mag)
{
	double d;

	if (to_double(s, n, &d))
		return -EINVAL;
	if (d != floor(d) || fabs(d) > 9007199254740992.0)
		return -ERANGE;
	*neg = d < 0;
	*mag = (uint64_t)fabs(d);
	return 0;
}

int json_parse_i64(const char *s, size_t n, int64_t min, int64_t max,
		   int64_t *v)
{
	bool neg;
	uint64_t mag;
	int r = plain_digits(s, n, &neg, &mag);

	if (r == 1)
		r = integral(s, n, &neg, &mag);
	if (r)
		return r;
	if (neg) {
		if (mag > (uint64_t)0 - (uint64_t)min)
			return -ERANGE;
		*v = (int64_t)((uint64_t)0 - mag);
	} else {
		if (mag > (uint64_t)max)
			return -ERANGE;
		*v = (int64_t)mag;
	}
	return 0;
}

int json_parse_u64(const char *s, size_t n, uint64_t umax, uint64_t *v)
{
	bool neg;
	uint64_t mag;
	int r = plain_digits(s, n, &neg, &mag);

	if (r == 1)
		r = integral(s, n, &neg, &mag);
	if (r)
		return r;
	if ((neg && mag) || mag > umax)
		return -ERANGE;
	*v = mag;
	return 0;
}

int json_parse_double(const char *s, size_t n, double *v)
{
	if (n == 3 && !memcmp(s, "NaN", 3)) {
		*v = NAN;
		return 0;
	}
	if (n == 8 && !memcmp(s, "Infinity", 8)) {
		*v = INFINITY;
		return 0;
	}
	if (n == 9 && !memcmp(s, "-Infinity", 9)) {
		*v = -INFINITY;
		return 0;
	}
	if (to_double(s, n, v))
		return -EINVAL;
	return isinf(*v) ? -ERANGE : 0;
}
