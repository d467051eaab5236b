/* http_head: the request head of HTTP/1.x (see http_head.h). */
#include "http_head.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* The methods detection knows (RFC 9110 section 9, and PATCH). */
static const char *const methods[] = {
    "GET ",	"HEAD ",  "POST ",  "PUT ",	"DELETE ",
    "OPTIONS ", "PATCH ", "TRACE ", "CONNECT ",
};

int http_detect(const uint8_t *p, size_t n)
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

/* RFC 9110 5.6.2's tchar. */
static bool is_tchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
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

/*
 * The next line from *pos: its start and length without the CR LF (or
 * bare LF).  False when no LF is there yet.
 */
static bool next_line(const uint8_t *p, size_t lim, size_t *pos,
		      const uint8_t **line, size_t *len)
{
	const uint8_t *lf = memchr(p + *pos, '\n', lim - *pos);

	if (!lf)
		return false;
	*line = p + *pos;
	*len = (size_t)(lf - *line);
	if (*len && (*line)[*len - 1] == '\r')
		(*len)--;
	*pos = (size_t)(lf - p) + 1;
	return true;
}

static int bad(struct http_head *out, const char *why)
{
	out->why = why;
	return -EPROTO;
}

static int request_line(const uint8_t *l, size_t len, struct http_head *out)
{
	size_t i = 0, m, t;

	while (i < len && is_tchar(l[i]))
		i++;
	if (i == 0 || i >= len || l[i] != ' ')
		return bad(out, "the request line does not start with a "
				"method and one space");
	if (i > HTTP_METHOD_MAX)
		return bad(out, "the method is too long");
	memcpy(out->method, l, i);
	out->method[i] = '\0';
	m = ++i;
	if (i >= len || l[i] != '/')
		return bad(out, "the target is not a path (origin form)");
	while (i < len && is_vchar(l[i]))
		i++;
	t = i - m;
	if (t > HTTP_TARGET_MAX)
		return bad(out, "the target is too long");
	memcpy(out->target, l + m, t);
	out->target[t] = '\0';
	if (len - i != 9 || memcmp(l + i, " HTTP/1.", 8) != 0 ||
	    (l[i + 8] != '0' && l[i + 8] != '1'))
		return bad(out, "the request line does not end with one space "
				"and HTTP/1.0 or HTTP/1.1");
	out->minor = l[i + 8] - '0';
	return 0;
}

static int field_line(const uint8_t *l, size_t len, struct http_head *out)
{
	size_t i = 0;

	if (l[0] == ' ' || l[0] == '\t')
		return bad(out, "obsolete line folding in a header field");
	while (i < len && is_tchar(l[i]))
		i++;
	if (i == 0 || i >= len || l[i] != ':')
		return bad(out, "a header field without a name and a colon");
	for (i++; i < len; i++)
		if (!is_field_byte(l[i]))
			return bad(out, "a control byte in a header field");
	return 0;
}

int http_head_parse(const uint8_t *p, size_t n, struct http_head *out)
{
	size_t lim = n < HTTP_HEAD_MAX ? n : HTTP_HEAD_MAX, pos = 0, len;
	const uint8_t *line;
	int err;

	memset(out, 0, sizeof(*out));
	if (!next_line(p, lim, &pos, &line, &len))
		goto short_head;
	err = request_line(line, len, out);
	if (err)
		return err;
	for (;;) {
		if (!next_line(p, lim, &pos, &line, &len))
			goto short_head;
		if (len == 0)
			break;
		err = field_line(line, len, out);
		if (err)
			return err;
	}
	out->len = pos;
	return 0;
short_head:
	/* Nothing malformed so far: more may come, up to the limit. */
	return n >= HTTP_HEAD_MAX ? -E2BIG : -EAGAIN;
}
