/*
 * pingpong: the raw limit for the echo benchmark (issue 3).  A plain TCP
 * echo over loopback with no RPC framing, no event loop library and no
 * serialisation, so `rpcgate bench` against `rpcgate echo` can be read as
 * a ratio to what the kernel alone gives on the same machine in the same
 * run (scripts/bench-echo runs both).
 *
 *   pingpong server --port=N [--host=127.0.0.1]
 *       prints "pingpong: listening on HOST:PORT" once ready, then echoes
 *       every byte of every connection back to its sender; a thread per
 *       connection.  Exits 0 on SIGTERM or SIGINT.
 *
 *   pingpong client --server=HOST:PORT --concurrency=C --payload=BYTES
 *                   --duration=SECONDS [--json]
 *       one connection carrying C messages of BYTES bytes in flight:
 *
 *         client                          server
 *           msg 0 .. msg C-1   ------->
 *                              <-------   the same bytes, in order
 *           each completed msg k: record its latency, send msg k+C
 *
 *       The server echoes a byte stream, so messages come back in the
 *       order they were sent and the k-th message is simply the k-th run
 *       of BYTES bytes read.  The first min(8, BYTES) bytes of each
 *       message carry its sequence number, checked on the way back, so a
 *       lost or reordered byte is an error rather than a fast result.
 *
 * The client reads whatever is available (one read may complete several
 * messages) and sends the replacements of all of them in one write: fewer
 * system calls than a read and a write per message, which is the point of
 * a limit.  Every message still gets its own send time and latency.
 *
 * With --epoll (server, client or both) an end waits in epoll_wait and
 * then reads without blocking, as an event-loop stack must: the floor for
 * such a stack, one system call per message and side above the raw one.
 *
 * With --spin an end never sleeps: it reads without blocking (or, with
 * --epoll, calls epoll_wait with a zero timeout) until bytes come.  The
 * reference for rpcgate's event_dispatcher_spin_us, which polls the same
 * way: on a virtual machine it saves the wake-up of a halted vCPU, for a
 * CPU kept busy.
 *
 * Exit statuses as rpcgate's: 0 success, 1 run-time failure (connection
 * refused, stream corrupted, server gone), 2 bad arguments.
 *
 * Depends on libc only: builds with musl-gcc -static and with gcc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

#define NS_PER_S  1000000000LL
#define NS_PER_US 1000LL

/* The server's read size: 64 KiB is what loopback hands over in one read
 * when the peer is quick (its MTU is 64 KiB), so a larger buffer buys
 * nothing. */
#define ECHO_BUF 65536

/* The client's read size: a few loopback segments, so that at high
 * concurrency one read completes many messages. */
#define CLIENT_RBUF (256 * 1024)

/* brpc's default max_body_size is 64 MiB; a benchmark payload above that
 * would not be an RPC rpcgate accepts either. */
#define MAX_PAYLOAD (64 * 1024 * 1024)

/* Messages in flight on the one connection: far beyond any useful
 * closed-loop benchmark, low enough that the send-time ring is small. */
#define MAX_CONCURRENCY 65536

/* Bytes in flight (concurrency x payload) are buffered whole by the
 * client; 1 GiB keeps a typo from exhausting the machine. */
#define MAX_INFLIGHT_BYTES (1024LL * 1024 * 1024)

/* An hour: a benchmark longer than that is a soak test. */
#define MAX_DURATION_S 3600.0

/* With nothing read for this long the server is taken for hung; a healthy
 * loopback echo answers in microseconds. */
#define STALL_LIMIT_NS (10 * NS_PER_S)

/* How often a blocking read wakes up to look at the clock. */
#define RECV_TIMEOUT_MS 100

/* Bytes of the sequence number stamped at the head of each message. */
#define SEQ_BYTES 8

/*
 * Latency histogram: 1 us buckets up to 65.535 ms, then 1 ms buckets up
 * to 65.535 s (anything slower lands in the last bucket).  Exact to the
 * microsecond where loopback latencies live, 1 MiB in all, and nothing to
 * allocate or sort per sample.
 */
#define HIST_FINE   65536 /* 1 us buckets: [0, 65536) us */
#define HIST_COARSE 65536 /* 1 ms buckets above that */

struct hist {
	uint64_t fine[HIST_FINE];
	uint64_t coarse[HIST_COARSE];
	uint64_t count;
	uint64_t sum_ns;
};

