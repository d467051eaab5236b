/*
 * netcfg: the appliance's network set-up over netlink, with no external
 * tool (the VM image holds nothing but the binary): links up, an address,
 * a default route (rtnetlink), and a soft-RoCE device over a NIC (RDMA
 * netlink, what `rdma link add NAME type rxe netdev NIC` sends).
 *
 * Every call opens its own netlink socket, sends one request with
 * NLM_F_ACK and reads the kernel's answer: 0, or the kernel's -errno
 * (-ENODEV for an unknown interface name).  Needs CAP_NET_ADMIN.
 */
#ifndef RPCGATE_APP_NETCFG_H
#define RPCGATE_APP_NETCFG_H

#include <stdbool.h>

/* Sets interface `ifname` up. */
int netcfg_link_up(const char *ifname);

/*
 * Parses "A.B.C.D/PREFIX" (prefix 0-32; without "/PREFIX", 32).  0 or
 * -EINVAL.  addr is in network order.
 */
int netcfg_parse_cidr(const char *text, unsigned int *addr, int *prefix);

/* Adds IPv4 address `cidr` ("10.0.2.15/24") to `ifname`; an address that
 * is already there is fine. */
int netcfg_addr_add(const char *ifname, const char *cidr);

/* Adds a default IPv4 route through `gateway` ("10.0.2.2"). */
int netcfg_route_default(const char *gateway);

/* Creates RDMA device `name` of link type "rxe" over `netdev`; -EEXIST
 * when a device of that name is there already. */
int netcfg_rxe_add(const char *name, const char *netdev);

/*
 * Deletes the RDMA device of kernel index `index` (what `rdma link delete
 * NAME` sends).  The kernel answers once the device is gone, which for a
 * driver like rxe means once every process has let go of it: -ETIMEDOUT
 * when that takes longer than timeout_s.
 */
int netcfg_rdma_link_del(unsigned int index, int timeout_s);

#endif
