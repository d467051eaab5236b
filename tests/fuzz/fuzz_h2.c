/*
 * fuzz_h2: the server's HTTP/2 input path (net/rpc/server_h2.c, and
 * nghttp2 under it) on arbitrary bytes, through a real server (its own
 * rt: 1 loop, 1 worker, the echo service) over loopback TCP.  The first
 * byte picks the mode:
 *
 *   even  a valid client preface and empty SETTINGS come first, then the
 *         rest of the bytes as frames (so the fuzzer works on frames,
 *         HPACK and gRPC messages, not on the preface);
 *   odd   the bytes are all the client sends (the detection and the
 *         preface check).
 *
 * The client then half-closes and reads until the server closes, so
 * every answer the bytes caused is made and sent.  Checks: no crash, no
 * read past a buffer (ASan), no undefined behaviour (UBSan); the server
 * always ends the connection (its close comes within the read timeout);
 * at the end of the run, no call or connection is left and every block
 * is back in the pool.
 */
// fuzz-sources: net/rpc/server.c net/rpc/server_baidu.c net/rpc/server_http.c net/rpc/server_pages.c net/rpc/server_h2.c net/rpc/server_h2_stream.c net/rpc/h2_io.c net/rpc/conn.c net/rpc/tls.c net/rpc/climit.c net/codec/grpc.c net/codec/baidu_std.c net/codec/baidu_meta.c net/codec/rpc_msg.c net/codec/rpc_errno.c net/codec/compress.c net/codec/snappy.c net/codec/crc32c.c net/codec/http1.c net/codec/json.c net/codec/json_pb.c net/codec/pbd.c net/codec/pbuf.c net/codec/pbwire.c net/codec/base64.c net/codec/tls_wire.c net/base/iobuf.c net/base/mem.c net/base/log.c net/base/heap.c net/base/metrics.c net/base/uaddr.c net/base/loop.c net/base/rt.c net/base/workers.c net/base/fbuf.c net/base/flags.c net/base/stamp.c net/base/budget.c net/base/fast_strlen.c app/echo.c app/echo_stream.c build/gen/app/proto/echo.pb-c.c build/gen/net/codec/proto/baidu_rpc_meta.pb-c.c /usr/lib/x86_64-linux-gnu/libprotobuf-c.a
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/iobuf.h"
#include "base/log.h"
#include "base/rt.h"
#include "echo.h"
#include "rpc/server.h"

/* The server must end every connection within this long. */
#define CLOSE_WITHIN_MS 5000

static struct iobuf_pool pool;
static struct log lg;
static struct rt rt;
static struct server srv;
static struct echo_service echo;
static int port;

static void stop_all(void)
{
	struct server_stats st;

	server_stop(&srv, 2000);
	server_stats(&srv, &st);
	if (st.inflight || st.connections)
		abort();
	server_destroy(&srv);
	rt_stop(&rt);
	rt_destroy(&rt);
	echo_service_destroy(&echo);
	if (iobuf_pool_destroy(&pool))
		abort(); /* a block still held */
	log_destroy(&lg);
}

static void start_all(void)
{
	struct iobuf_pool_options po;
	struct rt_options ro = {.dispatchers = 1, .task_workers = 1};
	struct server_options so;
	struct log_options lo;

	log_options_default(&lo);
	lo.level = LOG_LVL_ERROR;
	if (log_init(&lg, &lo))
		abort();
	iobuf_pool_options_default(&po);
	if (iobuf_pool_init(&pool, &po))
		abort();
	ro.log = &lg;
	if (rt_init(&rt, &ro) || rt_start(&rt))
		abort();
	server_options_default(&so);
	so.rt = &rt;
	so.pool = &pool;
	so.log = &lg;
	so.max_body_size = 1 << 20;
	if (server_init(&srv, &so) || echo_service_add(&srv, &echo))
		abort();
	port = server_listen(&srv, "127.0.0.1", 0);
	if (port <= 0 || server_start(&srv))
		abort();
	atexit(stop_all);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return; /* the server hung up: fine */
		p += w;
		n -= (size_t)w;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t preface[] =
	    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	    "\x00\x00\x00\x04\x00\x00\x00\x00\x00"; /* SETTINGS, empty */
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct linger no_linger = {.l_onoff = 1, .l_linger = 0};
	struct pollfd pfd;
	uint8_t buf[65536];
	int fd, one = 1;

	if (!port)
		start_all();
	if (!size)
		return 0;
	a.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		abort();
	while (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		if (errno != EINTR)
			abort();
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!(data[0] & 1))
		send_all(fd, preface, sizeof(preface) - 1);
	send_all(fd, data + 1, size - 1);
	shutdown(fd, SHUT_WR);
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		ssize_t r;
		int n = poll(&pfd, 1, CLOSE_WITHIN_MS);

		if (n < 0 && errno == EINTR)
			continue; /* libFuzzer's timer signal */
		if (n != 1)
			abort(); /* the server kept the connection */
		r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
	}
	/* a reset, not a FIN: no TIME_WAIT left behind for each input
	 * (tens of thousands of them would use up the ports) */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof(no_linger));
	close(fd);
	return 0;
}
