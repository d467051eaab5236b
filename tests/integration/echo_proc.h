/*
 * echo_proc: a `rpcgate echo` server as a child process of a test, and a
 * TCP proxy to put in front of it.  Header only; include it after
 * <cmocka.h> (failures are cmocka's).
 *
 *   echo_proc_start(e, args)  fork/exec TEST_RPCGATE_BIN echo --port=0
 *                             --listen=127.0.0.1 [args...], wait (bounded)
 *                             for its ready line, parse the port
 *   echo_proc_start_wrapped() the same through a wrapper command (an
 *                             absolute path and its arguments)
 *   echo_proc_alive(e)        not exited yet
 *   echo_proc_stop(e)         SIGTERM, wait (bounded), SIGKILL after;
 *                             returns the wait status
 *   echo_proc_wait(e, ms)     wait for an exit already under way
 *
 * The child gets an environment built here (the caller's RPCGATE_* never
 * leak in), an empty kernel command line file (/dev/null: the host's
 * /proc/cmdline does not matter), stdin from /dev/null, stdout on a pipe
 * read by these helpers, and stderr inherited only when TEST_ECHO_LOG is
 * set (else /dev/null).  PR_SET_PDEATHSIG kills it if the test program
 * dies first (an alarm, a crash), so no server outlives its test.
 */
#ifndef RPCGATE_TESTS_ECHO_PROC_H
#define RPCGATE_TESTS_ECHO_PROC_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The server prints its line once listening: well under a second; the
 * bound is for a loaded host running sanitizer builds beside it. */
#define ECHO_READY_MS 10000
/* The echo's stop grace is 5 s (ECHO_STOP_GRACE_MS); then it exits. */
#define ECHO_STOP_MS	  8000
#define ECHO_MAX_ARGS	  16
#define ECHO_MAX_WRAP	  4
#define ECHO_OUT_MAX	  4096
#define ECHO_READY_PREFIX "rpcgate echo: serving example.EchoService on "

struct echo_proc {
	pid_t pid;
	int out_fd; /* the child's stdout; -1 once at EOF */
	int port;
	char addr[32]; /* "127.0.0.1:PORT", for channel_init */
	char out[ECHO_OUT_MAX];
	size_t out_len;
	bool reaped;
	int wstatus;
};

static inline int64_t echo_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what stdout has, waiting at most ms; false at EOF. */
static inline bool echo_proc_read(struct echo_proc *e, int ms)
{
	struct pollfd p = {.fd = e->out_fd, .events = POLLIN};
	ssize_t n;

	if (e->out_fd < 0)
		return false;
	if (poll(&p, 1, ms) <= 0)
		return true;
	if (e->out_len + 1 >= sizeof(e->out))
		e->out_len = 0; /* only the latest lines matter */
	n = read(e->out_fd, e->out + e->out_len,
		 sizeof(e->out) - 1 - e->out_len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0) {
		close(e->out_fd);
		e->out_fd = -1;
		return false;
	}
	e->out_len += (size_t)n;
	e->out[e->out_len] = '\0';
	return true;
}

/*
 * Starts `rpcgate CMD --port=0 --listen=127.0.0.1 [args...]` (args may
 * override both) and waits for its ready line, which starts with `ready`
 * followed by "IPV4:PORT" (echo's, or `rpcgate gateway: serving on `).
 */
static inline void echo_proc_start_wrapped(struct echo_proc *e,
					   const char *const *wrap,
					   const char *cmd, const char *ready,
					   const char *const *args)
{
	const char *bin = test_rpcgate_bin();
	char *argv[ECHO_MAX_ARGS + 6 + ECHO_MAX_WRAP],
	    *envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};
	bool log = getenv("TEST_ECHO_LOG") != NULL;
	int pfd[2], null_fd, argc = 0;
	int64_t end;
	char *nl, ip[16];

	memset(e, 0, sizeof(*e));
	e->pid = -1;
	e->out_fd = -1;
	for (int i = 0; wrap && wrap[i]; i++) {
		assert_true(i < ECHO_MAX_WRAP);
		argv[argc++] = (char *)wrap[i];
	}
	argv[argc++] = (char *)bin;
	argv[argc++] = "--cmdline_file=/dev/null";
	argv[argc++] = (char *)cmd;
	argv[argc++] = "--port=0";
	argv[argc++] = "--listen=127.0.0.1";
	for (int i = 0; args && args[i]; i++) {
		assert_true(i < ECHO_MAX_ARGS);
		argv[argc++] = (char *)args[i];
	}
	argv[argc] = NULL;
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	assert_true(null_fd >= 0);
	/* Only async-signal-safe calls between fork and exec: the test
	 * program has runtime threads. */
	e->pid = fork();
	assert_true(e->pid >= 0);
	if (e->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null_fd, 0);
		dup2(pfd[1], 1);
		if (!log)
			dup2(null_fd, 2);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(pfd[1]);
	close(null_fd);
	e->out_fd = pfd[0];
	end = echo_now_ms() + ECHO_READY_MS;
	while (!(nl = strchr(e->out, '\n'))) {
		int64_t left = end - echo_now_ms();

		if (left <= 0 || !echo_proc_read(e, (int)left))
			break;
	}
	if (!nl) {
		kill(e->pid, SIGKILL);
		waitpid(e->pid, &e->wstatus, 0);
		e->reaped = true;
		fail_msg("%s %s: no ready line within %d ms; stdout: '%s'", bin,
			 cmd, ECHO_READY_MS, e->out);
	}
	if (strncmp(e->out, ready, strlen(ready)) ||
	    sscanf(e->out + strlen(ready), "%15[0-9.]:%d", ip, &e->port) != 2 ||
	    e->port <= 0 || e->port > 65535)
		fail_msg("unexpected ready line: '%s'", e->out);
	snprintf(e->addr, sizeof(e->addr), "%s:%d", ip, e->port);
}

