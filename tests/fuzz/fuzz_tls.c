/*
 * fuzz_tls: the TLS record input path (net/rpc/tls.c) on arbitrary bytes,
 * through a real server side on one end of a socketpair.  The first byte
 * picks the mode:
 *
 *   even  the bytes are what a client sends first: the handshake's input,
 *         cut into pieces of (first byte / 2 % 64 + 1) bytes, each handed
 *         to the server's step as the loop would;
 *   odd   a real client (tls.c's client side, on the other end) completes
 *         a handshake and sends one record of application data; then the
 *         bytes arrive raw as the next records, read by the live
 *         transport.
 *
 * Checks: no crash, no read past a buffer (ASan), no leak on any path (the
 * sides, sessions and connections are freed per input); a step returns
 * a CONN_UP_* or a negative errno; a live read returns bytes, 0, -EAGAIN
 * or a negative errno, and the plaintext it gives starts with the client's
 * record.  The certificate (ECDSA P-256, for speed) is made once with
 * openssl.
 */
// fuzz-sources: net/rpc/tls.c net/rpc/conn.c net/codec/tls_wire.c net/base/loop.c net/base/iobuf.c net/base/mem.c net/base/log.c net/base/heap.c net/base/metrics.c net/base/uaddr.c
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/loop.h"
#include "rpc/conn.h"
#include "rpc/tls.h"

static struct iobuf_pool pool;
static struct loop loop;
static struct tls_side *server, *client;
static const char hello[] = "hello over tls";

static void no_release(struct conn *c)
{
	(void)c;
}

static void no_data(struct conn *c)
{
	(void)c;
}

static const struct conn_handler handler = {
    .on_data = no_data,
    .release = no_release,
};

static void setup(void)
{
	static char dir[] = "/tmp/fuzz-tls-XXXXXX";
	struct tls_server_options so;
	struct tls_client_options co;
	struct iobuf_pool_options po;
	struct loop_options lo;
	char cmd[1024], cert[300], key[300], why[256];

	if (!mkdtemp(dir))
		abort();
	snprintf(cmd, sizeof(cmd),
		 "cd %s && openssl req -x509 -newkey ec -pkeyopt "
		 "ec_paramgen_curve:prime256v1 -nodes -days 2 -keyout k.pem "
		 "-out c.pem -subj /CN=localhost >/dev/null 2>&1",
		 dir);
	if (system(cmd))
		abort();
	snprintf(cert, sizeof(cert), "%s/c.pem", dir);
	snprintf(key, sizeof(key), "%s/k.pem", dir);
	iobuf_pool_options_default(&po);
	loop_options_default(&lo);
	if (iobuf_pool_init(&pool, &po) || loop_init(&loop, &lo))
		abort();
	tls_server_options_default(&so);
	so.cert_file = cert;
	so.key_file = key;
	tls_client_options_default(&co);
	co.verify = false;
	if (tls_server_new(&server, &so, why, sizeof(why)) ||
	    tls_client_new(&client, &co, why, sizeof(why))) {
		fprintf(stderr, "fuzz_tls: %s\n", why);
		abort();
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		abort();
}

static void conn_open(struct conn *c, int fd)
{
	if (conn_init(c, fd, &loop, &conn_tcp, &handler, NULL, &pool,
		      mem_default(), NULL))
		abort();
}

/* What the loop does as a conn closes and its last reference goes. */
static void conn_end(struct conn *c)
{
	if (c->tp->close)
		c->tp->close(c);
	conn_unref(c);
}

static bool valid_step(int r)
{
	return r == CONN_UP_WAIT || r == CONN_UP_DONE || r == CONN_UP_TCP ||
	       (r < 0 && r > -4096);
}

/* The server's handshake on the input, in pieces. */
static void handshake_input(struct conn *s, const uint8_t *data, size_t size,
			    size_t piece)
{
	const struct conn_upgrade *up = tls_upgrade(server);

	for (size_t off = 0; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;
		int r;

		if (iobuf_append(&s->in, data + off, n))
			abort();
		r = up->accept_step(up->ctx, s);
		if (!valid_step(r))
			abort();
		if (r != CONN_UP_WAIT)
			break;
	}
}

/* Reads what one end's socket holds into c->in. */
static void pull(struct conn *c)
{
	while (conn_tcp.read(c, &c->in) > 0)
		;
}

/* A real handshake between the two ends; false when it did not end. */
static bool handshake_real(struct conn *s, struct conn *c)
{
	const struct conn_upgrade *su = tls_upgrade(server);
	const struct conn_upgrade *cu = tls_upgrade(client);
	int rs = CONN_UP_WAIT, rc = cu->connect_start(cu->ctx, c);

	for (int i = 0; i < 16 && (rs != CONN_UP_DONE || rc != CONN_UP_DONE);
	     i++) {
		if (rc < 0 || rs < 0)
			return false;
		if (rs == CONN_UP_WAIT) {
			pull(s);
			if (!iobuf_empty(&s->in) || s->tp != &conn_tcp)
				rs = su->accept_step(su->ctx, s);
		}
		if (rc == CONN_UP_WAIT) {
			pull(c);
			if (!iobuf_empty(&c->in))
				rc = cu->connect_step(cu->ctx, c);
		}
	}
	return rs == CONN_UP_DONE && rc == CONN_UP_DONE;
}

static void live_input(struct conn *s, struct conn *c, int cfd,
		       const uint8_t *data, size_t size)
{
	struct iobuf msg;
	ssize_t r;

	iobuf_init(&msg, &pool);
	if (iobuf_append(&msg, hello, sizeof(hello) - 1))
		abort();
	while (!iobuf_empty(&msg))
		if (c->tp->write(c, &msg) <= 0)
			abort();
	iobuf_destroy(&msg);
	if (size && write(cfd, data, size) < 0)
		abort();
	for (int i = 0; i < 64; i++) {
		r = s->tp->read(s, &s->in);
		if (!(r > 0 || r == 0 || r == -EAGAIN || (r < 0 && r > -4096)))
			abort();
		if (r <= 0)
			break;
	}
	if (iobuf_len(&s->in) >= sizeof(hello) - 1) {
		char got[sizeof(hello)];

		iobuf_copy_out(&s->in, 0, got, sizeof(hello) - 1);
		if (memcmp(got, hello, sizeof(hello) - 1))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct conn s, c;
	int fds[2];

	if (!ready) {
		setup();
		ready = true;
	}
	if (size < 1)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds))
		abort();
	conn_open(&s, fds[0]);
	if (data[0] % 2 == 0) {
		handshake_input(&s, data + 1, size - 1,
				(size_t)(data[0] / 2 % 64) + 1);
		close(fds[1]);
	} else {
		conn_open(&c, fds[1]);
		if (!handshake_real(&s, &c))
			abort(); /* two sides of ours must agree */
		live_input(&s, &c, fds[1], data + 1, size - 1);
		conn_end(&c);
	}
	conn_end(&s);
	return 0;
}
