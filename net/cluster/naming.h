/*
 * naming: where a cluster's instances come from, as brpc names them.
 *
 *   list://ADDR[ TAG],ADDR[ TAG],...   fixed, given in the URL
 *   file://PATH                        one instance per line, re-read
 *                                      when the file changes
 *   http://HOST[:PORT][/...]           every A and AAAA record of HOST
 *                                      with PORT (80 by default),
 *                                      re-resolved on an interval
 *                                      (brpc's domain naming; net/cluster/dns)
 *   etcd://HOST:PORT[,...]/PREFIX      the keys under PREFIX, watched
 *                                      (net/cluster/etcd)
 *   consul://SERVICE                   the agent's healthy instances,
 *                                      blocking queries (net/cluster/consul)
 *
 * An instance is "HOST:PORT" ("[v6]:PORT" too), optionally followed by
 * blanks and a tag: the same address with two tags is two instances
 * (brpc's ServerNode).  In a file, '#' starts a comment and blank lines
 * are skipped.  A repeated (address, tag) pair counts once.  A malformed
 * entry is skipped and reported (one line each), as brpc logs and skips
 * it, so that one bad line in a reloaded file does not empty a cluster.
 *
 * Pure text handling: no I/O but naming_read_file(), no threads.
 */
#ifndef RPCGATE_NET_NAMING_H
#define RPCGATE_NET_NAMING_H

#include <stdbool.h>
#include <stddef.h>

#include "base/mem.h"

/* "[v6 address]:port" fits with room to spare; longer is refused. */
#define NAMING_ADDR_MAX 96
#define NAMING_TAG_MAX	64
/* Instances one naming source may give; more is refused. */
#define NAMING_NODES_MAX 65536
/* A file:// source larger than this is refused (65536 lines of 128). */
#define NAMING_FILE_MAX (8u << 20)

struct naming_node {
	char addr[NAMING_ADDR_MAX]; /* HOST:PORT */
	char tag[NAMING_TAG_MAX];   /* "" when none */
};

struct naming_list {
	struct naming_node *v;
	size_t n, cap;
	const struct mem *mem;
};

enum naming_scheme {
	NAMING_LIST,
	NAMING_FILE,
	NAMING_DNS,
	NAMING_ETCD,   /* etcd://HOST:PORT[,...]/PREFIX (net/cluster/etcd) */
	NAMING_CONSUL, /* consul://SERVICE (net/cluster/consul) */
};

/* Splits a naming URL: the scheme, and what follows "scheme://" in
 * *rest.  0; -EINVAL for an unknown or missing scheme (`why` says). */
int naming_url_split(const char *url, enum naming_scheme *scheme,
		     const char **rest, char *why, size_t why_size);

/* http://'s (or https://'s) rest, "HOST[:PORT][/...]" ("[v6]:PORT"
 * too): the host (brackets off) and the port (default_port when
 * absent).  0 or -EINVAL. */
int naming_dns_target(const char *rest, char *host, size_t host_size,
		      int *port, int default_port);

/* https://: the instances are called over TLS (port 443 by default). */
bool naming_url_tls(const char *url);

void naming_list_init(struct naming_list *l, const struct mem *mem);
void naming_list_free(struct naming_list *l);

/*
 * Parses entries separated by `sep` (',' for list://, '\n' for a file,
 * which also takes '#' comments) into `out` (emptied first).  Entries
 * that do not parse are skipped; the first such is described in `why`
 * (may be NULL) and their count returned in *skipped.  0; -ENOMEM;
 * -E2BIG over NAMING_NODES_MAX.
 */
int naming_parse(const char *text, char sep, struct naming_list *out,
		 unsigned *skipped, char *why, size_t why_size);

/* One entry p[0..len), blanks around it ignored: "ADDR" or "ADDR TAG".
 * 0, or -EINVAL. */
int naming_parse_entry(const char *p, size_t len, struct naming_node *out);

/* Reads and parses a file:// source.  As naming_parse(), or -errno of
 * open/read (-EFBIG over NAMING_FILE_MAX), with `why` saying so. */
int naming_read_file(const char *path, struct naming_list *out,
		     unsigned *skipped, char *why, size_t why_size);

/* The same instances, in any order.  O(n); false without memory for
 * the index (a caller then applies a list equal to its own). */
bool naming_same(const struct naming_list *a, const struct naming_list *b);

/*
 * A set of nodes found by address and tag in O(1), for comparing lists
 * of thousands of instances.  It points at nodes that stay where they
 * are (a list's array, instances): a node moved or freed must not be
 * looked up again.  Sized at init for `n` nodes; adding more is refused.
 */
struct naming_index {
	const struct naming_node **slot; /* mask + 1 of them, NULL empty */
	size_t mask, n, max;
	const struct mem *mem;
};

/* 0 or -ENOMEM. */
int naming_index_init(struct naming_index *ix, const struct mem *mem, size_t n);
void naming_index_destroy(struct naming_index *ix);
/* The node with `key`'s address and tag, or NULL. */
const struct naming_node *naming_index_find(const struct naming_index *ix,
					    const struct naming_node *key);
/* Adds `node`: 0, or -EEXIST with one of its address and tag there,
 * or -ENOSPC past the n of init. */
int naming_index_add(struct naming_index *ix, const struct naming_node *node);

/* Keeps only the nodes whose tag is `tag` (NULL or "": keeps all). */
void naming_filter_tag(struct naming_list *l, const char *tag);

/* A naming filter (brpc's NamingServiceFilter): true keeps the node.
 * Runs on a task worker or at init; it must not block for long. */
typedef bool naming_filter_fn(void *arg, const struct naming_node *node);

/* Keeps only the nodes fn keeps (fn NULL: all). */
void naming_filter(struct naming_list *l, naming_filter_fn *fn, void *arg);

/* Is `addr` a HOST:PORT naming accepts?  (The port 1..65535.) */
bool naming_addr_valid(const char *addr);

#endif