static inline void echo_proc_start_cmd(struct echo_proc *e, const char *cmd,
				       const char *ready,
				       const char *const *args)
{
	echo_proc_start_wrapped(e, NULL, cmd, ready, args);
}

static inline void echo_proc_start(struct echo_proc *e, const char *const *args)
{
	echo_proc_start_cmd(e, "echo", ECHO_READY_PREFIX, args);
}

static inline bool echo_proc_alive(struct echo_proc *e)
{
	if (e->reaped)
		return false;
	if (waitpid(e->pid, &e->wstatus, WNOHANG) == e->pid) {
		e->reaped = true;
		return false;
	}
	return true;
}

/* Waits up to ms for the child to exit (reading its stdout meanwhile);
 * false if it has not. */
static inline bool echo_proc_wait(struct echo_proc *e, int ms)
{
	int64_t end = echo_now_ms() + ms;

	while (echo_proc_alive(e)) {
		if (echo_now_ms() >= end)
			return false;
		if (e->out_fd < 0 || !echo_proc_read(e, 5))
			usleep(5000);
	}
	/* Whatever it wrote before exiting. */
	while (echo_proc_read(e, 100))
		;
	return true;
}

/* SIGTERM, then SIGKILL after ECHO_STOP_MS; reaps.  The wait status. */
static inline int echo_proc_stop(struct echo_proc *e)
{
	if (e->pid <= 0)
		return 0;
	if (!e->reaped) {
		kill(e->pid, SIGTERM);
		if (!echo_proc_wait(e, ECHO_STOP_MS)) {
			kill(e->pid, SIGKILL);
			waitpid(e->pid, &e->wstatus, 0);
			e->reaped = true;
		}
	}
	if (e->out_fd >= 0) {
		close(e->out_fd);
		e->out_fd = -1;
	}
	return e->wstatus;
}

/* The last complete line of stdout (without its newline) into buf. */
static inline void echo_proc_last_line(const struct echo_proc *e, char *buf,
				       size_t size)
{
	const char *end = e->out + e->out_len, *start;

	if (end > e->out && end[-1] == '\n')
		end--;
	start = end;
	while (start > e->out && start[-1] != '\n')
		start--;
	snprintf(buf, size, "%.*s", (int)(end - start), start);
}

/* ---- a TCP proxy in front of an echo, to play faults ----------------- */

/*
 *   proxy_start(up_port, mode, k)  a proxy on 127.0.0.1:0 (px->port) in
 *                                  front of 127.0.0.1:up_port
 *   proxy_stop(px)                 ends and joins every thread, frees
 *
 * One accepting thread; each accepted connection gets a thread of its
 * own, which per the mode forwards both ways, closes after reading some
 * request bytes (a connection lost under a request), or reads and never
 * answers (a hung server).  A forwarding link ends both sides when either
 * ends.  One byte in the stop pipe (never drained) wakes every thread.
 */
enum proxy_mode {
	PROXY_CLOSE_FIRST_K,   /* the first k: closed after some bytes */
	PROXY_BLACKHOLE_FIRST, /* the first: read, never answered */
};

enum proxy_link_kind {
	PROXY_LINK_FORWARD,
	PROXY_LINK_CLOSE,
	PROXY_LINK_BLACKHOLE,
};

/* Connections one proxy serves in a test; later ones are closed. */
#define PROXY_MAX_LINKS 32
/* A closing link waits this long for request bytes, then closes anyway. */
#define PROXY_READ_MS 2000

struct proxy;

struct proxy_link {
	struct proxy *px;
	enum proxy_link_kind kind;
	int cfd, ufd; /* client side, upstream side (-1: none) */
	pthread_t thr;
};

struct proxy {
	int lfd, port, up_port;
	enum proxy_mode mode;
	int k;
	int stop[2];
	pthread_t thr;
	int accepted;	  /* atomic */
	int closed_early; /* atomic: links closed by the mode */
	struct proxy_link links[PROXY_MAX_LINKS];
	int nlinks; /* the accepting thread's, until it is joined */
};