static void hist_add(struct hist *h, int64_t ns)
{
	uint64_t us;

	if (ns < 0)
		ns = 0; /* CLOCK_MONOTONIC does not go back; be safe */
	us = (uint64_t)ns / NS_PER_US;
	if (us < HIST_FINE) {
		h->fine[us]++;
	} else {
		uint64_t ms = us / 1000;

		h->coarse[ms < HIST_COARSE ? ms : HIST_COARSE - 1]++;
	}
	h->count++;
	h->sum_ns += (uint64_t)ns;
}

/* The nearest-rank percentile in microseconds (p in (0, 1]); 0 when the
 * histogram is empty. */
static uint64_t hist_pct(const struct hist *h, double p)
{
	uint64_t rank, seen = 0;

	if (!h->count)
		return 0;
	rank = (uint64_t)(p * (double)h->count);
	if ((double)rank < p * (double)h->count)
		rank++; /* ceil, without libm */
	if (rank < 1)
		rank = 1;
	for (uint64_t i = 0; i < HIST_FINE; i++) {
		seen += h->fine[i];
		if (seen >= rank)
			return i;
	}
	for (uint64_t i = 0; i < HIST_COARSE; i++) {
		seen += h->coarse[i];
		if (seen >= rank)
			return i * 1000;
	}
	return (HIST_COARSE - 1) * 1000ULL;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ---- arguments ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pingpong server --port=N [--host=127.0.0.1] "
		"[--epoll] [--spin]\n"
		"       pingpong client --server=HOST:PORT --concurrency=C "
		"--payload=BYTES\n"
		"                       --duration=SECONDS [--json] "
		"[--epoll] [--spin]\n"
		"\n"
		"A raw TCP echo and its closed-loop client: the reference "
		"limit for\nrpcgate's echo benchmark (scripts/bench-echo).\n");
}

/* "--name=value": the value when arg names `name`, else NULL. */
static const char *opt_value(const char *arg, const char *name)
{
	size_t n = strlen(name);

	if (strncmp(arg, "--", 2) || strncmp(arg + 2, name, n) ||
	    arg[2 + n] != '=')
		return NULL;
	return arg + 3 + n;
}

/* A decimal integer in [lo, hi], the whole string; -EINVAL otherwise. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Seconds, possibly fractional, in (0, MAX_DURATION_S]. */
static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > MAX_DURATION_S)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * A numeric address: "127.0.0.1", "::1" or "[::1]" (brackets only where a
 * port follows).  Names are refused on purpose: a benchmark has no
 * business asking a resolver, and a static musl binary's resolver is not
 * the host's.
 */
static int parse_host(const char *host, int port, struct sockaddr_storage *ss,
		      socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

/* "HOST:PORT" or "[V6]:PORT", split at the last colon. */
static int parse_hostport(const char *s, struct sockaddr_storage *ss,
			  socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	size_t hlen;
	long port;

	if (!colon || parse_long(colon + 1, 1, 65535, &port))
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		s++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	return parse_host(host, (int)port, ss, len);
}

static void format_addr(const struct sockaddr_storage *ss, char *buf,
			size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		const struct sockaddr_in *in4 = (const void *)ss;

		inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
		snprintf(buf, size, "%s:%u", ip, ntohs(in4->sin_port));
	}
}

/* Nagle would hold back each small echo until the previous one is acked:
 * exactly the delay a ping-pong measures. */
static void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * --epoll: both ends wait in epoll_wait and read without blocking, the
 * way any event-loop stack must (three system calls per message and side
 * instead of two).  The run with --epoll is the floor for an epoll-based
 * RPC stack; the run without it is the kernel's floor.
 */
static bool g_epoll;
/* --spin: poll, never sleep, while waiting for bytes. */
static bool g_spin;

/* The epoll set of one socket, level-triggered on `events`; -errno. */
static int epoll_for(int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};
	int epfd = epoll_create1(EPOLL_CLOEXEC);

	if (epfd < 0)
		return -errno;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)) {
		int err = -errno;

		close(epfd);
		return err;
	}
	return epfd;
}

/* ---- server ---- */

/* Writes all of buf[0, n) to a socket that may be non-blocking; 0 or -1
 * (the connection is lost). */
static int send_all(int fd, const char *buf, ssize_t n)
{
	ssize_t off = 0;

	while (off < n) {
		ssize_t w =
		    send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};

			poll(&pfd, 1, -1);
			continue;
		}
		if (w < 0)
			return -1;
		off += w;
	}
	return 0;
}

