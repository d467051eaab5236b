/* http1: HTTP/1.x requests (see http1.h). */
#include "http1.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <strings.h>
#include <string.h>
#include <sys/types.h>

#include "base/util.h"

/* The methods detection knows (RFC 9110 section 9, and PATCH). */
static const char *const methods[] = {
    "GET ",	"HEAD ",  "POST ",  "PUT ",	"DELETE ",
    "OPTIONS ", "PATCH ", "TRACE ", "CONNECT ",
};

int http1_detect(const uint8_t *p, size_t n)
{
	bool maybe = false;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		size_t len = strlen(methods[i]);

		if (memcmp(p, methods[i], n < len ? n : len) != 0)
			continue;
		if (n >= len)
			return 1;
		maybe = true;
	}
	return maybe ? 0 : -1;
}

const char *http1_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

/* RFC 9110 5.6.2's tchar: ALPHA, DIGIT and "!#$%&'*+-.^_`|~", as bits
 * of the 128 ASCII codes. */
static const uint64_t tchar_bits[2] = {
    /* 0-63: ! # $ % & ' * + - . and the digits */
    0x03ff6cfa00000000ull,
    /* 64-127: the letters, ^ _ ` | ~ */
    0x57ffffffc7fffffeull,
};

static bool is_tchar(uint8_t c)
{
	return c < 128 && (tchar_bits[c >> 6] >> (c & 63) & 1);
}

/* Visible ASCII, as a request target may hold. */
static bool is_vchar(uint8_t c)
{
	return c > 0x20 && c < 0x7f;
}

/* A field value's byte: visible, obs-text, SP or HTAB. */
static bool is_field_byte(uint8_t c)
{
	return is_vchar(c) || c >= 0x80 || c == ' ' || c == '\t';
}

/* ---- the end of the head ------------------------------------------------ */

/*
 * The head ends at the first empty line: an LF after "\n" or "\n\r".
 * The search goes from LF to LF (memchr) and on from *scanned, minus
 * the two bytes an end may straddle; the bytes before an LF may lie in
 * the ref before.
 */
/* The last two bytes seen, after a ref of n bytes at p. */
static void keep_tail(uint8_t tail[2], const uint8_t *p, size_t n)
{
	if (n >= 2) {
		tail[0] = p[n - 2];
		tail[1] = p[n - 1];
	} else if (n == 1) {
		tail[0] = tail[1];
		tail[1] = p[0];
	}
}

ssize_t http1_head_end(const struct iobuf *in, size_t *scanned)
{
	size_t refs = iobuf_ref_count(in), base = 0, len = iobuf_len(in);
	size_t from = *scanned > 2 ? *scanned - 2 : 0;
	uint8_t tail[2] = {0, 0}; /* the last two bytes of the refs before */

	for (size_t i = 0; i < refs; i++) {
		const uint8_t *p, *lf;
		size_t n, k;

		iobuf_ref_at(in, i, (const void **)&p, &n);
		if (base + n <= from) {
			keep_tail(tail, p, n); /* all that matters of it */
			base += n;
			continue;
		}
		k = from > base ? from - base : 0;
		while (k < n && (lf = memchr(p + k, '\n', n - k))) {
			size_t at = (size_t)(lf - p);
			uint8_t b1 = at >= 1 ? p[at - 1] : tail[1];
			uint8_t b2 = at >= 2   ? p[at - 2]
				     : at == 1 ? tail[1]
					       : tail[0];

			if (base + at > 0 &&
			    (b1 == '\n' || (b1 == '\r' && b2 == '\n'))) {
				size_t end = base + at + 1;

				return end > HTTP1_HEAD_MAX ? -E2BIG
							    : (ssize_t)end;
			}
			k = at + 1;
		}
		keep_tail(tail, p, n);
		base += n;
	}
	*scanned = len;
	return len >= HTTP1_HEAD_MAX ? -E2BIG : -EAGAIN;
}

/* ---- the head ------------------------------------------------------------ */

static int bad(struct http1_req *r, int status, const char *why)
{
	r->status = status;
	r->why = why;
	return -EBADMSG;
}

