/*
 * tls: TLS on a conn with wolfSSL (see tls.h for the model).
 *
 * One tls_conn per connection, c->tp_ctx from the first handshake byte
 * on.  Two transports: hs_tp while the handshake runs (reads are TCP's
 * into c->in, which the upgrade's step hands to wolfSSL; writes wait) and
 * live_tp after it.  wolfSSL reads through recv_cb, from t->raw (bytes
 * read but not yet decrypted) and, live, from the socket in big reads;
 * it writes through send_cb straight to the socket.
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

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "base/clock.h"
#include "base/util.h"
#include "codec/tls_wire.h"

/* Bytes one read of the socket may take: what conn's TCP reads take. */
#define TLS_READ_MAX (64 * IOBUF_BLOCK_CAP)
/* A PEM file bigger than this is not a certificate or a key. */
#define TLS_FILE_MAX (1u << 20)

/* TLS 1.3's three suites, then TLS 1.2's ECDHE with AEAD only (Mozilla's
 * "intermediate" list, in wolfSSL's names). */
static const char tls_ciphers[] =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
    "TLS13-CHACHA20-POLY1305-SHA256:"
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
	pthread_mutex_t lock;	  /* ctx, session, the files' stat */
	WOLFSSL_CTX *ctx;	  /* new connections' */
	WOLFSSL_SESSION *session; /* client: the last one, to resume */
	struct tls_file cert, key, ca;
	char *server_name, *alpn; /* client */
	bool verify;
	struct tls_stats st; /* atomic counters */
};

struct tls_conn {
	struct tls_side *side;
	struct conn *c;
	WOLFSSL *ssl;
	pthread_mutex_t lock; /* ssl: the loop's reads, the writer's writes */
	struct iobuf raw;     /* read, not yet given to wolfSSL */
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

static void tls_init(void)
{
	tls_init_err = wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : -ENOMEM;
}

const char *tls_library_version(void)
{
	return "wolfSSL " LIBWOLFSSL_VERSION_STRING;
}

static void count(uint64_t *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

/* wolfSSL's text for error `err` (negative, as wolfSSL_get_error gives). */
static const char *wolf_reason(int err, char *buf, size_t size)
{
	wolfSSL_ERR_error_string_n((unsigned long)err, buf, size);
	return buf;
}

/* ---- I/O callbacks --------------------------------------------------- */

static int recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct tls_conn *t = ctx;
	ssize_t r;

	(void)ssl;
	if (iobuf_empty(&t->raw)) {
		/* During the handshake the step feeds raw from c->in. */
		if (!t->live || t->raw_only)
			return WOLFSSL_CBIO_ERR_WANT_READ;
		if (t->eof)
			return WOLFSSL_CBIO_ERR_CONN_CLOSE;
		r = iobuf_read_fd(&t->raw, t->c->io.fd, TLS_READ_MAX);
		if (r == 0) {
			t->eof = true;
			return WOLFSSL_CBIO_ERR_CONN_CLOSE;
		}
		if (r == -EAGAIN)
			return WOLFSSL_CBIO_ERR_WANT_READ;
		if (r < 0) {
			t->sock_err = (int)r;
			return WOLFSSL_CBIO_ERR_CONN_RST;
		}
	}
	r = (ssize_t)iobuf_copy_out(&t->raw, 0, buf, (size_t)sz);
	iobuf_drop_front(&t->raw, (size_t)r);
	if (!t->live)
		t->hs_in += (size_t)r;
	return (int)r;
}

static int send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct tls_conn *t = ctx;
	ssize_t r = send(t->c->io.fd, buf, (size_t)sz, MSG_NOSIGNAL);

