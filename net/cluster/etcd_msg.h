/*
 * etcd_msg: the JSON of etcd's v3 gateway (etcd 3.4: POST /v3/kv/range,
 * /v3/watch, /v3/lease/grant, ...), written and read.
 *
 * Keys and values travel in base64; 64-bit integers as decimal strings;
 * fields at their default value (0, false, PUT) are left out.  An answer
 * is one JSON object; a stream (watch, lease keepalive) is a sequence of
 * them, each {"result": {...}} or {"error": {...}}, one per line.
 *
 *   range   {"header":{"revision":"7"},"kvs":[{"key":"..","value":"..",
 *            "mod_revision":"5"}],"count":"1"}
 *   watch   {"result":{"header":{..},"created":true}}
 *           {"result":{"header":{..},"events":[{"type":"DELETE",
 *            "kv":{"key":"..","mod_revision":"8"}}]}}
 *           {"result":{..,"canceled":true,"compact_revision":"4"}}
 *   lease   {"header":{..},"ID":"2324035877394504199","TTL":"5"}
 *   error   {"error":"..","message":"..","code":3}
 *           {"error":{"grpc_code":14,"http_code":503,"message":".."}}
 *
 * Pure functions; any thread.
 */
#ifndef RPCGATE_NET_ETCD_MSG_H
#define RPCGATE_NET_ETCD_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/fbuf.h"
#include "naming.h"

/* Longest key and value taken (decoded); longer ones are skipped. */
#define ETCD_KEY_MAX   1024
#define ETCD_VALUE_MAX 4096

/* ---- requests ---------------------------------------------------------- */

/* The range_end that makes [key, end) every key with the prefix: the
 * prefix with its last byte below 0xff incremented ("\0" for all). */
void etcd_prefix_end(const char *prefix, size_t n, char *end, size_t *end_n);

/* The bodies, appended to `out`. */
void etcd_put_range(struct fbuf *out, const char *prefix);
void etcd_put_watch(struct fbuf *out, const char *prefix, int64_t start_rev);
void etcd_put_grant(struct fbuf *out, int64_t ttl_s);
void etcd_put_lease_id(struct fbuf *out, int64_t id); /* keepalive, revoke */
void etcd_put_put(struct fbuf *out, const char *key, const char *value,
		  int64_t lease);

/* ---- answers ----------------------------------------------------------- */

/* One key of a range answer or of a watch event: decoded bytes, valid
 * during the callback only. */
struct etcd_kv {
	const char *key, *value;
	size_t key_n, value_n;
	int64_t mod_revision;
	bool deleted; /* a DELETE event (watch) */
};

/* Called for each kv and each event, in order; nonzero stops the read
 * and is returned. */
typedef int etcd_kv_fn(void *arg, const struct etcd_kv *kv);

struct etcd_answer {
	int64_t revision; /* header.revision; 0 when absent */
	bool created, canceled;
	int64_t compact_revision;
	int64_t id, ttl;  /* lease grant and keepalive */
	int64_t count;	  /* range: the keys in range */
	unsigned nkv;	  /* kvs and events passed to the callback */
	unsigned skipped; /* kvs too long to take */
	bool error;	  /* an "error" member came: `message` says */
	int code;	  /* its gRPC code, when given */
	char message[200];
};

/*
 * Reads one answer or stream message p[0..n) into *a, passing every kv
 * (kvs[] of a range, events[] of a watch) to fn.  A "result" wrapper is
 * taken off.  Unknown members are skipped.  0; -EBADMSG with *why (a
 * static text) for bad JSON or a field of the wrong type; -ENOMEM; or
 * what fn returned.  `scratch` holds decoded strings.
 */
int etcd_parse(const char *p, size_t n, struct etcd_answer *a, etcd_kv_fn *fn,
	       void *arg, struct fbuf *scratch, const char **why);

/*
 * The length of the JSON object at the front of p[0..n) (white space
 * before it included), found by counting brackets outside strings: >0,
 * 0 when it is not complete yet, -EBADMSG when p does not start with one.
 * Splits a stream into its messages.
 */
long etcd_msg_len(const char *p, size_t n);

/*
 * An instance from a key's value: "ADDR [TAG]" (naming's syntax), or a
 * JSON object {"addr":"HOST:PORT","tag":"..","weight":N} (the weight is
 * the tag when no tag is given, as wrr reads tags).  0 or -EINVAL.
 */
int etcd_node_from_value(const char *v, size_t n, struct naming_node *out,
			 struct fbuf *scratch);

#endif
