/*
 * http_head: the head of an HTTP/1.x request (RFC 9112 section 2-5), as
 * far as the built-in pages need it: the request line, and where the head
 * ends.  Header fields are checked for shape and skipped; a request with
 * a body (Content-Length, Transfer-Encoding) is the HTTP/JSON mapping's,
 * not the pages'.
 *
 * Lenient where servers commonly are: a bare LF ends a line as CRLF
 * does.  Strict elsewhere: one SP between the three parts, a token method,
 * an origin-form target ("/..." without controls or spaces), HTTP/1.0 or
 * HTTP/1.1, field lines with a token name and a colon, no obsolete line
 * folding.
 */
#ifndef RPCGATE_NET_HTTP_HEAD_H
#define RPCGATE_NET_HTTP_HEAD_H

#include <stddef.h>
#include <stdint.h>

/* The longest head taken (nginx's default large_client_header_buffers
 * line is 8 KiB; pages need far less). */
#define HTTP_HEAD_MAX	8192
#define HTTP_METHOD_MAX 15
#define HTTP_TARGET_MAX 1023

struct http_head {
	char method[HTTP_METHOD_MAX + 1];
	char target[HTTP_TARGET_MAX + 1]; /* path and query, as sent */
	int minor;			  /* HTTP/1.minor: 0 or 1 */
	size_t len;	 /* bytes of the head, blank line included */
	const char *why; /* on -EPROTO: what is wrong (static) */
};

/*
 * Parses the head at the front of p[0..n).  0: complete, `out` filled;
 * -EAGAIN: incomplete so far (read more; give up at HTTP_HEAD_MAX);
 * -EPROTO: malformed (out->why says how); -E2BIG: no end within
 * HTTP_HEAD_MAX bytes.  Reads only p[0..n).
 */
int http_head_parse(const uint8_t *p, size_t n, struct http_head *out);

/* 1: the bytes start like an HTTP request ("GET ", "POST ", ...), 0:
 * cannot tell yet, -1: not HTTP.  For protocol detection. */
int http_detect(const uint8_t *p, size_t n);

#endif