/* The next line from *pos: its start and length without the CR LF (or a
 * bare LF).  False when there is none (the head is complete: never). */
static bool next_line(const char *p, size_t lim, size_t *pos, const char **line,
		      size_t *len)
{
	const char *lf = memchr(p + *pos, '\n', lim - *pos);

	if (!lf)
		return false;
	*line = p + *pos;
	*len = (size_t)(lf - *line);
	if (*len && (*line)[*len - 1] == '\r')
		(*len)--;
	*pos = (size_t)(lf - p) + 1;
	return true;
}

static int request_line(const char *l, size_t len, struct http1_req *r)
{
	const uint8_t *u = (const uint8_t *)l;
	size_t i = 0, m, q;

	while (i < len && is_tchar(u[i]))
		i++;
	if (i == 0 || i >= len || l[i] != ' ')
		return bad(r, 400,
			   "the request line does not start with a method and "
			   "one space");
	r->method = (struct http1_str){l, i};
	m = ++i;
	while (i < len && is_vchar(u[i]))
		i++;
	if (i == m)
		return bad(r, 400, "the request line has no target");
	if (i - m > HTTP1_TARGET_MAX)
		return bad(r, 414, "the target is too long");
	r->target = (struct http1_str){l + m, i - m};
	if (len - i != 9 || memcmp(l + i, " HTTP/1.", 8) != 0 ||
	    (l[i + 8] != '0' && l[i + 8] != '1')) {
		/* a well-formed version this server does not speak */
		if (len - i == 9 && !memcmp(l + i, " HTTP/", 6) &&
		    l[i + 6] >= '0' && l[i + 6] <= '9' && l[i + 7] == '.' &&
		    l[i + 8] >= '0' && l[i + 8] <= '9')
			return bad(r, 505,
				   "only HTTP/1.0 and HTTP/1.1 are "
				   "spoken here");
		return bad(r, 400,
			   "the request line does not end with one space and "
			   "HTTP/1.0 or HTTP/1.1");
	}
	r->minor = l[i + 8] - '0';
	/* the path: origin form, or the absolute form's part after the
	 * authority (a proxy's client) */
	r->path = r->target;
	r->query = (struct http1_str){NULL, 0};
	if (r->target.p[0] != '/') {
		const char *t = r->target.p, *end = t + r->target.n, *s;

		if (r->target.n == 1 && t[0] == '*')
			return bad(r, 400, "the asterisk form is not served");
		s = r->target.n > 7 && !strncasecmp(t, "http://", 7)	? t + 7
		    : r->target.n > 8 && !strncasecmp(t, "https://", 8) ? t + 8
									: NULL;
		if (!s)
			return bad(r, 400,
				   "the target is neither a path nor an "
				   "absolute URL");
		/* the authority ends at the first '/', '?' or '#'; with no
		 * path the path is "/" (RFC 9112 3.2.2), the query stays */
		while (s < end && *s != '/' && *s != '?' && *s != '#')
			s++;
		if (s < end && *s == '/') {
			r->path = (struct http1_str){s, (size_t)(end - s)};
		} else {
			r->path = (struct http1_str){"/", 1};
			if (s < end && *s == '?') {
				const char *h = memchr(s, '#', (size_t)(end - s));

				r->query = (struct http1_str){
					s + 1, (size_t)((h ? h : end) - s - 1)};
			}
			return 0;
		}
	}
	/* a fragment is never sent (RFC 9112 3.2); drop one that is */
	const char *hash = memchr(r->path.p, '#', r->path.n);

	if (hash)
		r->path.n = (size_t)(hash - r->path.p);
	const char *qm = memchr(r->path.p, '?', r->path.n);

	if (qm) {
		q = (size_t)(qm - r->path.p);
		r->query = (struct http1_str){qm + 1, r->path.n - q - 1};
		r->path.n = q;
	}
	return 0;
}

static void trim(struct http1_str *v)
{
	while (v->n && (v->p[0] == ' ' || v->p[0] == '\t')) {
		v->p++;
		v->n--;
	}
	while (v->n && (v->p[v->n - 1] == ' ' || v->p[v->n - 1] == '\t'))
		v->n--;
}