/* echo_conn's loop under --epoll: wait, then one non-blocking read. */
static void echo_epoll(int fd, char *buf)
{
	struct epoll_event ev;
	int epfd = epoll_for(fd, EPOLLIN);

	if (epfd < 0)
		return;
	for (;;) {
		ssize_t n;

		if (epoll_wait(epfd, &ev, 1, g_spin ? 0 : -1) < 0 &&
		    errno != EINTR)
			break;
		n = recv(fd, buf, ECHO_BUF, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0 || send_all(fd, buf, n))
			break;
	}
	close(epfd);
}

/* Echoes one connection until the peer closes it or an error; owns `fd`
 * (passed through the thread argument). */
static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *buf = malloc(ECHO_BUF);

	if (!buf)
		goto out_close;
	if (g_epoll) {
		echo_epoll(fd, buf);
		goto out_free;
	}
	for (;;) {
		ssize_t n = recv(fd, buf, ECHO_BUF, g_spin ? MSG_DONTWAIT : 0);

		if (n < 0 && (errno == EINTR || (g_spin && errno == EAGAIN)))
			continue;
		if (n <= 0 || send_all(fd, buf, n))
			break; /* EOF or reset: the client is done */
	}
out_free:
	free(buf);
out_close:
	close(fd);
	return NULL;
}

static void *accept_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		pthread_t t;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), err;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fprintf(stderr, "pingpong: accept: %s\n",
				strerror(errno));
			/* EMFILE and friends pass; do not spin on them */
			usleep(10000);
			continue;
		}
		set_nodelay(fd);
		err =
		    pthread_create(&t, &attr, echo_conn, (void *)(intptr_t)fd);
		if (err) {
			fprintf(stderr,
				"pingpong: no thread for a connection: %s\n",
				strerror(err));
			close(fd);
		}
	}
	return NULL;
}

