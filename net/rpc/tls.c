/*
 * tls: TLS on a conn with OpenSSL (see tls.h for the model).
 *
 * One tls_conn per connection, c->tp_ctx from the first handshake byte
 * on.  Two transports: hs_tp while the handshake runs (reads are TCP's
 * into c->in, which the upgrade's step hands to OpenSSL; writes wait) and
 * live_tp after it.  OpenSSL reads and writes through one BIO of ours
 * (conn_bio): reads from t->raw (bytes read but not yet decrypted) and,
 * live, from the socket in big reads; writes straight to the socket.
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/clock.h"
#include "base/util.h"
#include "codec/tls_wire.h"

/* Bytes one read of the socket may take: what conn's TCP reads take. */
#define TLS_READ_MAX (64 * IOBUF_BLOCK_CAP)
/* A PEM file bigger than this is not a certificate or a key. */
#define TLS_FILE_MAX (1u << 20)

/* TLS 1.3's three suites, then TLS 1.2's ECDHE with AEAD only (Mozilla's
 * "intermediate" list). */
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
    "TLS_CHACHA20_POLY1305_SHA256";
static const char tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct tls_file {
	char *path;
	struct stat st; /* at the last load */
};

struct tls_side {
	bool server;
	struct conn_upgrade up;
	const struct mem *mem;
	struct log *log;
	int handshake_timeout_ms;
	pthread_mutex_t lock; /* ctx, session, the files' stat */
	SSL_CTX *ctx;	      /* new connections' */
	SSL_SESSION *session; /* client: the last one, to resume */
	struct tls_file cert, key, ca;
	char *server_name, *alpn; /* client */
	bool verify;
	struct tls_stats st; /* atomic counters */
};

struct tls_conn {
	struct tls_side *side;
	struct conn *c;
	SSL *ssl;
	pthread_mutex_t lock; /* ssl: the loop's reads, the writer's writes */
	struct iobuf raw;     /* read, not yet given to OpenSSL */
	struct loop_timer deadline;
	int64_t start_ns;
	bool live;	      /* the handshake is done */
	bool eof;	      /* the socket said EOF */
	bool raw_only;	      /* recv_cb: no socket reads (going live) */
	bool failed;	      /* logged a failure already */
	int sock_err;	      /* the socket's error, -errno */
	size_t hs_in, hs_out; /* handshake bytes each way */
	bool hs_flight;	      /* sent a handshake record (not just an alert) */
	size_t w_len;	      /* a write said WANT_WRITE: retry this many */
	char subject[TLS_SUBJECT_MAX];
	char why[192]; /* the handshake's failure */
	char alpn[32];
	uint8_t buf[TLS_RECORD_MAX]; /* under lock: a record's plaintext */
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_err;
static BIO_METHOD *conn_bio;

static int bio_read(BIO *b, char *buf, int sz);
static int bio_write(BIO *b, const char *buf, int sz);
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr);

/* No openssl.cnf: what the binary does must not depend on the files of
 * the machine it runs on (an appliance has none). */
static void tls_init(void)
{
	if (!OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL)) {
		tls_init_err = -ENOMEM;
		return;
	}
	conn_bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				"rpcgate conn");
	if (!conn_bio || !BIO_meth_set_read(conn_bio, bio_read) ||
	    !BIO_meth_set_write(conn_bio, bio_write) ||
	    !BIO_meth_set_ctrl(conn_bio, bio_ctrl))
		tls_init_err = -ENOMEM;
}

static void count(uint64_t *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

/* The reason of the oldest error queued on this thread ("certificate
 * verify failed"), or `dflt`; the queue is emptied. */
static const char *err_reason(char *buf, size_t size, const char *dflt)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, size, "%s", r ? r : dflt);
	ERR_clear_error();
	return buf;
}

/* ---- the BIO --------------------------------------------------------- */

