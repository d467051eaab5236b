/*
 * dns: c-ares driven by an event loop (see dns.h).
 */
#include "dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "base/clock.h"
#include "base/util.h"

/* c-ares tries each server this many times before giving up. */
#define DNS_TRIES 2
/* Reads per readiness edge, at most (see on_io). */
#define DNS_READ_ROUNDS 64
/* One address as "[v6]:port" plus the separator. */
#define DNS_ADDR_TEXT (INET6_ADDRSTRLEN + 10)

struct lookup {
	struct dns *d;
	dns_done_fn *done;
	void *arg;
	int port;
	char host[256];
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_status;

static void lib_init(void)
{
	lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void rearm(struct dns *d);

static void on_timer(struct loop_timer *t)
{
	struct dns *d = container_of(t, struct dns, timer);

	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	rearm(d);
}

/* The loop timer follows c-ares' next timeout. */
static void rearm(struct dns *d)
{
	struct timeval tv, *next;

	if (!d->channel)
		return;
	next = ares_timeout(d->channel, NULL, &tv);
	if (!next) {
		if (loop_timer_active(&d->timer))
			loop_timer_stop(d->loop, &d->timer);
		return;
	}
	loop_timer_start(d->loop, &d->timer,
			 loop_now(d->loop) +
			     (int64_t)next->tv_sec * 1000000000 +
			     next->tv_usec * CLOCK_NS_PER_US,
			 on_timer);
}

/*
 * The loop's watchers are edge-triggered, and c-ares reads a TCP answer
 * one recv() per call (its length, then its body): keep calling it while
 * the socket still has bytes, or the rest of the answer would wait for
 * an edge that never comes.
 */
static void on_io(struct loop_io *io, uint32_t events)
{
	struct dns_sock *s = container_of(io, struct dns_sock, io);
	struct dns *d = s->d;
	int fd = io->fd;

	for (int round = 0; round < DNS_READ_ROUNDS; round++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		ares_process_fd(d->channel,
				events & (EPOLLIN | EPOLLERR | EPOLLHUP)
				    ? fd
				    : ARES_SOCKET_BAD,
				events & EPOLLOUT ? fd : ARES_SOCKET_BAD);
		/* c-ares may have closed it (and the fd be reused). */
		if (!s->used || s->io.fd != fd || !d->channel)
			break;
		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
			break;
		events = EPOLLIN;
	}
	rearm(d);
}

/* c-ares opens, closes or changes interest in a socket. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock *s = NULL, *free_slot = NULL;
	uint32_t ev = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);

	for (int i = 0; i < DNS_SOCKS_MAX; i++) {
		if (d->socks[i].used && d->socks[i].io.fd == fd)
			s = &d->socks[i];
		else if (!d->socks[i].used && !free_slot)
			free_slot = &d->socks[i];
	}
	if (!ev) {
		if (s) {
			loop_io_del(d->loop, &s->io);
			s->used = false;
		}
		return;
	}
	if (s) {
		loop_io_mod(d->loop, &s->io, ev);
		return;
	}
	if (!free_slot)
		return; /* c-ares times the query out: never in practice */
	free_slot->d = d;
	free_slot->used = true;
	loop_io_init(&free_slot->io, fd, ev, on_io);
	if (loop_io_add(d->loop, &free_slot->io))
		free_slot->used = false;
}

int dns_init(struct dns *d, struct loop *loop, const char *servers,
	     int timeout_ms, const struct mem *mem, char *why, size_t why_size)
{
	struct ares_options o;
	ares_channel ch;
	int rc;

	memset(d, 0, sizeof(*d));
	d->loop = loop;
	d->mem = mem_or_default(mem);
	loop_timer_init(&d->timer);
	pthread_once(&lib_once, lib_init);
	if (lib_status != ARES_SUCCESS) {
		snprintf(why, why_size, "c-ares: %s",
			 ares_strerror(lib_status));
		return -EIO;
	}
	memset(&o, 0, sizeof(o));
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = d;
	o.timeout = timeout_ms;
	o.tries = DNS_TRIES;
	rc = ares_init_options(&ch, &o,
			       ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
				   ARES_OPT_TRIES);
	if (rc != ARES_SUCCESS) {
		snprintf(why, why_size, "c-ares: %s", ares_strerror(rc));
		return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
	}
	if (servers && *servers) {
		rc = ares_set_servers_ports_csv(ch, servers);
		if (rc != ARES_SUCCESS) {
			snprintf(why, why_size,
				 "dns_servers \"%s\": %s (expected "
				 "IP[:PORT],...)",
				 servers, ares_strerror(rc));
			ares_destroy(ch);
			return -EINVAL;
		}
	}
	d->channel = ch;
	return 0;
}

void dns_destroy(struct dns *d)
{
	if (!d->channel)
		return;
	/* Pending lookups end here with ARES_EDESTRUCTION. */
	ares_destroy(d->channel);
	d->channel = NULL;
	for (int i = 0; i < DNS_SOCKS_MAX; i++)
		if (d->socks[i].used) {
			loop_io_del(d->loop, &d->socks[i].io);
			d->socks[i].used = false;
		}
	if (loop_timer_active(&d->timer))
		loop_timer_stop(d->loop, &d->timer);
}

static int status_errno(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return 0;
	case ARES_ENOTFOUND:
	case ARES_ENODATA:
	case ARES_ENONAME:
		return -ENOENT;
	case ARES_ETIMEOUT:
		return -ETIMEDOUT;
	case ARES_ECONNREFUSED:
		return -ECONNREFUSED;
	case ARES_EDESTRUCTION:
	case ARES_ECANCELLED:
		return -ECANCELED;
	case ARES_ENOMEM:
		return -ENOMEM;
	}
	return -EIO;
}

