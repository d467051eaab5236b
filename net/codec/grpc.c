/*
 * grpc: the message framing, grpc-timeout, grpc-message and the status
 * tables (grpc.h).
 */
#include "grpc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "rpc_errno.h"

int grpc_msg_peek(const struct iobuf *in, size_t off, size_t max,
		  struct grpc_msg *m)
{
	uint8_t p[GRPC_PREFIX_LEN];

	if (iobuf_len(in) < off + GRPC_PREFIX_LEN)
		return 0;
	iobuf_copy_out(in, off, p, sizeof(p));
	if (p[0] > 1)
		return -EPROTO;
	m->compressed = p[0] == 1;
	m->len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
		 (uint32_t)p[3] << 8 | p[4];
	if (m->len > max)
		return -EMSGSIZE;
	return iobuf_len(in) - off - GRPC_PREFIX_LEN >= m->len ? 1 : 0;
}

void grpc_msg_prefix(uint8_t p[GRPC_PREFIX_LEN], bool compressed, uint32_t len)
{
	p[0] = compressed;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
}

int grpc_msg_put(struct iobuf *q, bool compressed, struct iobuf *msg)
{
	uint8_t pfx[GRPC_PREFIX_LEN];
	size_t n = iobuf_len(msg);
	struct iobuf one;
	int err;

	if (n > UINT32_MAX) {
		iobuf_reset(msg);
		return -EMSGSIZE;
	}
	grpc_msg_prefix(pfx, compressed, (uint32_t)n);
	iobuf_init(&one, q->pool);
	err = iobuf_append(&one, pfx, sizeof(pfx));
	if (!err)
		err = iobuf_append_buf(&one, msg);
	if (!err)
		err = iobuf_append_buf(q, &one);
	iobuf_destroy(&one);
	iobuf_reset(msg);
	return err ? -ENOMEM : 0;
}

int grpc_timeout_parse(const char *s, size_t n, int64_t *ms)
{
	int64_t v = 0, per_ms_num, per_ms_den;
	size_t i;

	if (n < 2 || n - 1 > GRPC_TIMEOUT_DIGITS)
		return -EINVAL;
	for (i = 0; i < n - 1; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	/* value * num / den milliseconds */
	switch (s[n - 1]) {
	case 'H': per_ms_num = 3600000, per_ms_den = 1; break;
	case 'M': per_ms_num = 60000, per_ms_den = 1; break;
	case 'S': per_ms_num = 1000, per_ms_den = 1; break;
	case 'm': per_ms_num = 1, per_ms_den = 1; break;
	case 'u': per_ms_num = 1, per_ms_den = 1000; break;
	case 'n': per_ms_num = 1, per_ms_den = 1000000; break;
	default: return -EINVAL;
	}
	v = (v * per_ms_num + per_ms_den - 1) / per_ms_den;
	*ms = v > INT32_MAX ? INT32_MAX : v;
	return 0;
}

void grpc_timeout_format(int64_t ms, char out[GRPC_TIMEOUT_TEXT])
{
	if (ms < 1)
		ms = 1;
	if (ms < 100000000)
		snprintf(out, GRPC_TIMEOUT_TEXT, "%lldm", (long long)ms);
	else
		snprintf(out, GRPC_TIMEOUT_TEXT, "%lldS",
			 (long long)((ms + 999) / 1000));
}

size_t grpc_message_encode(const char *in, size_t n, char *out,
			   size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0, kept = 0; /* needed, written */
	bool room = out_size > 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t b = (uint8_t)in[i];
		size_t w = b >= 0x20 && b <= 0x7e && b != '%' ? 1 : 3;

		/* an escape is written whole or not at all */
		if (room && kept + w < out_size) {
			if (w == 1) {
				out[kept] = (char)b;
			} else {
				out[kept] = '%';
				out[kept + 1] = hex[b >> 4];
				out[kept + 2] = hex[b & 15];
			}
			kept += w;
		} else {
			room = false;
		}
		o += w;
	}
	if (out_size)
		out[kept] = '\0';
	return o;
}

