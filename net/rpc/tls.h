/*
 * tls: TLS 1.2 and 1.3 on a conn, server and client, with OpenSSL 3.
 *
 * Both sides are a conn_upgrade (conn.h): the server's detects a
 * ClientHello on a connection's first bytes (a port serves TLS and plain
 * alike, as brpc's does), the client's starts the handshake right after
 * the TCP connect.  The handshake is a non-blocking state machine on the
 * connection's loop thread, fed from c->in, with a deadline
 * (handshake_timeout_ms); every failure is logged once, with the step,
 * the peer and the reason (the certificate check's or OpenSSL's, which
 * names an alert the peer sent).  Once done,
 * the conn's transport is TLS: reads decrypt on the loop thread, writes
 * encrypt on whichever thread holds the writer role, one record (16 KiB)
 * at a time; a per-connection lock keeps the two off the OpenSSL object
 * at once.  What the handshake writes goes straight to the socket: the
 * first flights of a fresh connection fit its send buffer, and a peer
 * that does not read them fails the handshake, saying so.
 *
 * Server: a certificate chain and key (PEM), optionally a CA that client
 * certificates must chain to (mutual TLS; the subject is kept for the
 * auth hook and the access log), ALPN http/1.1, session tickets (TLS 1.3
 * and 1.2).  tls_server_reload() re-reads the files: new connections
 * use the new ones, live ones keep theirs; a bad new file keeps the old
 * configuration and says why.
 *
 * Client: verifies the server against a CA file or the system store,
 * sends SNI and checks the name when one is given, offers ALPN when
 * asked, presents a client certificate when given one, and resumes
 * sessions (the last one a connection of this client had).
 */
#ifndef RPCGATE_NET_TLS_H
#define RPCGATE_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "base/mem.h"
#include "conn.h"

/* nginx's ssl_handshake_timeout is 60 s; a handshake is a few round
 * trips, so 10 s is generous and bounds a slow-loris. */
#define TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT 10000
/* The plaintext of one record (RFC 8446 5.1). */
#define TLS_RECORD_MAX 16384
/* The subject of a client certificate, as kept ("/CN=.../O=..."). */
#define TLS_SUBJECT_MAX 256

struct tls_server_options {
	const char *cert_file;	    /* required: PEM chain, leaf first */
	const char *key_file;	    /* required: PEM */
	const char *client_ca_file; /* NULL: no client certificates */
	int handshake_timeout_ms;   /* <= 0: the default */
	struct log *log;
	const struct mem *mem; /* NULL: mem_default() */
};

struct tls_client_options {
	const char *ca_file;	 /* NULL: the system store */
	bool verify;		 /* false: any server certificate */
	const char *server_name; /* SNI and the name checked; NULL: none */
	const char *cert_file;	 /* a client certificate; NULL: none */
	const char *key_file;	 /* with cert_file */
	const char *alpn;	 /* "h2,http/1.1"; NULL: none offered */
	int handshake_timeout_ms;
	struct log *log;
	const struct mem *mem;
};

struct tls_stats {
	uint64_t handshakes; /* completed */
	uint64_t resumed;    /* of which by a session ticket or id */
	uint64_t failed;     /* handshakes that failed (logged) */
	uint64_t reloads;    /* configurations loaded after the first */
	uint64_t reload_failures;
};

struct tls_side;

void tls_server_options_default(struct tls_server_options *o);
void tls_client_options_default(struct tls_client_options *o);

/*
 * Loads the files and sets up a side.  0; -EINVAL with a reason in why
 * (which file, what is wrong; never the key's bytes); -ENOMEM.
 */
int tls_server_new(struct tls_side **out, const struct tls_server_options *o,
		   char *why, size_t why_size);
int tls_client_new(struct tls_side **out, const struct tls_client_options *o,
		   char *why, size_t why_size);

/* The upgrade to put in server_options.tls or channel_options.upgrade;
 * valid while the side lives. */
const struct conn_upgrade *tls_upgrade(struct tls_side *s);

/*
 * Server: re-reads the certificate, key and client CA when `force` or
 * when one of the files changed (size or modification time) since the
 * last load.  1 reloaded (logged), 0 nothing changed, -errno and the
 * reason in why: the old configuration stays (logged too).  Any thread.
 */
int tls_server_reload(struct tls_side *s, bool force, char *why,
		      size_t why_size);

void tls_stats(struct tls_side *s, struct tls_stats *st);

/* Where the side logs from now on (before it serves). */
void tls_set_log(struct tls_side *s, struct log *log);

/* Frees the side; connections still on it keep what they need. */
void tls_side_free(struct tls_side *s);

/* What a conn's finished handshake agreed.  The strings are the conn's,
 * valid while it lives; NULL when not TLS (or no client certificate, no
 * ALPN). */
const char *tls_conn_subject(const struct conn *c);
const char *tls_conn_alpn(const struct conn *c);

#endif
