/*
 * gateway: what app/cmd_gateway.c (the command, forwarding) and
 * app/gw_routes.c (routes: parsing, the table, live changes) share.
 *
 * Routes come from --route (fixed) and from --routes_from (file:// or
 * etcd://, changed live).  The table of routes in force is read by every
 * loop under a read lock, for the lookup only: a call takes a reference
 * to its route and gives it back when it is freed (the server's route
 * release), so a route replaced or removed lives on until its last call
 * ends, and new calls take the new table at once.  Nothing is dropped.
 */
#ifndef RPCGATE_APP_GATEWAY_H
#define RPCGATE_APP_GATEWAY_H

#include <pthread.h>

#include "app.h"
#include "cluster/cluster.h"
#include "cluster/etcd.h"
#include "codec/pbd.h"
#include "rpc/climit.h"
#include "rpc/server.h"

#define GW_WHO "rpcgate gateway"
/* Routes in force at once. */
#define GW_ROUTES_MAX 32
/* Calls in flight to one instance (its channel's callid capacity). */
#define GW_INSTANCE_CALLS_MAX 8192

enum gw_match {
	GW_EXACT,  /* "pkg.Service" */
	GW_PREFIX, /* "pkg.*": names starting with "pkg." */
	GW_ANY,	   /* "*" */
};

struct gateway;
struct gw_src; /* a --routes_from route, gw_routes.c */

struct gw_route {
	char pattern[256];
	size_t plen; /* GW_PREFIX: bytes before the '*' */
	enum gw_match match;
	char url[FLAGS_VALUE_MAX];
	char tag[NAMING_TAG_MAX];
	char hc_path[256];
	struct cluster_options co;
	struct cluster cl;
	struct climit limit; /* max_concurrency=: calls through the route */
	int tls;	     /* ;tls=: -1 unsaid (https:// says yes), 0, 1 */
	char tls_name[256];  /* ;tls_server_name=, else the URL's host */
	struct tls_side *tls_side;
	char limit_what[280];
	bool up; /* its cluster is open */
	/* where it came from */
	char text[FLAGS_VALUE_MAX]; /* as written */
	char key[ETCD_KEY_MAX];	    /* its key in --routes_from; "" */
	int64_t revision;	    /* etcd's mod_revision, the file's read */
	int refs;		    /* atomic: the table's and calls' */
	struct gateway *gw;
	struct task free_task;
};

struct gw_table {
	int n;
	struct gw_route *r[GW_ROUTES_MAX];
};

struct gateway {
	struct app_runtime r;
	const struct app_config *cfg;
	struct pbd_pool descriptors; /* HTTP/JSON callers' types */
	struct server srv;
	char host[256];
	int port, bound_port;
	const char *token;
	bool access_log;
	/* the routes in force */
	pthread_rwlock_t lock;
	struct gw_table tab; /* under lock */
	/* --routes_from */
	const char *routes_from;  /* "" when none */
	pthread_mutex_t apply_lock; /* one change of the table at a time */
	struct etcd_watch *rwatch;  /* etcd:// */
	struct task apply_task;	    /* etcd:// changes, on a worker */
	bool apply_queued, apply_again; /* under free_lock */
	struct gw_src *pending;		/* the newest etcd set, free_lock */
	size_t npending;
	int64_t file_mtime_ns, file_size, file_reads;
	uint64_t n_applied, n_refused; /* route changes */
	/* routes taken out, not yet freed (their last call runs) */
	pthread_mutex_t free_lock;
	pthread_cond_t free_cond;
	int nalive;
};

/* One forwarded call. */
struct gw_call {
	struct cluster_call cc;
	struct server_call *sc;
	struct gw_route *route;
	struct gateway *gw;
};

/* gw_routes.c */
/* Opens --route's and --routes_from's routes.  0, or -errno after a
 * message on stderr. */
int gw_routes_open(struct gateway *gw);
/* Closes them all (after the server stopped: no call runs). */
void gw_routes_close(struct gateway *gw);
/* The most specific route of `service`, referenced, or NULL (any loop). */
struct gw_route *gw_route_get(struct gateway *gw, const char *service);
void gw_route_put(struct gw_route *rt);
/* One more reference to a route the caller holds. */
void gw_route_hold(struct gw_route *rt);

/* gw_stream.c: server_set_route_stream()'s choice: gRPC to a route that
 * speaks gRPC is forwarded as a stream (arg: the gateway). */
const struct server_stream_ops *gw_route_stream(void *arg, void *route,
						const char *service,
						const char *method,
						void **ops_arg);
/* SIGHUP (and a periodic look): re-reads file:// routes. */
void gw_routes_check(void *arg, bool sighup);
/* /routes: each route, its source and revision. */
void gw_routes_page(void *arg, struct fbuf *out);
/* The serving line's routes, " P -> URL (lb, N instances)" each. */
void gw_routes_print(struct gateway *gw);

#endif
