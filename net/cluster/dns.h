/*
 * dns: asynchronous name resolution on an event loop (c-ares), for
 * naming's http://HOST:PORT (brpc's domain naming service).
 *
 * c-ares' sockets are watched by the loop (its socket-state callback adds
 * and removes loop_io watchers) and its timeouts by a loop timer, so a
 * lookup never blocks the loop: dns_resolve() returns at once and the
 * callback runs later on the same loop with every A and AAAA record.
 *
 * Threads: one loop.  dns_init() anywhere before use; dns_resolve() and
 * dns_destroy() on the loop's thread (destroy ends pending lookups with
 * -ECANCELED).
 */
#ifndef RPCGATE_NET_DNS_H
#define RPCGATE_NET_DNS_H

#include <stddef.h>

#include "base/loop.h"
#include "base/mem.h"
#include "naming.h"

/* c-ares sockets watched at once (UDP and TCP to each server). */
#define DNS_SOCKS_MAX 16

struct dns_sock {
	struct loop_io io;
	struct dns *d;
	bool used;
};

struct dns {
	void *channel; /* ares_channel */
	struct loop *loop;
	const struct mem *mem;
	struct loop_timer timer;
	struct dns_sock socks[DNS_SOCKS_MAX];
	int pending; /* lookups not yet answered */
};

/*
 * `servers`: "IP[:PORT],..." to ask instead of /etc/resolv.conf's (NULL
 * or "": the system's).  `timeout_ms` bounds each try (c-ares retries a
 * few times).  0; -EINVAL (bad servers list, `why` says); -ENOMEM;
 * -EIO (c-ares could not start, `why` says).
 */
int dns_init(struct dns *d, struct loop *loop, const char *servers,
	     int timeout_ms, const struct mem *mem, char *why, size_t why_size);
void dns_destroy(struct dns *d);

/* The answer: 0 and the addresses as "IP:PORT" nodes (tag ""), or
 * -ENOENT (no such name), -ETIMEDOUT, -ECONNREFUSED, -EIO, -ECANCELED,
 * -ENOMEM, with `why` a sentence.  `out` is the callee's, valid during
 * the call. */
typedef void dns_done_fn(void *arg, int err, const struct naming_list *out,
			 const char *why);

/* Starts resolving `host` (A and AAAA); done runs once, later, on the
 * loop.  Loop thread. */
void dns_resolve(struct dns *d, const char *host, int port, dns_done_fn *done,
		 void *arg);

#endif