	(void)ssl;
	if (r >= 0) {
		if (!t->live) {
			t->hs_out += (size_t)r;
			t->hs_flight |= sz > 0 && buf[0] == 0x16;
		}
		return (int)r;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		if (t->live)
			return WOLFSSL_CBIO_ERR_WANT_WRITE;
		/* A fresh connection's send buffer holds every flight; one
		 * that is full means the peer is not reading. */
		t->sock_err = -ENOBUFS;
		return WOLFSSL_CBIO_ERR_GENERAL;
	}
	t->sock_err = -errno;
	return errno == EPIPE ? WOLFSSL_CBIO_ERR_CONN_CLOSE
			      : WOLFSSL_CBIO_ERR_CONN_RST;
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

/* Loads a file through `use` (a wolfSSL_CTX_use_* or load_verify
 * function taking a PEM buffer).  The bytes are wiped after use: one of
 * them is the key. */
static int load_pem(WOLFSSL_CTX *ctx, const char *what, struct tls_file *f,
		    struct stat *st, char *why, size_t why_size,
		    int (*use)(WOLFSSL_CTX *, const unsigned char *, long, int))
{
	uint8_t *p;
	size_t n;
	char reason[96];
	int r = read_file(what, f->path, &p, &n, st, why, why_size);

	if (r)
		return r;
	r = use(ctx, p, (long)n, WOLFSSL_FILETYPE_PEM);
	explicit_bzero(p, n);
	free(p);
	if (r != WOLFSSL_SUCCESS) {
		snprintf(why, why_size, "%s %s: %s", what, f->path,
			 wolf_reason(r, reason, sizeof(reason)));
		return -EINVAL;
	}
	return 0;
}

static int use_chain(WOLFSSL_CTX *ctx, const unsigned char *p, long n, int t)
{
	(void)t;
	return wolfSSL_CTX_use_certificate_chain_buffer(ctx, p, n);
}

static int use_key(WOLFSSL_CTX *ctx, const unsigned char *p, long n, int t)
{
	return wolfSSL_CTX_use_PrivateKey_buffer(ctx, p, n, t);
}

static int use_ca(WOLFSSL_CTX *ctx, const unsigned char *p, long n, int t)
{
	return wolfSSL_CTX_load_verify_buffer(ctx, p, n, t);
}

/*
 * The server's ALPN choice: http/1.1 when offered; else none (a
 * baidu_std client offers nothing; h2 is not spoken yet).  `in` is the
 * client's list, length-prefixed names.
 */
static int alpn_select(WOLFSSL *ssl, const unsigned char **out,
		       unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	long at = tls_wire_alpn_find(in, inlen, "http/1.1");

	(void)ssl;
	(void)arg;
	if (at < 0)
		return SSL_TLSEXT_ERR_NOACK;
	*out = in + at;
	*outlen = (unsigned char)strlen("http/1.1");
	return SSL_TLSEXT_ERR_OK;
}

/* A context for s's files: the new one, or NULL and why. */
static WOLFSSL_CTX *ctx_new(struct tls_side *s, struct stat st[3], char *why,
			    size_t why_size)
{
	WOLFSSL_CTX *ctx =
	    wolfSSL_CTX_new(s->server ? wolfSSLv23_server_method()
				      : wolfSSLv23_client_method());
	char reason[96];
	int r;

	if (!ctx) {
		snprintf(why, why_size, "out of memory");
		return NULL;
	}
	if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) !=
		WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_set_cipher_list(ctx, tls_ciphers) != WOLFSSL_SUCCESS) {
		snprintf(why, why_size,
			 "the TLS library refused the versions "
			 "or the cipher list");
		goto fail;
	}
	wolfSSL_CTX_SetIORecv(ctx, recv_cb);
	wolfSSL_CTX_SetIOSend(ctx, send_cb);
	if (s->cert.path) {
		if (load_pem(ctx, "certificate", &s->cert, &st[0], why,
			     why_size, use_chain) ||
		    load_pem(ctx, "key", &s->key, &st[1], why, why_size,
			     use_key))
			goto fail;
		r = wolfSSL_CTX_check_private_key(ctx);
		if (r != WOLFSSL_SUCCESS) {
			snprintf(why, why_size,
				 "key %s does not match certificate %s: %s",
				 s->key.path, s->cert.path,
				 wolf_reason(r, reason, sizeof(reason)));
			goto fail;
		}
	}
	if (s->ca.path) {
		if (load_pem(ctx, "CA", &s->ca, &st[2], why, why_size, use_ca))
			goto fail;
	} else if (!s->server && s->verify &&
		   wolfSSL_CTX_load_system_CA_certs(ctx) != WOLFSSL_SUCCESS) {
		snprintf(why, why_size,
			 "no system CA store to verify "
			 "servers with (give a CA file)");
		goto fail;
	}
	if (s->server) {
		wolfSSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
		wolfSSL_CTX_set_verify(
		    ctx,
		    s->ca.path ? WOLFSSL_VERIFY_PEER |
				     WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT
			       : WOLFSSL_VERIFY_NONE,
		    NULL);
	} else {
		wolfSSL_CTX_set_verify(
		    ctx, s->verify ? WOLFSSL_VERIFY_PEER : WOLFSSL_VERIFY_NONE,
		    NULL);
	}
	return ctx;