static int run_server(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	struct sockaddr_storage ss;
	socklen_t len;
	char where[INET6_ADDRSTRLEN + 16];
	long port = -1;
	sigset_t stop;
	pthread_t acceptor;
	int lfd, one = 1, sig, err;

	for (int i = 0; i < argc; i++) {
		const char *v;

		if ((v = opt_value(argv[i], "port"))) {
			if (parse_long(v, 0, 65535, &port)) {
				fprintf(stderr,
					"pingpong: --port=%s: expected an "
					"integer from 0 to 65535\n",
					v);
				return EXIT_USAGE;
			}
		} else if ((v = opt_value(argv[i], "host"))) {
			host = v;
		} else if (!strcmp(argv[i], "--spin")) {
			g_spin = true;
		} else if (!strcmp(argv[i], "--epoll")) {
			g_epoll = true;
		} else {
			fprintf(stderr,
				"pingpong server: unknown argument '%s'\n",
				argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (port < 0) {
		fprintf(stderr, "pingpong server: --port=N is required (0 for "
				"any free port)\n");
		return EXIT_USAGE;
	}
	if (parse_host(host, (int)port, &ss, &len)) {
		fprintf(stderr,
			"pingpong: --host=%s: expected a numeric IPv4 or IPv6 "
			"address\n",
			host);
		return EXIT_USAGE;
	}

	/* Blocked before any thread starts so every thread inherits the
	 * mask and only sigwait() below sees the stop signals. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		fprintf(stderr, "pingpong: socket: %s\n", strerror(errno));
		return EXIT_RUNTIME;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, SOMAXCONN)) {
		fprintf(stderr, "pingpong: cannot listen on %s port %ld: %s\n",
			host, port, strerror(errno));
		goto out_close;
	}
	/* port 0: the kernel chose; report what it chose */
	len = sizeof(ss);
	if (getsockname(lfd, (struct sockaddr *)&ss, &len)) {
		fprintf(stderr, "pingpong: getsockname: %s\n", strerror(errno));
		goto out_close;
	}
	err =
	    pthread_create(&acceptor, NULL, accept_loop, (void *)(intptr_t)lfd);
	if (err) {
		fprintf(stderr, "pingpong: no accept thread: %s\n",
			strerror(err));
		goto out_close;
	}
	format_addr(&ss, where, sizeof(where));
	printf("pingpong: listening on %s\n", where);
	fflush(stdout);

	do
		err = sigwait(&stop, &sig);
	while (err == EINTR);
	/* The accept and connection threads end with the process; there is
	 * nothing of theirs to flush.  The listener stays open until then:
	 * closing it under the blocked accept() would only make that thread
	 * report EBADF on the way out. */
	return 0;

out_close:
	close(lfd);
	return EXIT_RUNTIME;
}

/* ---- client ---- */

struct client {
	int fd;
	int epfd; /* --epoll: the socket's epoll set, else -1 */
	size_t payload;
	uint32_t conc;
	char *tmpl; /* one message's bytes, sequence stamped per send */
	char *out;  /* bytes queued, not yet written: out[off, len) */
	size_t out_off, out_len, out_cap;
	char *in;	  /* read buffer, CLIENT_RBUF bytes */
	size_t partial;	  /* bytes of the oldest message received so far */
	uint64_t tx_seq;  /* next message to queue */
	uint64_t rx_seq;  /* oldest message in flight */
	int64_t *sent_ns; /* send time of message k at [k % conc] */
	struct hist *hist;
};

/* Queues message `tx_seq`, stamped with its number, sent at `now`. */
static void client_queue(struct client *c, int64_t now)
{
	size_t stamp = c->payload < SEQ_BYTES ? c->payload : SEQ_BYTES;
	char *p;

	/* At most `conc` messages are ever queued, which is out_cap bytes,
	 * so moving the unwritten tail to the front always makes room. */
	if (c->out_len + c->payload > c->out_cap) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	p = c->out + c->out_len;
	memcpy(p, c->tmpl, c->payload);
	for (size_t i = 0; i < stamp; i++)
		p[i] = (char)(c->tx_seq >> (8 * i));
	c->sent_ns[c->tx_seq % c->conc] = now;
	c->tx_seq++;
	c->out_len += c->payload;
}

/* Writes what the socket takes now; 0 or -errno (-EAGAIN is fine). */
static int client_flush(struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w =
		    send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		c->out_off += (size_t)w;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/*
 * Walks `n` bytes just read: checks the sequence stamps, and for every
 * message completed records its latency and queues its replacement.
 * 0, or -EBADMSG when a stamp does not match (the stream lost, gained or
 * reordered bytes).
 */
static int client_consume(struct client *c, const char *buf, size_t n,
			  int64_t now)
{
	size_t stamp = c->payload < SEQ_BYTES ? c->payload : SEQ_BYTES;

	while (n) {
		size_t take = c->payload - c->partial;

		if (take > n)
			take = n;
		for (size_t i = c->partial; i < stamp && i < c->partial + take;
		     i++)
			if ((unsigned char)buf[i - c->partial] !=
			    (unsigned char)(c->rx_seq >> (8 * i)))
				return -EBADMSG;
		c->partial += take;
		buf += take;
		n -= take;
		if (c->partial < c->payload)
			break;
		hist_add(c->hist, now - c->sent_ns[c->rx_seq % c->conc]);
		c->rx_seq++;
		c->partial = 0;
		client_queue(c, now);
	}
	return 0;
}

/* Waits until the socket is readable, or writable while bytes are
 * queued, or `deadline` passes.  0 or -errno. */
static int client_wait(struct client *c, int64_t deadline)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
	int64_t left = deadline - mono_ns();
	int ms;

	if (c->out_off < c->out_len)
		pfd.events |= POLLOUT;
	if (c->epfd >= 0 && !(pfd.events & POLLOUT)) {
		struct epoll_event ev;

		if (left <= 0)
			return 0;
		ms = (int)((left + 999999) / 1000000);
		if (g_spin)
			ms = 0;
		if (epoll_wait(c->epfd, &ev, 1,
			       ms < RECV_TIMEOUT_MS ? ms : RECV_TIMEOUT_MS) <
			0 &&
		    errno != EINTR)
			return -errno;
		return 0;
	}
	if (left <= 0)
		return 0;
	ms = (int)((left + 999999) / 1000000);
	if (ms > RECV_TIMEOUT_MS)
		ms = RECV_TIMEOUT_MS;
	if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

/*
 * The closed loop.  While nothing is queued the read blocks (the socket
 * timeout bounds it, so the clock is looked at), which is one system call
 * per batch; while bytes are queued it must not, or client and server
 * could each wait for the other to read, so it polls for either.
 */
static int client_loop(struct client *c, int64_t start, int64_t deadline,
		       const char **what)
{
	int64_t last_rx = start;
	int err;

	for (uint32_t i = 0; i < c->conc; i++)
		client_queue(c, start);
	for (;;) {
		int64_t now;
		ssize_t n;

		err = client_flush(c);
		if (err && err != -EAGAIN) {
			*what = "write";
			return err;
		}
		if (c->out_off < c->out_len || c->epfd >= 0) {
			err = client_wait(c, deadline);
			if (err) {
				*what = "poll";
				return err;
			}
			n = recv(c->fd, c->in, CLIENT_RBUF, MSG_DONTWAIT);
		} else if (g_spin) {
			n = recv(c->fd, c->in, CLIENT_RBUF, MSG_DONTWAIT);
		} else {
			n = recv(c->fd, c->in, CLIENT_RBUF, 0);
		}
		now = mono_ns();
		if (now >= deadline)
			return 0; /* bytes read after the end do not count */
		if (n == 0) {
			*what = "read (the server closed the connection)";
			return -ECONNRESET;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR) {
				*what = "read";
				return -errno;
			}
			if (now - last_rx > STALL_LIMIT_NS) {
				*what = "read (no answer for 10 s)";
				return -ETIMEDOUT;
			}
			continue;
		}
		last_rx = now;
		err = client_consume(c, c->in, (size_t)n, now);
		if (err) {
			*what = "check (echoed bytes out of sequence)";
			return err;
		}
	}
}

/* The client's options; fields below 0 were not given. */
struct client_opts {
	const char *server; /* as given, for messages */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	long conc;
	long payload;
	double duration;
	bool json;
};

static const struct client_opts client_opts_default = {
    .conc = -1,
    .payload = -1,
    .duration = -1,
};

/* One "--name=value"; 0, or -EINVAL after saying what is wrong. */
static int client_opt(struct client_opts *o, const char *arg)
{
	const char *v;

	if ((v = opt_value(arg, "server"))) {
		o->server = v;
		if (!parse_hostport(v, &o->addr, &o->addr_len))
			return 0;
		fprintf(stderr,
			"pingpong: --server=%s: expected IP:PORT, "
			"e.g. 127.0.0.1:8000\n",
			v);
	} else if ((v = opt_value(arg, "concurrency"))) {
		if (!parse_long(v, 1, MAX_CONCURRENCY, &o->conc))
			return 0;
		fprintf(stderr,
			"pingpong: --concurrency=%s: expected an "
			"integer from 1 to %d\n",
			v, MAX_CONCURRENCY);
	} else if ((v = opt_value(arg, "payload"))) {
		if (!parse_long(v, 1, MAX_PAYLOAD, &o->payload))
			return 0;
		fprintf(stderr,
			"pingpong: --payload=%s: expected bytes from "
			"1 to %d\n",
			v, MAX_PAYLOAD);
	} else if ((v = opt_value(arg, "duration"))) {
		if (!parse_seconds(v, &o->duration))
			return 0;
		fprintf(stderr,
			"pingpong: --duration=%s: expected seconds "
			"above 0, at most %.0f\n",
			v, MAX_DURATION_S);
	} else if (!strcmp(arg, "--json")) {
		o->json = true;
		return 0;
	} else if (!strcmp(arg, "--epoll")) {
		g_epoll = true;
		return 0;
	} else if (!strcmp(arg, "--spin")) {
		g_spin = true;
		return 0;
	} else {
		fprintf(stderr, "pingpong client: unknown argument '%s'\n",
			arg);
		usage(stderr);
	}
	return -EINVAL;
}

/* Every option, then what they must be together; 0 or -EINVAL. */
static int client_opts_parse(struct client_opts *o, int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (client_opt(o, argv[i]))
			return -EINVAL;
	if (!o->server || o->conc < 0 || o->payload < 0 || o->duration < 0) {
		fprintf(stderr, "pingpong client: --server, --concurrency, "
				"--payload and --duration are all required\n");
		return -EINVAL;
	}
	if ((long long)o->conc * o->payload > MAX_INFLIGHT_BYTES) {
		fprintf(stderr,
			"pingpong: concurrency %ld x payload %ld is more than "
			"%lld bytes in flight\n",
			o->conc, o->payload, MAX_INFLIGHT_BYTES);
		return -EINVAL;
	}
	return 0;
}

static void print_result(const struct client_opts *o, const struct hist *h)
{
	double qps = (double)h->count / o->duration;
	double avg = h->count ? (double)h->sum_ns / (double)h->count / 1e3 : 0;
	uint64_t p50 = hist_pct(h, 0.50), p90 = hist_pct(h, 0.90);
	uint64_t p99 = hist_pct(h, 0.99), p999 = hist_pct(h, 0.999);

	if (o->json)
		printf("{\"qps\":%.1f,\"calls\":%" PRIu64 ",\"errors\":0,"
		       "\"p50_us\":%" PRIu64 ",\"p90_us\":%" PRIu64
		       ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
		       ",\"avg_us\":%.1f,\"concurrency\":%ld,\"payload\":%ld,"
		       "\"duration_s\":%g}\n",
		       qps, h->count, p50, p90, p99, p999, avg, o->conc,
		       o->payload, o->duration);
	else
		printf(
		    "pingpong: %.0f qps, %" PRIu64 " calls in %g s, "
		    "concurrency %ld, payload %ld B; latency us: p50 %" PRIu64
		    " p90 %" PRIu64 " p99 %" PRIu64 " p999 %" PRIu64
		    " avg %.1f\n",
		    qps, h->count, o->duration, o->conc, o->payload, p50, p90,
		    p99, p999, avg);
	fflush(stdout);
}

static int run_client(int argc, char **argv)
{
	struct client_opts o = client_opts_default;
	struct timeval tv = {.tv_usec = RECV_TIMEOUT_MS * 1000};
	struct client c = {.fd = -1, .epfd = -1};
	const char *what = "";
	int64_t start;
	int err, ret = EXIT_RUNTIME;

	if (client_opts_parse(&o, argc, argv))
		return EXIT_USAGE;

	c.payload = (size_t)o.payload;
	c.conc = (uint32_t)o.conc;
	c.out_cap = c.payload * c.conc;
	c.tmpl = malloc(c.payload);
	c.out = malloc(c.out_cap);
	c.in = malloc(CLIENT_RBUF);
	c.sent_ns = calloc(c.conc, sizeof(*c.sent_ns));
	c.hist = calloc(1, sizeof(*c.hist));
	if (!c.tmpl || !c.out || !c.in || !c.sent_ns || !c.hist) {
		fprintf(stderr, "pingpong: out of memory for %ld x %ld bytes\n",
			o.conc, o.payload);
		goto out_free;
	}
	/* A byte pattern that is not all zeros, so an echo of a zeroed
	 * buffer would not pass for the real thing after the stamp. */
	for (size_t i = 0; i < c.payload; i++)
		c.tmpl[i] = (char)('a' + i % 26);

	c.fd = socket(o.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c.fd < 0) {
		fprintf(stderr, "pingpong: socket: %s\n", strerror(errno));
		goto out_free;
	}
	if (connect(c.fd, (struct sockaddr *)&o.addr, o.addr_len)) {
		fprintf(stderr, "pingpong: cannot connect to %s: %s\n",
			o.server, strerror(errno));
		goto out_close;
	}
	set_nodelay(c.fd);
	/* Bounds the blocking reads so a hung server is noticed and the
	 * duration is kept to within RECV_TIMEOUT_MS. */
	setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (g_epoll && (c.epfd = epoll_for(c.fd, EPOLLIN)) < 0) {
		fprintf(stderr, "pingpong: epoll: %s\n", strerror(-c.epfd));
		goto out_close;
	}

	start = mono_ns();
	err = client_loop(&c, start, start + (int64_t)(o.duration * NS_PER_S),
			  &what);
	if (err) {
		fprintf(stderr,
			"pingpong: %s on the connection to %s failed "
			"after %" PRIu64 " calls: %s\n",
			what, o.server, c.hist->count, strerror(-err));
		goto out_close;
	}
	print_result(&o, c.hist);
	ret = 0;
out_close:
	if (c.epfd >= 0)
		close(c.epfd);
	close(c.fd);
out_free:
	free(c.hist);
	free(c.sent_ns);
	free(c.in);
	free(c.out);
	free(c.tmpl);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	/* A write to a closed socket is an error to report, not a death. */
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[1], "server"))
		return run_server(argc - 2, argv + 2);
	if (!strcmp(argv[1], "client"))
		return run_client(argc - 2, argv + 2);
	fprintf(stderr, "pingpong: unknown mode '%s' (server or client)\n",
		argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