size_t grpc_message_decode(const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (in[i] == '%' && i + 2 < n && (hi = hex_digit((uint8_t)in[i + 1])) >= 0 &&
		    (lo = hex_digit((uint8_t)in[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
			continue;
		}
		out[o++] = in[i];
	}
	out[o] = '\0';
	return o;
}

/*
 * brpc's ErrorCodeToGrpcStatus and GrpcStatusToErrorCode
 * (src/brpc/grpc.cpp), plus rpcgate's own rows, marked: a broken or
 * closed upstream is UNAVAILABLE (so gRPC clients retry it, as brpc's
 * clients retry EFAILEDSOCKET), and back.
 */
static const struct {
	int rpc, status;
} to_status[] = {
    {0, GRPC_OK},
    {RPC_ENOSERVICE, GRPC_UNIMPLEMENTED},
    {RPC_ENOMETHOD, GRPC_UNIMPLEMENTED},
    {RPC_ERPCAUTH, GRPC_UNAUTHENTICATED},
    {RPC_EREQUEST, GRPC_INVALID_ARGUMENT},
    {EINVAL, GRPC_INVALID_ARGUMENT},
    {RPC_ELIMIT, GRPC_RESOURCE_EXHAUSTED},
    {RPC_ELOGOFF, GRPC_UNAVAILABLE},
    {EPERM, GRPC_PERMISSION_DENIED},
    {RPC_ERPCTIMEDOUT, GRPC_DEADLINE_EXCEEDED},
    {ECANCELED, GRPC_CANCELLED},
    /* rpcgate's */
    {RPC_EFAILEDSOCKET, GRPC_UNAVAILABLE},
    {RPC_EEOF, GRPC_UNAVAILABLE},
    {RPC_ECLOSE, GRPC_UNAVAILABLE},
};

static const struct {
	int status, rpc;
} to_rpc[] = {
    {GRPC_OK, 0},
    {GRPC_DEADLINE_EXCEEDED, RPC_ERPCTIMEDOUT},
    {GRPC_UNIMPLEMENTED, RPC_ENOMETHOD},
    {GRPC_RESOURCE_EXHAUSTED, RPC_ELIMIT},
    {GRPC_UNAUTHENTICATED, RPC_ERPCAUTH},
    {GRPC_INVALID_ARGUMENT, EINVAL},
    {GRPC_PERMISSION_DENIED, EPERM},
    {GRPC_CANCELLED, ECANCELED},
    {GRPC_ALREADY_EXISTS, EEXIST},
    /* rpcgate's */
    {GRPC_UNAVAILABLE, RPC_EFAILEDSOCKET},
};

int grpc_status_from_rpc(int code)
{
	for (size_t i = 0; i < sizeof(to_status) / sizeof(to_status[0]); i++)
		if (to_status[i].rpc == code)
			return to_status[i].status;
	return GRPC_INTERNAL;
}

int grpc_status_to_rpc(int status)
{
	for (size_t i = 0; i < sizeof(to_rpc) / sizeof(to_rpc[0]); i++)
		if (to_rpc[i].status == status)
			return to_rpc[i].rpc;
	return RPC_EINTERNAL;
}

const char *grpc_status_name(int status)
{
	static const char *const names[] = {
	    "OK",		"CANCELLED",	     "UNKNOWN",
	    "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	    "ALREADY_EXISTS",	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	    "FAILED_PRECONDITION", "ABORTED",	     "OUT_OF_RANGE",
	    "UNIMPLEMENTED",	"INTERNAL",	     "UNAVAILABLE",
	    "DATA_LOSS",	"UNAUTHENTICATED",
	};

	if (status < 0 || (size_t)status >= sizeof(names) / sizeof(names[0]))
		return "UNKNOWN";
	return names[status];
}