static void on_answer(void *arg, int status, int timeouts,
		      struct ares_addrinfo *res)
{
	struct lookup *lk = arg;
	struct dns *d = lk->d;
	struct naming_list out;
	char why[320] = "", *text = NULL;
	size_t n = 0, off = 0;
	int err = status_errno(status);

	(void)timeouts;
	naming_list_init(&out, d->mem);
	if (!err && res) {
		for (struct ares_addrinfo_node *a = res->nodes; a;
		     a = a->ai_next)
			n++;
		text = mem_alloc(d->mem, n * DNS_ADDR_TEXT + 1);
		if (!text)
			err = -ENOMEM;
	}
	if (!err && res) {
		for (struct ares_addrinfo_node *a = res->nodes; a;
		     a = a->ai_next) {
			char ip[INET6_ADDRSTRLEN];
			const void *src =
			    a->ai_family == AF_INET6
				? (const void *)&(
				      (struct sockaddr_in6 *)a->ai_addr)
				      ->sin6_addr
				: (const void *)&(
				      (struct sockaddr_in *)a->ai_addr)
				      ->sin_addr;

			if ((a->ai_family != AF_INET &&
			     a->ai_family != AF_INET6) ||
			    !inet_ntop(a->ai_family, src, ip, sizeof(ip)))
				continue;
			off += (size_t)snprintf(
			    text + off, DNS_ADDR_TEXT + 1, "%s%s%s%s:%d",
			    off ? "," : "", a->ai_family == AF_INET6 ? "[" : "",
			    ip, a->ai_family == AF_INET6 ? "]" : "", lk->port);
		}
		text[off] = '\0';
		err = naming_parse(text, ',', &out, NULL, NULL, 0);
		if (!err && !out.n)
			err = -ENOENT;
	}
	if (err)
		snprintf(why, sizeof(why), "cannot resolve %s: %s", lk->host,
			 status != ARES_SUCCESS ? ares_strerror(status)
						: strerror(-err));
	mem_free(d->mem, text);
	if (res)
		ares_freeaddrinfo(res);
	d->pending--;
	lk->done(lk->arg, err, &out, why);
	naming_list_free(&out);
	mem_free(d->mem, lk);
}

void dns_resolve(struct dns *d, const char *host, int port, dns_done_fn *done,
		 void *arg)
{
	struct ares_addrinfo_hints hints;
	struct lookup *lk = mem_alloc(d->mem, sizeof(*lk));

	if (!lk || !d->channel) {
		mem_free(d->mem, lk);
		done(arg, lk ? -ECANCELED : -ENOMEM, NULL,
		     lk ? "the resolver is closed" : "no memory to resolve");
		return;
	}
	lk->d = d;
	lk->done = done;
	lk->arg = arg;
	lk->port = port;
	snprintf(lk->host, sizeof(lk->host), "%s", host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_flags = ARES_AI_NOSORT;
	d->pending++;
	/* May answer at once (a numeric host, /etc/hosts). */
	ares_getaddrinfo(d->channel, lk->host, NULL, &hints, on_answer, lk);
	rearm(d);
}
