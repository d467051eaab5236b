/*
 * echo: example.EchoService (app/proto/echo.proto, the service of
 * ../shared/vectors/baidu_std), as the recorded brpc server answers:
 *
 *   - the response's message is the request's, the response attachment
 *     the request's, byte for byte;
 *   - the answer is compressed with the request's compress type;
 *   - message "fail" fails the call: code 4242, text "asked to fail";
 *   - sleep_ms > 0 delays every answer by that long on a loop timer
 *     (no thread waits), to play a slow server;
 *   - serve_us > 0 plays a backend of fixed capacity: each call holds
 *     one of serve_slots slots for serve_us (on a loop timer), calls
 *     that find every slot taken wait in order, so past
 *     serve_slots * 10^6 / serve_us calls a second a queue builds and
 *     latency climbs, as it does in front of a saturated disk or
 *     database (the overload tests' upstream).
 *
 * The handler never blocks, so it is registered SERVER_METHOD_INLINE
 * unless `on_workers` asks for the task workers.
 */
#ifndef RPCGATE_APP_ECHO_H
#define RPCGATE_APP_ECHO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "rpc/server.h"

struct echo_delay;

#define ECHO_FAIL_MESSAGE "fail"
#define ECHO_FAIL_CODE	  4242
#define ECHO_FAIL_TEXT	  "asked to fail"

struct echo_service {
	int sleep_ms;	  /* 0: answer at once */
	bool on_workers;  /* run the handler on task workers, not inline */
	int fail_percent; /* fail this share of calls with ECHO_FAIL_CODE
			     (a sick upstream, for gateway tests) */
	bool discard;	  /* answer empty: the bytes go one way */
	uint64_t seq;	  /* calls seen, for fail_percent (atomic) */
	int serve_us;	  /* 0: no capacity model */
	int serve_slots;  /* with serve_us; 0 counts as 1 */
	/* private: the pool of the server's (streaming methods), the
	 * capacity model's slots and queue */
	struct iobuf_pool *pool;
	pthread_mutex_t lock;
	int busy;
	struct echo_delay *waiting, *waiting_tail;
};

/* Registers the service on `s` (before server_start); `e` must outlive
 * the server.  0 or server_add_service()'s error. */
int echo_service_add(struct server *s, struct echo_service *e);
/* example.EchoStreamService's streaming methods (app/echo_stream.c),
 * which echo_service_add() registers too.  0 or
 * server_add_stream_method()'s error. */
int echo_stream_add(struct server *s, struct echo_service *e);
/* After the server is destroyed. */
void echo_service_destroy(struct echo_service *e);

/*
 * Registers every service of `pool` that `s` does not serve yet as a
 * mirror (a raw service): a method whose request and response are of one
 * type answers the request's bytes as they came (kitchen.proto's
 * KitchenService.Mirror, say); one of two types fails with EREQUEST
 * saying so.  0, or server_add_raw_service()'s error.
 */
int echo_mirrors_add(struct server *s, const struct pbd_pool *pool,
		     struct echo_service *e);

/* echo.proto's descriptor set, compiled in (build/gen/app/proto/
 * echo.desc.c, made by the build with protoc-c -o). */
extern const uint8_t echo_proto_desc[];
extern const size_t echo_proto_desc_len;

#endif
