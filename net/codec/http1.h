/*
 * http1: HTTP/1.0 and HTTP/1.1 requests (RFC 9112), as a server reads
 * them: where a head ends, what it says, and the body framing (a length,
 * or chunks).
 *
 * A request on a connection's byte stream:
 *
 *   request-line  METHOD SP target SP HTTP/1.x CRLF
 *   fields        (name ":" OWS value OWS CRLF)*
 *   CRLF
 *   body          Content-Length bytes, or chunks (size CRLF data CRLF)*
 *                 ending with a 0-size chunk, trailers and CRLF, or none
 *
 * The head is parsed only once it is whole: http1_head_end() finds its
 * end incrementally over an iobuf (a slow sender costs no rescans), then
 * http1_parse_request() reads it from one flat buffer; the request's
 * strings point into that buffer.  Chunked bodies are taken apart by a
 * state machine that moves the data out of the input without copying.
 *
 * Lenient where servers commonly are: a bare LF ends a line as CRLF does.
 * Strict where leniency lets requests be smuggled or misread: one SP
 * between the parts of the request line, a token method, an origin-form
 * ("/...") or absolute-form target, no white space before a field's
 * colon, no obsolete line folding, one Content-Length (or equal
 * copies), never together with Transfer-Encoding, which must end with
 * chunked.
 *
 * Every refusal comes with the status to answer and a static reason.
 * Pure functions; any thread.
 */
#ifndef RPCGATE_NET_HTTP1_H
#define RPCGATE_NET_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/fbuf.h"
#include "base/iobuf.h"

/* The longest head taken: a larger one is answered 431 (nginx's largest
 * default header buffers are 4 x 8 KiB; 64 KiB fits any real client). */
#define HTTP1_HEAD_MAX (64u * 1024)
/* Header fields taken: more is 431 (Apache's LimitRequestFields). */
#define HTTP1_FIELDS_MAX 100
/* The longest request target: longer is 414 (nginx's 8 KiB line). */
#define HTTP1_TARGET_MAX 8192
/* A chunk-size line, extensions included (the size alone is at most 16
 * hex digits). */
#define HTTP1_CHUNK_LINE_MAX 1024

struct http1_str {
	const char *p;
	size_t n;
};

struct http1_field {
	struct http1_str name, value;
};

struct http1_req {
	struct http1_str method;
	struct http1_str target; /* as sent */
	struct http1_str path;	 /* the target's path ("/a/b") */
	struct http1_str query;	 /* after '?', without it; n 0: none */
	int minor;		 /* HTTP/1.minor: 0 or 1 */
	size_t head_len;	 /* bytes of the head, blank line included */
	/* the body's framing */
	bool chunked;
	bool has_length;
	uint64_t content_length;
	/* what the fields ask for */
	bool keep_alive;      /* HTTP/1.1 unless "close"; 1.0 if asked */
	bool expect_continue; /* Expect: 100-continue */
	/* fields a server reads, found while parsing; NULL: absent (the
	 * last one of a repeated name) */
	const struct http1_str *content_type, *content_encoding;
	const struct http1_str *accept, *accept_encoding, *authorization;
	const struct http1_str *log_id;
	const struct http1_str *timeout_ms; /* x-bd-timeout-ms */
	/* on a refusal */
	int status;	 /* 400, 414, 417, 431, 501 or 505 */
	const char *why; /* static */
	/* the fields, last: the parser clears only what comes before */
	unsigned nfields;
	struct http1_field fields[HTTP1_FIELDS_MAX];
};

/*
 * Where the head at the front of `in` ends: its length (blank line
 * included), or -EAGAIN with *scanned (0 at the start of a head) saying
 * how far the search went, to go on from there when more bytes came.
 * -E2BIG: no end within HTTP1_HEAD_MAX bytes (answer 431).
 */
ssize_t http1_head_end(const struct iobuf *in, size_t *scanned);

/*
 * Parses the complete head p[0..n) (n from http1_head_end()).  0, or
 * -EBADMSG with req->status and req->why.  The strings point into p.
 */
int http1_parse_request(const char *p, size_t n, struct http1_req *req);

/* The first field of that name (case-insensitive), or NULL. */
const struct http1_str *http1_field(const struct http1_req *req,
				    const char *name);

/* The comma-separated list `v` holds `token` (case-insensitive), as
 * Connection, Accept-Encoding and Transfer-Encoding list theirs. */
bool http1_has_token(const struct http1_str *v, const char *token);

/* 1: the bytes start like a request ("GET ", "POST ", ...), 0: cannot
 * tell yet, -1: not HTTP.  For detecting a port's protocol. */
int http1_detect(const uint8_t *p, size_t n);

/* The reason phrase of a status ("Not Found"); "Unknown" for others. */
const char *http1_reason(int status);

/*
 * A chunked body being taken apart.  Zero it (or http1_chunked_init())
 * for each body.
 */
struct http1_chunked {
	int state;
	uint64_t left; /* of the current chunk's data */
	size_t line;   /* bytes of the line being read */
};

static inline void http1_chunked_init(struct http1_chunked *c)
{
	c->state = 0;
	c->left = 0;
	c->line = 0;
}

/*
 * Moves the body's data from the front of `in` to the end of `body`
 * (shared blocks, no copy), consuming the framing.  1: the body ended
 * (the last chunk and the trailers are consumed; what follows in `in` is
 * the next request); 0: `in` is used up, more is needed; -EBADMSG: not
 * chunked framing (answer 400); -EMSGSIZE: the data passed `max`
 * (answer 413); -ENOMEM.
 */
int http1_chunked_step(struct http1_chunked *c, struct iobuf *in,
		       struct iobuf *body, size_t max);

/* ---- the client's side: answers (for etcd and consul, net/cluster) ---- */

struct http1_resp {
	int status;	 /* 100..599 */
	int minor;	 /* HTTP/1.minor */
	size_t head_len; /* bytes of the head, blank line included */
	bool chunked, has_length;
	uint64_t content_length;
	/* the connection can carry another request after this answer */
	bool keep_alive;
	const char *why; /* static, on -EBADMSG */
};

/* Where the head at the front of p[0..n) ends (blank line included), or
 * -EAGAIN (not yet), or -E2BIG past HTTP1_HEAD_MAX. */
ssize_t http1_flat_head_end(const char *p, size_t n);

/* Parses a whole answer head p[0..n) (n from http1_flat_head_end): the
 * status and the body's framing (a length, chunks, or to the close).
 * Lenient as a client is: unknown fields are skipped.  0 or -EBADMSG
 * with r->why. */
int http1_parse_response(const char *p, size_t n, struct http1_resp *r);

/* The value of field `name` (case-insensitive) in the head p[0..n), into
 * out (NUL-terminated, cut to size): true when found. */
bool http1_resp_field(const char *p, size_t n, const char *name, char *out,
		      size_t size);

/*
 * A chunked body from flat input p[0..n): appends its data to `body`
 * (whose limit bounds it) and says in *used how much input it took; an
 * unfinished line is left for the next call, with more bytes.  1: the
 * body ended (trailers taken); 0: more is needed; -EBADMSG: not chunked
 * framing; -EMSGSIZE or -ENOMEM from `body`.
 */
int http1_unchunk(struct http1_chunked *c, const char *p, size_t n,
		  size_t *used, struct fbuf *body);

#endif
