/*
 * rdt_hello: the bytes of brpc's RDMA handshake, generation 2
 * (spec/brpc-wire.md 2.3, 2.5): the 40-byte hello each side sends, the
 * refusal hello a server sends when it will not do RDMA, and the 4-byte
 * ACK the client ends with.  Pure functions on byte arrays; the state
 * machines that send and wait for them are in rdt_ep.c.
 */
#ifndef RPCGATE_RDMA_RDT_HELLO_H
#define RPCGATE_RDMA_RDT_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RDT_HELLO_MAGIC "RDMA"
#define RDT_HELLO_LEN	40
/* HEAD's bound on msg_len; the bytes past 40 are read and ignored. */
#define RDT_HELLO_MAX 4096
#define RDT_ACK_LEN   4
/* ACK bit 0: the client will use RDMA. */
#define RDT_ACK_RDMA 0x1u

#define RDT_HELLO_VER 2
#define RDT_IMPL_VER  1
/* hello_ver of the refusal a TCP-only port sends (brpc HEAD). */
#define RDT_HELLO_VER_TCP_PORT 0xffff

/* The acceptance test of a peer's hello (spec 2.3). */
#define RDT_MIN_BLOCK_SIZE 1024
#define RDT_MIN_QUEUE	   16

struct rdt_hello {
	uint16_t msg_len; /* parsed; always 40 when packed */
	uint16_t hello_ver;
	uint16_t impl_ver;
	uint32_t block_size;
	uint16_t sq_size;
	uint16_t rq_size;
	uint16_t lid;
	uint8_t gid[16];
	uint32_t qp_num;
};

/* The 40 bytes of `h` (msg_len 40, integers big-endian). */
void rdt_hello_pack(const struct rdt_hello *h, uint8_t out[RDT_HELLO_LEN]);

/*
 * Reads a hello from the first n bytes of `in`.  0: done, `h` filled, the
 * hello takes h->msg_len bytes (40 to RDT_HELLO_MAX; the caller skips
 * them all).  -EAGAIN: fewer than 40 bytes (nothing decided beyond the
 * magic).  -EPROTO: not "RDMA", or msg_len below 40 or above
 * RDT_HELLO_MAX.  The magic is checked as soon as 4 bytes are there.
 */
int rdt_hello_parse(const uint8_t *in, size_t n, struct rdt_hello *h);

/* Would brpc take this hello for RDMA (spec 2.3's test)? */
bool rdt_hello_negotiable(const struct rdt_hello *h);

/* The refusal a server sends: versions 0 (an RDMA port that cannot) or
 * 0xffff (a TCP-only port), every other field 0. */
void rdt_hello_refusal(struct rdt_hello *h, bool tcp_port);

/* "ver 2/1 block 8160 sq 128 rq 128 lid 0 gid fe80::1 qpn 17", for logs. */
void rdt_hello_describe(const struct rdt_hello *h, char *buf, size_t size);

void rdt_ack_pack(uint32_t flags, uint8_t out[RDT_ACK_LEN]);
uint32_t rdt_ack_parse(const uint8_t in[RDT_ACK_LEN]);

#endif