static int bio_read(BIO *b, char *buf, int sz)
{
	struct tls_conn *t = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	if (iobuf_empty(&t->raw)) {
		/* During the handshake the step feeds raw from c->in. */
		if (!t->live || t->raw_only) {
			BIO_set_retry_read(b);
			return -1;
		}
		if (t->eof)
			return 0;
		r = iobuf_read_fd(&t->raw, t->c->io.fd, TLS_READ_MAX);
		if (r == 0) {
			t->eof = true;
			return 0;
		}
		if (r == -EAGAIN) {
			BIO_set_retry_read(b);
			return -1;
		}
		if (r < 0) {
			t->sock_err = (int)r;
			return -1;
		}
	}
	r = (ssize_t)iobuf_copy_out(&t->raw, 0, buf, (size_t)sz);
	iobuf_drop_front(&t->raw, (size_t)r);
	if (!t->live)
		t->hs_in += (size_t)r;
	return (int)r;
}

static int bio_write(BIO *b, const char *buf, int sz)
{
	struct tls_conn *t = BIO_get_data(b);
	ssize_t r = send(t->c->io.fd, buf, (size_t)sz, MSG_NOSIGNAL);

	BIO_clear_retry_flags(b);
	if (r >= 0) {
		if (!t->live) {
			t->hs_out += (size_t)r;
			t->hs_flight |= sz > 0 && buf[0] == 0x16;
		}
		return (int)r;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		if (t->live) {
			BIO_set_retry_write(b);
			return -1;
		}
		/* A fresh connection's send buffer holds every flight; one
		 * that is full means the peer is not reading. */
		t->sock_err = -ENOBUFS;
		return -1;
	}
	t->sock_err = -errno;
	return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	/* Writes go out as they are made: nothing to flush. */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

/* ---- loading --------------------------------------------------------- */

/* Reads a whole (small) file.  0, or -errno with the reason in why. */
static int read_file(const char *what, const char *path, uint8_t **out,
		     size_t *len, struct stat *st, char *why, size_t why_size)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p;
	size_t n;

	if (!f) {
		snprintf(why, why_size, "%s %s: %s", what, path,
			 strerror(errno));
		return -EINVAL;
	}
	if (fstat(fileno(f), st) || st->st_size > (off_t)TLS_FILE_MAX) {
		snprintf(why, why_size, "%s %s: not a file of at most %u bytes",
			 what, path, TLS_FILE_MAX);
		fclose(f);
		return -EINVAL;
	}
	p = malloc((size_t)st->st_size + 1);
	if (!p) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(p, 1, (size_t)st->st_size, f);
	fclose(f);
	if (n != (size_t)st->st_size) {
		snprintf(why, why_size, "%s %s: short read", what, path);
		free(p);
		return -EINVAL;
	}
	*out = p;
	*len = n;
	return 0;
}

/* Loads a file through `use`, which reads PEM from a memory BIO: 1 on
 * success.  The bytes are wiped after use: one of them is the key. */
static int load_pem(SSL_CTX *ctx, const char *what, struct tls_file *f,
		    struct stat *st, char *why, size_t why_size,
		    int (*use)(SSL_CTX *, BIO *))
{
	uint8_t *p;
	size_t n;
	char reason[96];
	BIO *mem;
	int r = read_file(what, f->path, &p, &n, st, why, why_size);

	if (r)
		return r;
	ERR_clear_error();
	mem = BIO_new_mem_buf(p, (int)n);
	r = mem ? use(ctx, mem) : 0;
	BIO_free(mem);
	explicit_bzero(p, n);
	free(p);
	if (r != 1) {
		snprintf(why, why_size, "%s %s: %s", what, f->path,
			 err_reason(reason, sizeof(reason),
				    "no PEM object of the right kind"));
		return -EINVAL;
	}
	return 0;
}

/* The leaf, then every other certificate of the file as the chain. */
static int use_chain(SSL_CTX *ctx, BIO *mem)
{
	X509 *x = PEM_read_bio_X509_AUX(mem, NULL, NULL, NULL);
	int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;

	X509_free(x);
	if (!ok)
		return 0;
	SSL_CTX_clear_chain_certs(ctx);
	while ((x = PEM_read_bio_X509(mem, NULL, NULL, NULL)))
		if (!SSL_CTX_add0_chain_cert(ctx, x)) {
			X509_free(x);
			return 0;
		}
	/* the end of the file, not an error */
	ERR_clear_error();
	return 1;
}

