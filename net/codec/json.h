/*
 * json: a JSON (RFC 8259) reader and writer small enough to drive from a
 * protobuf descriptor, value by value, with no tree in between.
 *
 * Reading is a lexer over a flat buffer: the caller walks the structure
 * (json_pb does, guided by the message's fields) and asks for the next
 * token.  Numbers come back as their text, so a 64-bit integer is read
 * exactly; strings without escapes come back in place, others are
 * decoded into a scratch buffer.  The input must be UTF-8; invalid bytes,
 * control characters in strings and lone surrogates are errors, and
 * nesting is limited (JSON_MAX_DEPTH).
 *
 * Every reader returns 0 or -EBADMSG, with r->why (a static text) and
 * r->at (the offset) saying what is wrong; those that decode strings
 * also -ENOMEM when the scratch buffer cannot grow.
 *
 * Writing appends to an fbuf: strings escaped (invalid UTF-8 replaced by
 * U+FFFD, so the output is always valid JSON), floating-point numbers in
 * the shortest form that reads back to the same value, and NaN and the
 * infinities as the proto3 JSON mapping spells them: "NaN", "Infinity",
 * "-Infinity".
 */
#ifndef RPCGATE_NET_JSON_H
#define RPCGATE_NET_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/fbuf.h"

/* Objects and arrays nested in one another: protobuf's own recursion
 * limit for messages. */
#define JSON_MAX_DEPTH 100

struct json_rd {
	const char *p, *start, *end;
	const char *why; /* set on -EBADMSG */
	size_t at;	 /* offset of the error */
	int depth;	 /* of objects and arrays being read */
};

void json_rd_init(struct json_rd *r, const char *p, size_t n);

/* Fails the read at the current position with a static text. */
int json_fail(struct json_rd *r, const char *why);

/* Skips white space; the next character, or -1 at the end. */
int json_peek(struct json_rd *r);

/* Takes the character c (after white space): 0, or -EBADMSG with why. */
int json_expect(struct json_rd *r, char c, const char *why);

/* After a value in an object or array: true when a ',' came (another
 * member follows), false at `close` (taken); -EBADMSG otherwise. */
int json_next(struct json_rd *r, char close);

/*
 * A string, r->p at its '"'.  *s and *n: its decoded bytes, in place when
 * it has no escape, else in `scratch` (cleared first).  Valid until the
 * scratch buffer is used again.
 */
int json_string(struct json_rd *r, struct fbuf *scratch, const char **s,
		size_t *n);

/* A number: its text (validated against the grammar). */
int json_number(struct json_rd *r, const char **s, size_t *n);

/* The literal `word` ("true", "false", "null") at r->p. */
int json_literal(struct json_rd *r, const char *word);

/*
 * Walks the object at r->p: fn(r, name, ctx) for each member, r at its
 * value, which fn must read (or json_skip).  Names longer than
 * JSON_NAME_MAX bytes come as "" (a reader of known names skips them).
 * 0, -EBADMSG, or what fn returned.
 */
#define JSON_NAME_MAX 31
typedef int json_member_fn(struct json_rd *r, const char *name, void *ctx);
int json_each_member(struct json_rd *r, struct fbuf *scratch,
		     json_member_fn *fn, void *ctx);

/* Skips one value of any kind (objects and arrays within the depth). */
int json_skip(struct json_rd *r, struct fbuf *scratch);

/* The text of the value at r->p, for error messages: at most max bytes,
 * without reading it (r is not moved). */
size_t json_value_text(const struct json_rd *r, char *buf, size_t max);

/* ---- writing ---------------------------------------------------------- */

void json_put_string(struct fbuf *out, const char *s, size_t n);
void json_put_double(struct fbuf *out, double v);
void json_put_float(struct fbuf *out, float v);
void json_put_i64(struct fbuf *out, int64_t v);
void json_put_u64(struct fbuf *out, uint64_t v);

/* ---- numbers, from JSON text or from the inside of a JSON string ------- */

/*
 * An integer in [min, max] (signed) or [0, umax] (unsigned) from text
 * such as "-12", "12.0", "1e3": exact for every 64-bit value written as
 * digits; an exponent or fraction is taken when the value is integral and
 * within 2^53.  0 or -ERANGE (out of range, not integral) or -EINVAL (not
 * a number).
 */
int json_parse_i64(const char *s, size_t n, int64_t min, int64_t max,
		   int64_t *v);
int json_parse_u64(const char *s, size_t n, uint64_t umax, uint64_t *v);

/* A double from number text, or "NaN", "Infinity", "-Infinity" (the
 * strings the proto3 mapping uses).  -ERANGE: overflow to infinity of a
 * finite literal; -EINVAL: not a number. */
int json_parse_double(const char *s, size_t n, double *v);

#endif