/* A TCP socket bound to 127.0.0.1:0, not listening; its port in *port.
 * (Connecting to it is refused until it listens.) */
static inline int tcp_bound_loopback(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A blocking connection to 127.0.0.1:port, or -1. */
static inline int tcp_connect_loopback(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

static inline bool proxy_send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Copies what `from` has to `to`; false when the link is over. */
static inline bool proxy_pass(int from, int to)
{
	char buf[16384];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n < 0 && errno == EINTR)
		return true;
	return n > 0 && proxy_send_all(to, buf, (size_t)n);
}

/* poll() without a time limit, EINTR retried; false on an error. */
static inline bool proxy_poll(struct pollfd *p, nfds_t n)
{
	int r;

	while ((r = poll(p, n, -1)) < 0 && errno == EINTR)
		;
	return r > 0;
}

static inline void *proxy_link_main(void *arg)
{
	struct proxy_link *l = arg;
	struct pollfd p[3] = {{.fd = l->cfd, .events = POLLIN},
			      {.fd = l->px->stop[0], .events = POLLIN},
			      {.fd = l->ufd, .events = POLLIN}};
	char buf[16384];

	switch (l->kind) {
	case PROXY_LINK_CLOSE:
		if (poll(p, 2, PROXY_READ_MS) > 0 && p[0].revents &&
		    read(l->cfd, buf, sizeof(buf)) < 0)
			buf[0] = 0; /* closed all the same */
		__atomic_fetch_add(&l->px->closed_early, 1, __ATOMIC_ACQ_REL);
		break;
	case PROXY_LINK_BLACKHOLE:
		while (proxy_poll(p, 2)) {
			if (p[1].revents)
				break;
			if (p[0].revents && read(l->cfd, buf, sizeof(buf)) <= 0)
				break;
		}
		break;
	case PROXY_LINK_FORWARD:
		while (proxy_poll(p, 3)) {
			if (p[1].revents)
				break;
			if (p[0].revents && !proxy_pass(l->cfd, l->ufd))
				break;
			if (p[2].revents && !proxy_pass(l->ufd, l->cfd))
				break;
		}
		break;
	}
	close(l->cfd);
	if (l->ufd >= 0)
		close(l->ufd);
	return NULL;
}

static inline enum proxy_link_kind proxy_kind(const struct proxy *px, int n)
{
	if (px->mode == PROXY_CLOSE_FIRST_K && n < px->k)
		return PROXY_LINK_CLOSE;
	if (px->mode == PROXY_BLACKHOLE_FIRST && n == 0)
		return PROXY_LINK_BLACKHOLE;
	return PROXY_LINK_FORWARD;
}

static inline void *proxy_main(void *arg)
{
	struct proxy *px = arg;
	struct pollfd p[2] = {{.fd = px->lfd, .events = POLLIN},
			      {.fd = px->stop[0], .events = POLLIN}};

	while (proxy_poll(p, 2)) {
		struct proxy_link *l = &px->links[px->nlinks];
		int cfd, n;

		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		cfd = accept4(px->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0)
			continue;
		n = __atomic_fetch_add(&px->accepted, 1, __ATOMIC_ACQ_REL);
		if (px->nlinks == PROXY_MAX_LINKS) {
			close(cfd);
			continue;
		}
		l->px = px;
		l->kind = proxy_kind(px, n);
		l->cfd = cfd;
		l->ufd = -1;
		if (l->kind == PROXY_LINK_FORWARD)
			l->ufd = tcp_connect_loopback(px->up_port);
		if ((l->kind == PROXY_LINK_FORWARD && l->ufd < 0) ||
		    pthread_create(&l->thr, NULL, proxy_link_main, l)) {
			close(cfd);
			if (l->ufd >= 0)
				close(l->ufd);
			continue;
		}
		px->nlinks++;
	}
	return NULL;
}

static inline struct proxy *proxy_start(int up_port, enum proxy_mode mode,
					int k)
{
	struct proxy *px = calloc(1, sizeof(*px));

	assert_non_null(px);
	px->up_port = up_port;
	px->mode = mode;
	px->k = k;
	px->lfd = tcp_bound_loopback(&px->port);
	assert_int_equal(listen(px->lfd, 64), 0);
	assert_int_equal(pipe2(px->stop, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&px->thr, NULL, proxy_main, px), 0);
	return px;
}

static inline void proxy_stop(struct proxy *px)
{
	assert_int_equal(write(px->stop[1], "x", 1), 1);
	pthread_join(px->thr, NULL);
	for (int i = 0; i < px->nlinks; i++)
		pthread_join(px->links[i].thr, NULL);
	close(px->lfd);
	close(px->stop[0]);
	close(px->stop[1]);
	free(px);
}

/* "127.0.0.1:PORT" of the proxy, for channel_init. */
static inline void proxy_addr(const struct proxy *px, char *buf, size_t size)
{
	snprintf(buf, size, "127.0.0.1:%d", px->port);
}

#endif