static int use_key(SSL_CTX *ctx, BIO *mem)
{
	EVP_PKEY *k = PEM_read_bio_PrivateKey(mem, NULL, NULL, NULL);
	int ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;

	EVP_PKEY_free(k);
	return ok;
}

/* Every certificate of the file becomes a trust anchor. */
static int use_ca(SSL_CTX *ctx, BIO *mem)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509 *x;
	int n = 0;

	while ((x = PEM_read_bio_X509(mem, NULL, NULL, NULL))) {
		if (X509_STORE_add_cert(store, x) != 1) {
			X509_free(x);
			return 0;
		}
		X509_free(x);
		n++;
	}
	if (n)
		ERR_clear_error();
	return n > 0;
}

/*
 * The server's ALPN choice: http/1.1 when offered (HTTP/JSON and the
 * pages are HTTP/1.x's here: curl and browsers offer both), else h2
 * (gRPC's clients offer only that), else none (a baidu_std client
 * offers nothing).  `in` is the client's list, length-prefixed names.
 */
static int alpn_select(SSL *ssl, const unsigned char **out,
		       unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	static const char *const ours[] = {"http/1.1", "h2"};

	(void)ssl;
	(void)arg;
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
		long at = tls_wire_alpn_find(in, inlen, ours[i]);

		if (at >= 0) {
			*out = in + at;
			*outlen = (unsigned char)strlen(ours[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* A context for s's files: the new one, or NULL and why. */
static SSL_CTX *ctx_new(struct tls_side *s, struct stat st[3], char *why,
			size_t why_size)
{
	SSL_CTX *ctx =
	    SSL_CTX_new(s->server ? TLS_server_method() : TLS_client_method());
	char reason[96];

	if (!ctx) {
		snprintf(why, why_size, "out of memory");
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, tls13_suites) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1) {
		snprintf(why, why_size,
			 "the TLS library refused the versions "
			 "or the cipher list");
		goto fail;
	}
	/* A peer's close without close_notify is an end, not an error
	 * (HTTP/1.1 answers carry their length); writes that said "again"
	 * are retried with the same bytes (live_write). */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (s->cert.path) {
		if (load_pem(ctx, "certificate", &s->cert, &st[0], why,
			     why_size, use_chain))
			goto fail;
		if (load_pem(ctx, "key", &s->key, &st[1], why, why_size,
			     use_key)) {
			/* OpenSSL checks the pair as it takes the key */
			if (strstr(why, "values mismatch"))
				snprintf(why, why_size,
					 "key %s does not match certificate "
					 "%s",
					 s->key.path, s->cert.path);
			goto fail;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			snprintf(why, why_size,
				 "key %s does not match certificate %s: %s",
				 s->key.path, s->cert.path,
				 err_reason(reason, sizeof(reason), "?"));
			goto fail;
		}
	}
	if (s->ca.path) {
		if (load_pem(ctx, "CA", &s->ca, &st[2], why, why_size, use_ca))
			goto fail;
	} else if (!s->server && s->verify &&
		   SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(why, why_size,
			 "no system CA store to verify "
			 "servers with (give a CA file)");
		goto fail;
	}
	if (s->server) {
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
		SSL_CTX_set_verify(ctx,
				   s->ca.path
				       ? SSL_VERIFY_PEER |
					     SSL_VERIFY_FAIL_IF_NO_PEER_CERT
				       : SSL_VERIFY_NONE,
				   NULL);
	} else {
		SSL_CTX_set_verify(
		    ctx, s->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* ---- the connection -------------------------------------------------- */

static void tls_conn_free(struct tls_conn *t)
{
	struct tls_side *s = t->side;

	if (t->ssl && !s->server && t->live) {
		/* The last session (with the tickets read since) resumes
		 * the next connection. */
		SSL_SESSION *sess = SSL_get1_session(t->ssl), *old;

		pthread_mutex_lock(&s->lock);
		old = s->session;
		s->session = sess;
		pthread_mutex_unlock(&s->lock);
		SSL_SESSION_free(old);
	}
	SSL_free(t->ssl); /* and its BIO */
	iobuf_destroy(&t->raw);
	pthread_mutex_destroy(&t->lock);
	mem_free(t->c->mem, t);
}

static void tp_close(struct conn *c)
{
	struct tls_conn *t = c->tp_ctx;

	loop_timer_stop(c->loop, &t->deadline);
}

static void tp_release(struct conn *c)
{
	tls_conn_free(c->tp_ctx);
}

/* What the handshake waits for now, for its failure's log. */
static const char *hs_step(const struct tls_conn *t)
{
	if (t->side->server)
		return !t->hs_flight ? "the ClientHello"
		       : t->side->ca.path
			   ? "the client's certificate and Finished"
			   : "the client's Finished";
	return !t->hs_in ? "the ServerHello"
			 : "the server's certificate and Finished";
}

/* Logs the handshake's failure once; returns err. */
static int hs_failed(struct tls_conn *t, int err, const char *why)
{
	if (!t->failed) {
		t->failed = true;
		snprintf(t->why, sizeof(t->why), "%s (waiting for %s)", why,
			 hs_step(t));
		count(&t->side->st.failed);
		log_warn(t->side->log,
			 "TLS handshake with %s failed waiting for %s, after "
			 "%lld ms (%zu bytes in, %zu out): %s",
			 t->c->peer_text, hs_step(t),
			 (long long)((clock_mono_ns() - t->start_ns) /
				     CLOCK_NS_PER_MS),
			 t->hs_in, t->hs_out, why);
	}
	return err;
}

/* The reason of a failed handshake step: the socket's error, the
 * certificate check's, or OpenSSL's (which names a received alert:
 * "tlsv1 alert unknown ca"). */
static int hs_error(struct tls_conn *t)
{
	long v = SSL_get_verify_result(t->ssl);
	char reason[96], text[192];

	if (t->sock_err == -ENOBUFS)
		return hs_failed(t, -EPROTO,
				 "the peer does not read: the socket's send "
				 "buffer is full");
	if (t->sock_err)
		return hs_failed(t, t->sock_err, strerror(-t->sock_err));
	err_reason(reason, sizeof(reason), "the peer closed the connection");
	if (v == X509_V_ERR_HOSTNAME_MISMATCH)
		snprintf(text, sizeof(text),
			 "the certificate is not for %s: %s",
			 t->side->server_name, reason);
	else if (v != X509_V_OK)
		snprintf(text, sizeof(text), "%s: %s", reason,
			 X509_verify_cert_error_string(v));
	else
		snprintf(text, sizeof(text), "%s", reason);
	return hs_failed(t, -EPROTO, text);
}

static void deadline_fired(struct loop_timer *lt)
{
	struct tls_conn *t = container_of(lt, struct tls_conn, deadline);
	char what[96];

	snprintf(what, sizeof(what),
		 "no progress within "
		 "tls_handshake_timeout_ms=%d",
		 t->side->handshake_timeout_ms);
	conn_close(t->c, hs_failed(t, -ETIMEDOUT, what));
}

static ssize_t hs_read(struct conn *c, struct iobuf *in)
{
	struct tls_conn *t = c->tp_ctx;
	ssize_t n = conn_tcp.read(c, in);

	if (n == 0)
		hs_failed(t, 0, "the peer closed the connection");
	else if (n < 0 && n != -EAGAIN)
		hs_failed(t, (int)n, strerror((int)-n));
	return n;
}

/* Writes wait for the handshake's end (conn_set_transport resumes). */
static ssize_t hs_write(struct conn *c, struct iobuf *out)
{
	(void)c;
	(void)out;
	return -EAGAIN;
}

static const struct conn_transport hs_tp = {
    .name = "tls-handshake",
    .read = hs_read,
    .write = hs_write,
    .drained_below = 0,
    .close = tp_close,
    .release = tp_release,
};

/* A live connection's read failed: an alert from the peer (a TLS 1.3
 * server refusing our certificate after our Finished) at warn; anything
 * else at debug. */
static void live_failed(struct tls_conn *t)
{
	char reason[96];

	err_reason(reason, sizeof(reason), "?");
	log_write(t->side->log,
		  strstr(reason, "alert") ? LOG_LVL_WARN : LOG_LVL_DEBUG,
		  "TLS with %s: %s", t->c->peer_text, reason);
}

/* Decrypts into `in` what OpenSSL can: bytes, 0 at the end, -EAGAIN, or
 * -errno.  Under t->lock. */
static ssize_t decrypt(struct tls_conn *t, struct iobuf *in)
{
	size_t total = 0;
	int r, err;

	while (total < TLS_READ_MAX) {
		ERR_clear_error();
		r = SSL_read(t->ssl, t->buf, sizeof(t->buf));
		if (r > 0) {
			if (iobuf_append(in, t->buf, (size_t)r))
				return total ? (ssize_t)total : -ENOMEM;
			total += (size_t)r;
			continue;
		}
		err = SSL_get_error(t->ssl, r);
		if (total)
			break; /* the next call says what ended this one */
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			return -EAGAIN;
		if (err == SSL_ERROR_ZERO_RETURN || t->eof)
			return 0; /* close_notify, or EOF */
		if (t->sock_err)
			return t->sock_err;
		live_failed(t);
		return -EPROTO;
	}
	return (ssize_t)total;
}

static ssize_t live_read(struct conn *c, struct iobuf *in)
{
	struct tls_conn *t = c->tp_ctx;
	ssize_t n;

	pthread_mutex_lock(&t->lock);
	n = decrypt(t, in);
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* One record (at most) from the front of out. */
static ssize_t live_write(struct conn *c, struct iobuf *out)
{
	struct tls_conn *t = c->tp_ctx;
	size_t len;
	int r, err;

	pthread_mutex_lock(&t->lock);
	/* A record that said WANT_WRITE is written again with the same
	 * bytes: OpenSSL encrypted it already and sends the rest. */
	len = t->w_len ? t->w_len
		       : iobuf_copy_out(out, 0, t->buf, sizeof(t->buf));
	if (t->w_len)
		iobuf_copy_out(out, 0, t->buf, len);
	ERR_clear_error();
	r = SSL_write(t->ssl, t->buf, (int)len);
	if (r > 0) {
		t->w_len = 0;
		iobuf_drop_front(out, (size_t)r);
		pthread_mutex_unlock(&t->lock);
		return r;
	}
	err = SSL_get_error(t->ssl, r);
	ERR_clear_error();
	if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
		t->w_len = len;
		pthread_mutex_unlock(&t->lock);
		return -EAGAIN;
	}
	pthread_mutex_unlock(&t->lock);
	return t->sock_err ? t->sock_err : -EPIPE;
}

static const struct conn_transport live_tp = {
    .name = "tls",
    .read = live_read,
    .write = live_write,
    .drained_below = 0,
    .close = tp_close,
    .release = tp_release,
};

/* SNI, the name checked, ALPN: 0 or -1. */
static int client_setup(struct tls_side *s, SSL *ssl)
{
	if (s->server_name &&
	    (!SSL_set_tlsext_host_name(ssl, s->server_name) ||
	     (s->verify && !SSL_set1_host(ssl, s->server_name))))
		return -1;
	if (s->alpn) {
		/* "h2,http/1.1" -> "\x02h2\x08http/1.1" */
		unsigned char wire[256];
		size_t n = 0;

		for (const char *p = s->alpn; *p;) {
			size_t len = strcspn(p, ",");

			if (!len || len > 255 || n + 1 + len > sizeof(wire))
				return -1;
			wire[n++] = (unsigned char)len;
			memcpy(wire + n, p, len);
			n += len;
			p += len + (p[len] == ',');
		}
		if (SSL_set_alpn_protos(ssl, wire, (unsigned)n))
			return -1;
	}
	return 0;
}

/* A new connection's TLS state, with c on hs_tp; NULL: -ENOMEM. */
static struct tls_conn *tls_conn_new(struct tls_side *s, struct conn *c)
{
	struct tls_conn *t = mem_zalloc(c->mem, sizeof(*t));
	BIO *bio;

	if (!t)
		return NULL;
	t->side = s;
	t->c = c;
	pthread_mutex_init(&t->lock, NULL);
	iobuf_init(&t->raw, c->pool);
	loop_timer_init(&t->deadline);
	pthread_mutex_lock(&s->lock);
	t->ssl = SSL_new(s->ctx);
	if (t->ssl && s->session && !s->server)
		SSL_set_session(t->ssl, s->session);
	pthread_mutex_unlock(&s->lock);
	bio = t->ssl ? BIO_new(conn_bio) : NULL;
	if (!bio || (!s->server && client_setup(s, t->ssl))) {
		BIO_free(bio);
		SSL_free(t->ssl);
		iobuf_destroy(&t->raw);
		pthread_mutex_destroy(&t->lock);
		mem_free(c->mem, t);
		return NULL;
	}
	BIO_set_data(bio, t);
	BIO_set_init(bio, 1);
	SSL_set_bio(t->ssl, bio, bio); /* one reference, taken */
	t->start_ns = clock_mono_ns();
	loop_timer_start(c->loop, &t->deadline,
			 t->start_ns +
			     (int64_t)s->handshake_timeout_ms * CLOCK_NS_PER_MS,
			 deadline_fired);
	conn_set_transport(c, &hs_tp, t);
	return t;
}

/* The handshake is done: keep what was agreed, go live, and decrypt the
 * bytes that came behind the handshake into c->in. */
static int go_live(struct tls_conn *t)
{
	struct conn *c = t->c;
	struct tls_side *s = t->side;
	const unsigned char *proto = NULL;
	unsigned int plen = 0;
	X509 *peer;
	ssize_t n;

	loop_timer_stop(c->loop, &t->deadline);
	count(&s->st.handshakes);
	if (SSL_session_reused(t->ssl))
		count(&s->st.resumed);
	SSL_get0_alpn_selected(t->ssl, &proto, &plen);
	if (proto && plen < sizeof(t->alpn)) {
		memcpy(t->alpn, proto, plen);
		t->alpn[plen] = 0;
	}
	peer =
	    s->server && s->ca.path ? SSL_get1_peer_certificate(t->ssl) : NULL;
	if (peer) {
		X509_NAME_oneline(X509_get_subject_name(peer), t->subject,
				  sizeof(t->subject));
		X509_free(peer);
	}
	log_debug(s->log, "TLS with %s: %s %s%s%s%s", c->peer_text,
		  SSL_get_version(t->ssl),
		  SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)),
		  SSL_session_reused(t->ssl) ? ", resumed" : "",
		  t->subject[0] ? ", client " : "", t->subject);
	t->live = true;
	conn_set_transport(c, &live_tp, t);
	/* The bytes behind the handshake: no socket read here (raw only),
	 * the loop reads on. */
	pthread_mutex_lock(&t->lock);
	t->raw_only = true;
	n = 1;
	while (!iobuf_empty(&t->raw) && n > 0)
		n = decrypt(t, &c->in);
	t->raw_only = false;
	pthread_mutex_unlock(&t->lock);
	return n < 0 && n != -EAGAIN ? (int)n : CONN_UP_DONE;
}

/* One step of either side's handshake, on the bytes in c->in. */
static int hs_step_run(struct tls_conn *t)
{
	struct conn *c = t->c;
	int r;

	if (iobuf_append_buf(&t->raw, &c->in))
		return hs_failed(t, -ENOMEM, "out of memory");
	ERR_clear_error();
	r = t->side->server ? SSL_accept(t->ssl) : SSL_connect(t->ssl);
	if (r == 1)
		return go_live(t);
	if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ && !t->sock_err)
		return CONN_UP_WAIT;
	return hs_error(t);
}

/* ---- the upgrades ---------------------------------------------------- */

static int up_detect(const struct iobuf *in)
{
	uint8_t p[3];
	size_t n = iobuf_copy_out(in, 0, p, sizeof(p));

	return tls_wire_detect(p, n);
}

static int up_accept_step(void *ctx, struct conn *c)
{
	struct tls_side *s = ctx;
	struct tls_conn *t = c->tp == &hs_tp ? c->tp_ctx : NULL;

	if (!t) {
		t = tls_conn_new(s, c);
		if (!t) {
			log_warn(s->log, "TLS with %s: out of memory",
				 c->peer_text);
			return -ENOMEM;
		}
	}
	return hs_step_run(t);
}

static int up_connect_start(void *ctx, struct conn *c)
{
	struct tls_side *s = ctx;
	struct tls_conn *t = tls_conn_new(s, c);

	if (!t)
		return -ENOMEM;
	return hs_step_run(t); /* sends the ClientHello */
}

static int up_connect_step(void *ctx, struct conn *c)
{
	(void)ctx;
	return hs_step_run(c->tp_ctx);
}

static const char *up_why(const struct conn *c)
{
	const struct conn_transport *tp =
	    __atomic_load_n(&c->tp, __ATOMIC_ACQUIRE);
	const struct tls_conn *t = tp == &hs_tp ? c->tp_ctx : NULL;

	return t && t->why[0] ? t->why : NULL;
}

/* ---- sides ----------------------------------------------------------- */

void tls_server_options_default(struct tls_server_options *o)
{
	memset(o, 0, sizeof(*o));
	o->handshake_timeout_ms = TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT;
}

void tls_client_options_default(struct tls_client_options *o)
{
	memset(o, 0, sizeof(*o));
	o->verify = true;
	o->handshake_timeout_ms = TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT;
}

static char *dup_or_null(const char *s, bool *oom)
{
	char *d;

	if (!s || !*s)
		return NULL;
	d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

static struct tls_side *side_new(bool server, const char *cert, const char *key,
				 const char *ca, int hs_ms, struct log *log,
				 const struct mem *mem)
{
	struct tls_side *s = calloc(1, sizeof(*s));
	bool oom = false;

	if (!s)
		return NULL;
	s->server = server;
	s->mem = mem ? mem : mem_default();
	s->log = log;
	s->handshake_timeout_ms =
	    hs_ms > 0 ? hs_ms : TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT;
	pthread_mutex_init(&s->lock, NULL);
	s->cert.path = dup_or_null(cert, &oom);
	s->key.path = dup_or_null(key, &oom);
	s->ca.path = dup_or_null(ca, &oom);
	s->up.name = "tls";
	s->up.ctx = s;
	if (oom) {
		tls_side_free(s);
		return NULL;
	}
	return s;
}

/* Loads s's files into a first context. */
static int side_load(struct tls_side *s, char *why, size_t why_size)
{
	struct stat st[3] = {0};

	if (tls_init_err)
		return tls_init_err;
	s->ctx = ctx_new(s, st, why, why_size);
	if (!s->ctx)
		return -EINVAL;
	s->cert.st = st[0];
	s->key.st = st[1];
	s->ca.st = st[2];
	return 0;
}

int tls_server_new(struct tls_side **out, const struct tls_server_options *o,
		   char *why, size_t why_size)
{
	struct tls_side *s;
	int err;

	pthread_once(&tls_once, tls_init);
	if (!o->cert_file || !o->key_file || !*o->cert_file || !*o->key_file) {
		snprintf(why, why_size,
			 "a TLS server needs a certificate "
			 "and a key");
		return -EINVAL;
	}
	s = side_new(true, o->cert_file, o->key_file, o->client_ca_file,
		     o->handshake_timeout_ms, o->log, o->mem);
	if (!s)
		return -ENOMEM;
	s->up.detect = up_detect;
	s->up.accept_step = up_accept_step;
	s->up.first_len = 5; /* a record header */
	err = side_load(s, why, why_size);
	if (err) {
		tls_side_free(s);
		return err;
	}
	*out = s;
	return 0;
}

int tls_client_new(struct tls_side **out, const struct tls_client_options *o,
		   char *why, size_t why_size)
{
	struct tls_side *s;
	bool oom = false;
	int err;

	pthread_once(&tls_once, tls_init);
	if (!o->cert_file != !o->key_file) {
		snprintf(why, why_size,
			 "a client certificate needs its key, "
			 "and a key its certificate");
		return -EINVAL;
	}
	s = side_new(false, o->cert_file, o->key_file, o->ca_file,
		     o->handshake_timeout_ms, o->log, o->mem);
	if (!s)
		return -ENOMEM;
	s->verify = o->verify;
	s->server_name = dup_or_null(o->server_name, &oom);
	s->alpn = dup_or_null(o->alpn, &oom);
	s->up.connect_start = up_connect_start;
	s->up.connect_step = up_connect_step;
	s->up.why = up_why;
	err = oom ? -ENOMEM : side_load(s, why, why_size);
	if (err) {
		tls_side_free(s);
		return err;
	}
	*out = s;
	return 0;
}

const struct conn_upgrade *tls_upgrade(struct tls_side *s)
{
	return &s->up;
}

/* A file that cannot be stat'ed compares as all zeroes: gone once is
 * reported once. */
static void restat(struct tls_file *f)
{
	if (f->path && stat(f->path, &f->st))
		memset(&f->st, 0, sizeof(f->st));
}

static bool file_changed(const struct tls_file *f)
{
	struct stat st;

	if (!f->path)
		return false;
	if (stat(f->path, &st))
		memset(&st, 0, sizeof(st));
	return st.st_size != f->st.st_size ||
	       st.st_mtim.tv_sec != f->st.st_mtim.tv_sec ||
	       st.st_mtim.tv_nsec != f->st.st_mtim.tv_nsec ||
	       st.st_ino != f->st.st_ino;
}

int tls_server_reload(struct tls_side *s, bool force, char *why,
		      size_t why_size)
{
	struct stat st[3] = {0};
	SSL_CTX *ctx, *old;
	bool changed;

	pthread_mutex_lock(&s->lock);
	changed = file_changed(&s->cert) || file_changed(&s->key) ||
		  file_changed(&s->ca);
	pthread_mutex_unlock(&s->lock);
	if (!force && !changed)
		return 0;
	ctx = ctx_new(s, st, why, why_size);
	pthread_mutex_lock(&s->lock);
	/* Failed or not, these files were seen: a bad file is reported
	 * once, not at every check, until it changes again. */
	if (!ctx) {
		restat(&s->cert);
		restat(&s->key);
		restat(&s->ca);
		pthread_mutex_unlock(&s->lock);
		count(&s->st.reload_failures);
		log_warn(s->log, "TLS: keeping the loaded certificate: %s",
			 why);
		return -EINVAL;
	}
	old = s->ctx;
	s->ctx = ctx;
	s->cert.st = st[0];
	s->key.st = st[1];
	s->ca.st = st[2];
	pthread_mutex_unlock(&s->lock);
	/* Live connections hold their own reference to the old one. */
	SSL_CTX_free(old);
	count(&s->st.reloads);
	log_info(s->log, "TLS: loaded certificate %s and key %s%s%s",
		 s->cert.path, s->key.path, s->ca.path ? ", client CA " : "",
		 s->ca.path ? s->ca.path : "");
	return 1;
}

void tls_stats(struct tls_side *s, struct tls_stats *st)
{
	st->handshakes = __atomic_load_n(&s->st.handshakes, __ATOMIC_RELAXED);
	st->resumed = __atomic_load_n(&s->st.resumed, __ATOMIC_RELAXED);
	st->failed = __atomic_load_n(&s->st.failed, __ATOMIC_RELAXED);
	st->reloads = __atomic_load_n(&s->st.reloads, __ATOMIC_RELAXED);
	st->reload_failures =
	    __atomic_load_n(&s->st.reload_failures, __ATOMIC_RELAXED);
}

void tls_set_log(struct tls_side *s, struct log *log)
{
	s->log = log;
}

void tls_side_free(struct tls_side *s)
{
	if (!s)
		return;
	SSL_SESSION_free(s->session);
	SSL_CTX_free(s->ctx);
	free(s->cert.path);
	free(s->key.path);
	free(s->ca.path);
	free(s->server_name);
	free(s->alpn);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- what a live connection agreed ----------------------------------- */

static const struct tls_conn *live_of(const struct conn *c)
{
	return __atomic_load_n(&c->tp, __ATOMIC_ACQUIRE) == &live_tp ? c->tp_ctx
								     : NULL;
}

const char *tls_conn_subject(const struct conn *c)
{
	const struct tls_conn *t = live_of(c);

	return t && t->subject[0] ? t->subject : NULL;
}

const char *tls_conn_alpn(const struct conn *c)
{
	const struct tls_conn *t = live_of(c);

	return t && t->alpn[0] ? t->alpn : NULL;
}