fail:
	wolfSSL_CTX_free(ctx);
	return NULL;
}

/* ---- the connection -------------------------------------------------- */

static void tls_conn_free(struct tls_conn *t)
{
	struct tls_side *s = t->side;

	if (t->ssl && !s->server && t->live) {
		/* The last session (with the tickets read since) resumes
		 * the next connection. */
		WOLFSSL_SESSION *sess = wolfSSL_get1_session(t->ssl), *old;

		pthread_mutex_lock(&s->lock);
		old = s->session;
		s->session = sess;
		pthread_mutex_unlock(&s->lock);
		if (old)
			wolfSSL_SESSION_free(old);
	}
	if (t->ssl)
		wolfSSL_free(t->ssl);
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

/* The reason of a failed handshake step: the peer's alert, the socket's
 * error, or wolfSSL's. */
static int hs_error(struct tls_conn *t, int ret)
{
	int err = wolfSSL_get_error(t->ssl, ret);
	WOLFSSL_ALERT_HISTORY h;
	char reason[96], text[192];

	if (t->sock_err == -ENOBUFS)
		return hs_failed(t, -EPROTO,
				 "the peer does not read: the socket's send "
				 "buffer is full");
	if (t->sock_err)
		return hs_failed(t, t->sock_err, strerror(-t->sock_err));
	if (wolfSSL_get_alert_history(t->ssl, &h) == WOLFSSL_SUCCESS &&
	    h.last_rx.level == alert_fatal) {
		snprintf(text, sizeof(text), "the peer sent alert %d (%s)",
			 h.last_rx.code,
			 wolfSSL_alert_desc_string_long(h.last_rx.code));
		return hs_failed(t, -EPROTO, text);
	}
	if (err == DOMAIN_NAME_MISMATCH) {
		snprintf(text, sizeof(text),
			 "the certificate is not for %s: %s",
			 t->side->server_name,
			 wolf_reason(err, reason, sizeof(reason)));
		return hs_failed(t, -EPROTO, text);
	}
	snprintf(text, sizeof(text), "%s (%d)",
		 wolf_reason(err, reason, sizeof(reason)), err);
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

/* A live connection's read failed: a fatal alert from the peer (a TLS
 * 1.3 server refusing our certificate after our Finished) at warn, with
 * the alert; anything else at debug. */
static void live_failed(struct tls_conn *t, int err)
{
	WOLFSSL_ALERT_HISTORY h;
	char reason[96];

	if (wolfSSL_get_alert_history(t->ssl, &h) == WOLFSSL_SUCCESS &&
	    h.last_rx.level == alert_fatal)
		log_warn(t->side->log,
			 "TLS with %s: the peer sent alert %d (%s)",
			 t->c->peer_text, h.last_rx.code,
			 wolfSSL_alert_desc_string_long(h.last_rx.code));
	else
		log_debug(t->side->log, "TLS read from %s failed: %s",
			  t->c->peer_text,
			  wolf_reason(err, reason, sizeof(reason)));
}

/* Decrypts into `in` what wolfSSL can: bytes, 0 at the end, -EAGAIN, or
 * -errno.  Under t->lock. */
static ssize_t decrypt(struct tls_conn *t, struct iobuf *in)
{
	size_t total = 0;
	int r, err;

	while (total < TLS_READ_MAX) {
		r = wolfSSL_read(t->ssl, t->buf, sizeof(t->buf));
		if (r > 0) {
			if (iobuf_append(in, t->buf, (size_t)r))
				return total ? (ssize_t)total : -ENOMEM;
			total += (size_t)r;
			continue;
		}
		err = wolfSSL_get_error(t->ssl, r);
		if (total)
			break; /* the next call says what ended this one */
		if (err == WOLFSSL_ERROR_WANT_READ ||
		    err == WOLFSSL_ERROR_WANT_WRITE)
			return -EAGAIN;
		if (err == WOLFSSL_ERROR_ZERO_RETURN || t->eof)
			return 0; /* close_notify, or EOF */
		if (t->sock_err)
			return t->sock_err;
		live_failed(t, err);
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
	 * bytes: wolfSSL encrypted it already and sends the rest. */
	len = t->w_len ? t->w_len
		       : iobuf_copy_out(out, 0, t->buf, sizeof(t->buf));
	if (t->w_len)
		iobuf_copy_out(out, 0, t->buf, len);
	r = wolfSSL_write(t->ssl, t->buf, (int)len);
	if (r > 0) {
		t->w_len = 0;
		iobuf_drop_front(out, (size_t)r);
		pthread_mutex_unlock(&t->lock);
		return r;
	}
	err = wolfSSL_get_error(t->ssl, r);
	if (err == WOLFSSL_ERROR_WANT_WRITE || err == WOLFSSL_ERROR_WANT_READ) {
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

/* A new connection's TLS state, with c on hs_tp; NULL: -ENOMEM. */
static struct tls_conn *tls_conn_new(struct tls_side *s, struct conn *c)
{
	struct tls_conn *t = mem_zalloc(c->mem, sizeof(*t));
	WOLFSSL_SESSION *sess = NULL;

	if (!t)
		return NULL;
	t->side = s;
	t->c = c;
	pthread_mutex_init(&t->lock, NULL);
	iobuf_init(&t->raw, c->pool);
	loop_timer_init(&t->deadline);
	pthread_mutex_lock(&s->lock);
	t->ssl = wolfSSL_new(s->ctx);
	if (t->ssl && s->session && !s->server)
		sess = s->session;
	if (sess)
		wolfSSL_set_session(t->ssl, sess);
	pthread_mutex_unlock(&s->lock);
	if (!t->ssl) {
		iobuf_destroy(&t->raw);
		pthread_mutex_destroy(&t->lock);
		mem_free(c->mem, t);
		return NULL;
	}
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	if (!s->server) {
		if (s->server_name) {
			wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME,
				       s->server_name,
				       (unsigned short)strlen(s->server_name));
			if (s->verify)
				wolfSSL_check_domain_name(t->ssl,
							  s->server_name);
		}
		if (s->alpn)
			wolfSSL_UseALPN(t->ssl, s->alpn,
					(unsigned)strlen(s->alpn),
					WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
	}
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
	WOLFSSL_X509 *peer;
	char *proto = NULL;
	unsigned short plen = 0;
	ssize_t n;

	loop_timer_stop(c->loop, &t->deadline);
	count(&s->st.handshakes);
	if (wolfSSL_session_reused(t->ssl))
		count(&s->st.resumed);
	if (wolfSSL_ALPN_GetProtocol(t->ssl, &proto, &plen) ==
		WOLFSSL_SUCCESS &&
	    proto && plen < sizeof(t->alpn)) {
		memcpy(t->alpn, proto, plen);
		t->alpn[plen] = 0;
	}
	peer = s->server && s->ca.path ? wolfSSL_get_peer_certificate(t->ssl)
				       : NULL;
	if (peer) {
		WOLFSSL_X509_NAME *name = wolfSSL_X509_get_subject_name(peer);

		if (name)
			wolfSSL_X509_NAME_oneline(name, t->subject,
						  sizeof(t->subject));
		wolfSSL_X509_free(peer);
	}
	log_debug(s->log, "TLS with %s: %s %s%s%s%s", c->peer_text,
		  wolfSSL_get_version(t->ssl),
		  wolfSSL_CIPHER_get_name(wolfSSL_get_current_cipher(t->ssl)),
		  wolfSSL_session_reused(t->ssl) ? ", resumed" : "",
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
	r = t->side->server ? wolfSSL_accept(t->ssl) : wolfSSL_connect(t->ssl);
	if (r == WOLFSSL_SUCCESS)
		return go_live(t);
	if (wolfSSL_get_error(t->ssl, r) == WOLFSSL_ERROR_WANT_READ &&
	    !t->sock_err)
		return CONN_UP_WAIT;
	return hs_error(t, r);
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
	WOLFSSL_CTX *ctx, *old;
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
	wolfSSL_CTX_free(old);
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
	if (s->session)
		wolfSSL_SESSION_free(s->session);
	if (s->ctx)
		wolfSSL_CTX_free(s->ctx);
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

bool tls_conn_live(const struct conn *c)
{
	return live_of(c) != NULL;
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

const char *tls_conn_version(const struct conn *c)
{
	const struct tls_conn *t = live_of(c);

	return t ? wolfSSL_get_version(t->ssl) : NULL;
}