static int field_line(const char *l, size_t len, struct http1_req *r)
{
	const uint8_t *u = (const uint8_t *)l;
	struct http1_field *f;
	size_t i = 0;

	if (l[0] == ' ' || l[0] == '\t')
		return bad(r, 400, "obsolete line folding in a header field");
	while (i < len && is_tchar(u[i]))
		i++;
	if (i == 0 || i >= len || l[i] != ':')
		return bad(r, 400,
			   "a header field without a name and a colon (or with "
			   "white space before the colon)");
	for (size_t k = i + 1; k < len; k++)
		if (!is_field_byte(u[k]))
			return bad(r, 400, "a control byte in a header field");
	if (r->nfields == HTTP1_FIELDS_MAX)
		return bad(r, 431, "more than 100 header fields");
	f = &r->fields[r->nfields++];
	f->name = (struct http1_str){l, i};
	f->value = (struct http1_str){l + i + 1, len - i - 1};
	trim(&f->value);
	return 0;
}

static bool name_is(const struct http1_str *s, const char *name)
{
	size_t n = strlen(name);

	return s->n == n && !strncasecmp(s->p, name, n);
}

const struct http1_str *http1_field(const struct http1_req *req,
				    const char *name)
{
	for (unsigned i = 0; i < req->nfields; i++)
		if (name_is(&req->fields[i].name, name))
			return &req->fields[i].value;
	return NULL;
}

/* The next element of a comma-separated list: trimmed, parameters after
 * ';' cut off.  False at the end. */
static bool next_token(struct http1_str *rest, struct http1_str *tok)
{
	const char *comma, *semi;

	while (rest->n) {
		comma = memchr(rest->p, ',', rest->n);
		*tok = (struct http1_str){
		    rest->p, comma ? (size_t)(comma - rest->p) : rest->n};
		rest->p += tok->n + (comma ? 1 : 0);
		rest->n -= tok->n + (comma ? 1 : 0);
		semi = memchr(tok->p, ';', tok->n);
		if (semi)
			tok->n = (size_t)(semi - tok->p);
		trim(tok);
		if (tok->n)
			return true;
	}
	return false;
}

bool http1_has_token(const struct http1_str *v, const char *token)
{
	struct http1_str rest = *v, tok;

	while (next_token(&rest, &tok))
		if (name_is(&tok, token))
			return true;
	return false;
}

