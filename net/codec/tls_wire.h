/*
 * tls_wire: the few TLS bytes rpcgate reads itself (RFC 8446); the rest
 * of TLS is OpenSSL's (net/rpc/tls.c).
 */
#ifndef RPCGATE_NET_TLS_WIRE_H
#define RPCGATE_NET_TLS_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Does this start a TLS handshake record, as every ClientHello does
 * (type 22, version 3.1 to 3.4)?  1 yes, 0 too few bytes to say, -1 no. */
int tls_wire_detect(const uint8_t *p, size_t n);

/*
 * Finds protocol `want` in an ALPN list (RFC 7301 3.1: names each
 * prefixed by a length byte, as a ClientHello carries them).  The
 * offset of the name's first byte, or -1 when absent or the list is
 * malformed before it.
 */
long tls_wire_alpn_find(const uint8_t *list, size_t n, const char *want);

#endif
