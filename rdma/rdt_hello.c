/* rdt_hello: brpc's v2 RDMA hello and ACK (see rdt_hello.h). */
#include "rdt_hello.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

void rdt_hello_pack(const struct rdt_hello *h, uint8_t out[RDT_HELLO_LEN])
{
	memcpy(out, RDT_HELLO_MAGIC, 4);
	put16(out + 4, RDT_HELLO_LEN);
	put16(out + 6, h->hello_ver);
	put16(out + 8, h->impl_ver);
	put32(out + 10, h->block_size);
	put16(out + 14, h->sq_size);
	put16(out + 16, h->rq_size);
	put16(out + 18, h->lid);
	memcpy(out + 20, h->gid, 16);
	put32(out + 36, h->qp_num);
}

int rdt_hello_parse(const uint8_t *in, size_t n, struct rdt_hello *h)
{
	size_t m = n < 4 ? n : 4;

	if (memcmp(in, RDT_HELLO_MAGIC, m) != 0)
		return -EPROTO;
	if (n < 6)
		return -EAGAIN;
	h->msg_len = get16(in + 4);
	if (h->msg_len < RDT_HELLO_LEN || h->msg_len > RDT_HELLO_MAX)
		return -EPROTO;
	if (n < RDT_HELLO_LEN)
		return -EAGAIN;
	h->hello_ver = get16(in + 6);
	h->impl_ver = get16(in + 8);
	h->block_size = get32(in + 10);
	h->sq_size = get16(in + 14);
	h->rq_size = get16(in + 16);
	h->lid = get16(in + 18);
	memcpy(h->gid, in + 20, 16);
	h->qp_num = get32(in + 36);
	return 0;
}

bool rdt_hello_negotiable(const struct rdt_hello *h)
{
	return h->hello_ver == RDT_HELLO_VER && h->impl_ver == RDT_IMPL_VER &&
	       h->block_size >= RDT_MIN_BLOCK_SIZE &&
	       h->sq_size >= RDT_MIN_QUEUE && h->rq_size >= RDT_MIN_QUEUE;
}

void rdt_hello_refusal(struct rdt_hello *h, bool tcp_port)
{
	memset(h, 0, sizeof(*h));
	h->msg_len = RDT_HELLO_LEN;
	if (tcp_port)
		h->hello_ver = RDT_HELLO_VER_TCP_PORT;
}

void rdt_hello_describe(const struct rdt_hello *h, char *buf, size_t size)
{
	char gid[INET6_ADDRSTRLEN];

	inet_ntop(AF_INET6, h->gid, gid, sizeof(gid));
	snprintf(buf, size,
		 "ver %u/%u block %u sq %u rq %u lid %u gid %s qpn %u",
		 h->hello_ver, h->impl_ver, h->block_size, h->sq_size,
		 h->rq_size, h->lid, gid, h->qp_num);
}

void rdt_ack_pack(uint32_t flags, uint8_t out[RDT_ACK_LEN])
{
	put32(out, flags);
}

uint32_t rdt_ack_parse(const uint8_t in[RDT_ACK_LEN])
{
	return get32(in);
}