/* Content-Length: digits only, at most 2^63 - 1. */
static int parse_length(const struct http1_str *v, uint64_t *out)
{
	uint64_t n = 0;

	if (!v->n)
		return -1;
	for (size_t i = 0; i < v->n; i++) {
		if (v->p[i] < '0' || v->p[i] > '9')
			return -1;
		if (n > (INT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (uint64_t)(v->p[i] - '0');
	}
	*out = n;
	return 0;
}

/* The value of an Expect or Transfer-Encoding field, whole. */
static bool value_is(const struct http1_str *v, const char *want)
{
	size_t n = strlen(want);

	return v->n == n && !strncasecmp(v->p, want, n);
}

static int content_length(struct http1_req *r, const struct http1_str *v)
{
	uint64_t n;

	if (parse_length(v, &n))
		return bad(r, 400, "Content-Length is not a number");
	if (r->has_length && n != r->content_length)
		return bad(r, 400, "two different Content-Length fields");
	r->has_length = true;
	r->content_length = n;
	return 0;
}

static int transfer_encoding(struct http1_req *r, const struct http1_str *v)
{
	if (r->minor == 0)
		return bad(r, 400, "Transfer-Encoding in an HTTP/1.0 request");
	/* chunked, the only coding: gzip as a transfer coding is not
	 * taken */
	if (!value_is(v, "chunked"))
		return bad(r, 501, "a transfer coding other than chunked");
	if (r->chunked)
		return bad(r, 400, "chunked twice");
	r->chunked = true;
	return 0;
}

/*
 * The fields that frame the body or shape the connection, and those the
 * server reads, found in one pass: a field's name is told by its length
 * first, then compared once.
 */
static int framing(struct http1_req *r)
{
	bool conn_close = false, conn_keep = false, host = false;
	int err = 0;

	for (unsigned i = 0; i < r->nfields && !err; i++) {
		const struct http1_field *f = &r->fields[i];
		const struct http1_str *name = &f->name, *v = &f->value;

		switch (name->n) {
		case 4:
			host |= name_is(name, "host");
			break;
		case 6:
			if (name_is(name, "accept"))
				r->accept = v;
			else if (name_is(name, "log-id"))
				r->log_id = v;
			else if (name_is(name, "expect")) {
				if (!value_is(v, "100-continue"))
					err = bad(r, 417,
						  "an Expect other than "
						  "100-continue");
				r->expect_continue = true;
			}
			break;
		case 10:
			if (name_is(name, "connection")) {
				conn_close |= http1_has_token(v, "close");
				conn_keep |= http1_has_token(v, "keep-alive");
			}
			break;
		case 12:
			if (name_is(name, "content-type"))
				r->content_type = v;
			break;
		case 13:
			if (name_is(name, "authorization"))
				r->authorization = v;
			break;
		case 14:
			if (name_is(name, "content-length"))
				err = content_length(r, v);
			break;
		case 15:
			if (name_is(name, "accept-encoding"))
				r->accept_encoding = v;
			else if (name_is(name, "x-bd-timeout-ms"))
				r->timeout_ms = v;
			break;
		case 16:
			if (name_is(name, "content-encoding"))
				r->content_encoding = v;
			break;
		case 17:
			if (name_is(name, "transfer-encoding"))
				err = transfer_encoding(r, v);
			break;
		}
	}
	if (err)
		return err;
	if (r->chunked && r->has_length)
		return bad(r, 400,
			   "both Content-Length and "
			   "Transfer-Encoding (a smuggling attempt?)");
	if (r->minor == 1 && !host)
		return bad(r, 400, "an HTTP/1.1 request without Host");
	r->keep_alive = r->minor == 1 ? !conn_close : conn_keep && !conn_close;
	return 0;
}

int http1_parse_request(const char *p, size_t n, struct http1_req *req)
{
	size_t pos = 0, len;
	const char *line;
	int err;

	memset(req, 0, offsetof(struct http1_req, fields));
	/* a few empty lines before a request are allowed (RFC 9112 2.2) */
	while (pos < n && (p[pos] == '\r' || p[pos] == '\n'))
		pos++;
	if (!next_line(p, n, &pos, &line, &len))
		return bad(req, 400, "no request line");
	err = request_line(line, len, req);
	if (err)
		return err;
	for (;;) {
		if (!next_line(p, n, &pos, &line, &len))
			return bad(req, 400,
				   "the head does not end with an "
				   "empty line");
		if (len == 0)
			break;
		err = field_line(line, len, req);
		if (err)
			return err;
	}
	req->head_len = pos;
	return framing(req);
}

/* ---- chunked bodies ------------------------------------------------------ */

enum {
	CH_SIZE,     /* the chunk-size line */
	CH_DATA,     /* `left` bytes of data */
	CH_DATA_END, /* the CRLF after the data */
	CH_TRAILER,  /* a trailer line, or the empty line that ends */
	CH_DONE,
};

/* One line's bytes from the front of in, at most cap: 1 and the line (no
 * CR LF) in buf, 0 when no LF yet (what came is kept in `in`), -EBADMSG
 * when longer than cap. */
static int take_line(struct iobuf *in, char *buf, size_t cap, size_t *len)
{
	size_t n = iobuf_len(in), lim = n < cap + 2 ? n : cap + 2, i;

	iobuf_copy_out(in, 0, buf, lim);
	for (i = 0; i < lim; i++)
		if (buf[i] == '\n')
			break;
	if (i == lim)
		return lim == cap + 2 ? -EBADMSG : 0;
	iobuf_drop_front(in, i + 1);
	*len = i && buf[i - 1] == '\r' ? i - 1 : i;
	return 1;
}

int http1_chunked_step(struct http1_chunked *c, struct iobuf *in,
		       struct iobuf *body, size_t max)
{
	char line[HTTP1_CHUNK_LINE_MAX + 2];
	size_t len;
	int r;

	for (;;) {
		switch (c->state) {
		case CH_SIZE: {
			uint64_t size = 0;
			size_t i, digits = 0;

			r = take_line(in, line, HTTP1_CHUNK_LINE_MAX, &len);
			if (r <= 0)
				return r;
			for (i = 0; i < len && hex_digit((uint8_t)line[i]) >= 0;
			     i++) {
				if (++digits > 15)
					return -EBADMSG;
				size = size << 4 |
				       (uint64_t)hex_digit((uint8_t)line[i]);
			}
			/* extensions after ';' are ignored */
			while (i < len && (line[i] == ' ' || line[i] == '\t'))
				i++;
			if (!digits || (i < len && line[i] != ';'))
				return -EBADMSG;
			if (size > max || iobuf_len(body) > max - size)
				return -EMSGSIZE;
			c->left = size;
			c->state = size ? CH_DATA : CH_TRAILER;
			break;
		}
		case CH_DATA: {
			size_t n = iobuf_len(in);

			if (!n)
				return 0;
			if (n > c->left)
				n = (size_t)c->left;
			if (iobuf_cut(in, body, n))
				return -ENOMEM;
			c->left -= n;
			if (!c->left)
				c->state = CH_DATA_END;
			break;
		}
		case CH_DATA_END:
			r = take_line(in, line, 0, &len);
			if (r <= 0)
				return r;
			if (len)
				return -EBADMSG; /* data past the size */
			c->state = CH_SIZE;
			break;
		case CH_TRAILER:
			/* trailer fields are read and dropped */
			r = take_line(in, line, HTTP1_CHUNK_LINE_MAX, &len);
			if (r <= 0)
				return r;
			if (len == 0) {
				c->state = CH_DONE;
				return 1;
			}
			break;
		default:
			return 1;
		}
	}
}

/* ---- the client's side: answers ------------------------------------------ */

ssize_t http1_flat_head_end(const char *p, size_t n)
{
	const char *lf = p, *end = p + n;

	/* A head ends at an empty line: LF LF or LF CR LF. */
	while ((lf = memchr(lf, '\n', (size_t)(end - lf))) != NULL) {
		lf++;
		if (lf < end && *lf == '\n')
			return lf + 1 - p;
		if (lf + 1 < end && lf[0] == '\r' && lf[1] == '\n')
			return lf + 2 - p;
	}
	return n >= HTTP1_HEAD_MAX ? -E2BIG : -EAGAIN;
}

static int resp_bad(struct http1_resp *r, const char *why)
{
	r->why = why;
	return -EBADMSG;
}

int http1_parse_response(const char *p, size_t n, struct http1_resp *r)
{
	bool conn_close = false, conn_keep = false;
	const char *l;
	size_t pos = 0, len;

	memset(r, 0, sizeof(*r));
	r->head_len = n;
	if (!next_line(p, n, &pos, &l, &len) || len < 12 ||
	    memcmp(l, "HTTP/1.", 7) || (l[7] != '0' && l[7] != '1') ||
	    l[8] != ' ' || l[9] < '1' || l[9] > '5' || l[10] < '0' ||
	    l[10] > '9' || l[11] < '0' || l[11] > '9' ||
	    (len > 12 && l[12] != ' '))
		return resp_bad(r, "not an HTTP/1.x status line");
	r->minor = l[7] - '0';
	r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	while (next_line(p, n, &pos, &l, &len) && len) {
		const char *colon = memchr(l, ':', len);
		struct http1_str name, v;

		if (!colon || colon == l)
			return resp_bad(r, "a header field without a name");
		name = (struct http1_str){l, (size_t)(colon - l)};
		v = (struct http1_str){colon + 1, len - (size_t)(colon - l) - 1};
		trim(&v);
		if (name_is(&name, "content-length")) {
			uint64_t cl;

			if (parse_length(&v, &cl) ||
			    (r->has_length && cl != r->content_length))
				return resp_bad(r, "a bad Content-Length");
			r->has_length = true;
			r->content_length = cl;
		} else if (name_is(&name, "transfer-encoding")) {
			if (!value_is(&v, "chunked"))
				return resp_bad(r, "a transfer coding other "
						   "than chunked");
			r->chunked = true;
		} else if (name_is(&name, "connection")) {
			conn_close |= http1_has_token(&v, "close");
			conn_keep |= http1_has_token(&v, "keep-alive");
		}
	}
	if (r->chunked && r->has_length)
		return resp_bad(r, "both Content-Length and chunked");
	/* Without either, the body runs to the end of the connection. */
	r->keep_alive = (r->minor == 1 ? !conn_close : conn_keep) &&
			(r->chunked || r->has_length);
	return 0;
}

bool http1_resp_field(const char *p, size_t n, const char *name, char *out,
		      size_t size)
{
	const char *l;
	size_t pos = 0, len;

	out[0] = '\0';
	if (!next_line(p, n, &pos, &l, &len)) /* the status line */
		return false;
	while (next_line(p, n, &pos, &l, &len) && len) {
		const char *colon = memchr(l, ':', len);
		struct http1_str nm, v;

		if (!colon)
			continue;
		nm = (struct http1_str){l, (size_t)(colon - l)};
		if (!name_is(&nm, name))
			continue;
		v = (struct http1_str){colon + 1, len - (size_t)(colon - l) - 1};
		trim(&v);
		snprintf(out, size, "%.*s",
			 (int)(v.n < size ? v.n : size - 1), v.p);
		return true;
	}
	return false;
}

/* One line from p[0..n), at most cap bytes: 1 with its length (no CR LF)
 * and *used past its LF; 0 when no LF yet; -EBADMSG when too long. */
static int flat_line(const char *p, size_t n, size_t cap, size_t *len,
		     size_t *used)
{
	const char *lf = memchr(p, '\n', n < cap + 2 ? n : cap + 2);

	if (!lf)
		return n >= cap + 2 ? -EBADMSG : 0;
	*len = (size_t)(lf - p);
	*used = *len + 1;
	if (*len && p[*len - 1] == '\r')
		(*len)--;
	return 1;
}

int http1_unchunk(struct http1_chunked *c, const char *p, size_t n,
		  size_t *used, struct fbuf *body)
{
	size_t len, k, at = 0;
	int r = 0;

	while (c->state != CH_DONE) {
		const char *q = p + at;
		size_t left = n - at;

		if (c->state == CH_DATA) {
			size_t take = left < c->left ? left : (size_t)c->left;

			if (!take)
				break;
			fbuf_append(body, q, take);
			if (body->err) {
				r = body->err;
				break;
			}
			at += take;
			c->left -= take;
			if (!c->left)
				c->state = CH_DATA_END;
			continue;
		}
		r = flat_line(q, left, HTTP1_CHUNK_LINE_MAX, &len, &k);
		if (r <= 0)
			break;
		r = 0;
		at += k;
		if (c->state == CH_SIZE) {
			uint64_t size = 0;
			size_t i, digits = 0;

			for (i = 0; i < len && hex_digit((uint8_t)q[i]) >= 0; i++) {
				if (++digits > 15) {
					r = -EBADMSG;
					break;
				}
				size = size << 4 | (uint64_t)hex_digit((uint8_t)q[i]);
			}
			while (!r && i < len && (q[i] == ' ' || q[i] == '\t'))
				i++;
			if (r || !digits || (i < len && q[i] != ';')) {
				r = -EBADMSG;
				break;
			}
			c->left = size;
			c->state = size ? CH_DATA : CH_TRAILER;
		} else if (c->state == CH_DATA_END) {
			if (len) {
				r = -EBADMSG; /* data past the size */
				break;
			}
			c->state = CH_SIZE;
		} else if (!len) { /* CH_TRAILER: the empty line ends */
			c->state = CH_DONE;
		}
	}
	*used = at;
	if (r < 0)
		return r;
	return c->state == CH_DONE;
}
