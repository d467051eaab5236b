/*
 * netcfg: netlink requests built by hand (see netcfg.h).  A request is one
 * nlmsghdr, a fixed family header, then rtattr/nlattr attributes (the two
 * share a layout: u16 length, u16 type, payload, padded to 4 bytes).
 */
#include "netcfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <rdma/rdma_netlink.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Large enough for any request here and for the kernel's ack. */
#define NL_BUF 1024
/* The kernel answers at once; a second bounds a wedged socket. */
#define NL_TIMEOUT_S 1

struct nlreq {
	union {
		struct nlmsghdr h;
		uint8_t buf[NL_BUF];
	} u;
};

static void *req_init(struct nlreq *r, uint16_t type, uint16_t flags,
		      size_t fixed)
{
	memset(r, 0, sizeof(*r));
	r->u.h.nlmsg_len = NLMSG_LENGTH(fixed);
	r->u.h.nlmsg_type = type;
	r->u.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	r->u.h.nlmsg_seq = 1;
	return NLMSG_DATA(&r->u.h);
}

/* Appends one attribute; -EMSGSIZE past the buffer. */
static int req_attr(struct nlreq *r, uint16_t type, const void *data,
		    size_t len)
{
	size_t off = NLMSG_ALIGN(r->u.h.nlmsg_len);
	struct nlattr *a = (struct nlattr *)(r->u.buf + off);

	if (off + NLA_ALIGN(NLA_HDRLEN + len) > sizeof(r->u.buf))
		return -EMSGSIZE;
	a->nla_len = (uint16_t)(NLA_HDRLEN + len);
	a->nla_type = type;
	memcpy((uint8_t *)a + NLA_HDRLEN, data, len);
	r->u.h.nlmsg_len = (uint32_t)(off + NLA_ALIGN(a->nla_len));
	return 0;
}

static int req_attr_str(struct nlreq *r, uint16_t type, const char *s)
{
	return req_attr(r, type, s, strlen(s) + 1);
}

/* Sends the request on a new socket of `proto`; the kernel's ack as
 * 0 or -errno. */
static int req_send_for(struct nlreq *r, int proto, int timeout_s)
{
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	struct timeval tv = {.tv_sec = timeout_s};
	uint8_t answer[NL_BUF];
	int fd, err;
	ssize_t n;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (sendto(fd, r->u.buf, r->u.h.nlmsg_len, 0,
		   (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		err = -errno;
		goto out;
	}
	for (;;) {
		struct nlmsghdr *h = (struct nlmsghdr *)answer;

		n = recv(fd, answer, sizeof(answer), 0);
		if (n < 0) {
			err = errno == EAGAIN ? -ETIMEDOUT : -errno;
			goto out;
		}
		for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				err = e->error; /* 0: the ack */
				goto out;
			}
			if (h->nlmsg_type == NLMSG_DONE) {
				err = 0;
				goto out;
			}
		}
	}
out:
	close(fd);
	return err;
}

static int req_send(struct nlreq *r, int proto)
{
	return req_send_for(r, proto, NL_TIMEOUT_S);
}

static int ifindex_of(const char *ifname)
{
	unsigned int i = if_nametoindex(ifname);

	return i ? (int)i : -ENODEV;
}

int netcfg_link_up(const char *ifname)
{
	struct nlreq r;
	struct ifinfomsg *ifi;
	int index = ifindex_of(ifname);

	if (index < 0)
		return index;
	ifi = req_init(&r, RTM_NEWLINK, 0, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	return req_send(&r, NETLINK_ROUTE);
}

int netcfg_parse_cidr(const char *text, unsigned int *addr, int *prefix)
{
	char ip[INET_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t len = slash ? (size_t)(slash - text) : strlen(text);
	struct in_addr in;

	if (len >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, text, len);
	ip[len] = '\0';
	if (inet_pton(AF_INET, ip, &in) != 1)
		return -EINVAL;
	*prefix = 32;
	if (slash) {
		char *end;
		long p = strtol(slash + 1, &end, 10);

		if (!slash[1] || *end || p < 0 || p > 32)
			return -EINVAL;
		*prefix = (int)p;
	}
	*addr = in.s_addr;
	return 0;
}

int netcfg_addr_add(const char *ifname, const char *cidr)
{
	struct nlreq r;
	struct ifaddrmsg *ifa;
	unsigned int addr;
	int prefix, err, index = ifindex_of(ifname);

	if (index < 0)
		return index;
	if (netcfg_parse_cidr(cidr, &addr, &prefix))
		return -EINVAL;
	ifa = req_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE,
		       sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (uint8_t)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (uint32_t)index;
	err = req_attr(&r, IFA_LOCAL, &addr, sizeof(addr));
	if (!err)
		err = req_attr(&r, IFA_ADDRESS, &addr, sizeof(addr));
	return err ? err : req_send(&r, NETLINK_ROUTE);
}

int netcfg_route_default(const char *gateway)
{
	struct nlreq r;
	struct rtmsg *rt;
	struct in_addr gw;
	int err;

	if (inet_pton(AF_INET, gateway, &gw) != 1)
		return -EINVAL;
	rt = req_init(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE,
		      sizeof(*rt));
	rt->rtm_family = AF_INET;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_BOOT;
	rt->rtm_scope = RT_SCOPE_UNIVERSE;
	rt->rtm_type = RTN_UNICAST;
	err = req_attr(&r, RTA_GATEWAY, &gw, sizeof(gw));
	return err ? err : req_send(&r, NETLINK_ROUTE);
}

int netcfg_rxe_add(const char *name, const char *netdev)
{
	struct nlreq r;
	int err;

	if (ifindex_of(netdev) < 0)
		return -ENODEV;
	req_init(&r, RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_NEWLINK), 0,
		 0);
	err = req_attr_str(&r, RDMA_NLDEV_ATTR_DEV_NAME, name);
	if (!err)
		err = req_attr_str(&r, RDMA_NLDEV_ATTR_LINK_TYPE, "rxe");
	if (!err)
		err = req_attr_str(&r, RDMA_NLDEV_ATTR_NDEV_NAME, netdev);
	return err ? err : req_send(&r, NETLINK_RDMA);
}

int netcfg_rdma_link_del(unsigned int index, int timeout_s)
{
	struct nlreq r;
	uint32_t idx = index;
	int err;

	req_init(&r, RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_DELLINK), 0,
		 0);
	err = req_attr(&r, RDMA_NLDEV_ATTR_DEV_INDEX, &idx, sizeof(idx));
	return err ? err : req_send_for(&r, NETLINK_RDMA, timeout_s);
}
