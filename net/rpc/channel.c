/*
 * channel: calls to one server (see channel.h for a call's way); this
 * file is the loop's side, channel_call.c the caller's (channel_int.h).
 *
 * Who touches what.  Everything about connections, attempts and timers
 * happens on the channel's loop thread: starting a call, sending an
 * attempt, reading answers, timers, connection failures, finishing.  The
 * caller's thread only encodes the request and waits; a canceller's
 * thread only wins the call id and posts the finish to the loop.  So the
 * call id's claim (net/rpc/callid) is contended across threads only by
 * cancels: when the loop, holding a claim to retry or send a backup,
 * gets -EBUSY from callid_unclaim(), a cancel came and lost meanwhile,
 * and the loop finishes the call as cancelled.
 *
 * Ordering of a call's tasks on the loop: the start task is posted before
 * channel_call() returns the id, and a cancel can only name the id after
 * that, so its finish task is posted later; a loop runs posted tasks
 * oldest first.  The finish after a cancel therefore never overtakes the
 * start.
 */
#include "channel_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/stamp.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/pbuf.h"
#include "codec/rpc_errno.h"
#include "codec/rpc_msg.h"
#include "conn.h"
#include "base/uaddr.h"

/* How often pooled idle connections are checked for idle_timeout_s. */
#define IDLE_SCAN_NS (1000 * CLOCK_NS_PER_MS)

static void finish(struct rpc_call *c, int code);
static void retry_or_finish(struct rpc_call *c, int err);
static bool has_live_attempt(const struct rpc_call *c);
static void unclaim(struct rpc_call *c);

/* ---- small helpers -------------------------------------------------- */

/* The code a call fails with when its connection failed with `err`
 * (0: EOF). */
static int conn_error_code(int err)
{
	if (err == 0)
		return RPC_EEOF;
	return err < 0 ? -err : err;
}

/* ---- options -------------------------------------------------------- */

void channel_options_default(struct channel_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->timeout_ms = 500;
	opt->connect_timeout_ms = 200;
	opt->max_retry = 3;
	opt->backup_request_ms = -1;
	opt->conn_type = CHANNEL_CONN_SINGLE;
	opt->max_connection_pool_size = 100;
	opt->idle_timeout_s = 10;
	opt->max_body_size = BAIDU_MAX_BODY_SIZE_DEFAULT;
	opt->max_calls = CALLID_CAPACITY_DEFAULT;
	opt->max_unwritten = CHANNEL_MAX_UNWRITTEN_DEFAULT;
	opt->protocol = CHANNEL_PROTO_BAIDU;
}

int channel_protocol_parse(const char *s, enum channel_protocol *out)
{
	if (!strcmp(s, "baidu_std"))
		*out = CHANNEL_PROTO_BAIDU;
	else if (!strcmp(s, "grpc"))
		*out = CHANNEL_PROTO_GRPC;
	else
		return -EINVAL;
	return 0;
}

const char *channel_protocol_name(enum channel_protocol p)
{
	return p == CHANNEL_PROTO_GRPC ? "grpc" : "baidu_std";
}

int channel_conn_type_parse(const char *s, enum channel_conn_type *out)
{
	static const char *const names[] = {"single", "pooled", "short"};

	for (unsigned i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(s, names[i])) {
			*out = (enum channel_conn_type)i;
			return 0;
		}
	return -EINVAL;
}

const char *channel_conn_type_name(enum channel_conn_type t)
{
	switch (t) {
	case CHANNEL_CONN_SINGLE:
		return "single";
	case CHANNEL_CONN_POOLED:
		return "pooled";
	case CHANNEL_CONN_SHORT:
		return "short";
	}
	return "unknown";
}

static int options_validate(const struct channel_options *o)
{
	if (!o->rt || !o->pool)
		return -EINVAL;
	if (o->timeout_ms < -1 || o->timeout_ms == 0 ||
	    o->connect_timeout_ms <= 0 || o->max_retry < 0 ||
	    o->max_retry > (int)CALLID_ATTEMPT_MAX - 1 ||
	    o->backup_request_ms < -1 || o->backup_request_ms == 0 ||
	    o->max_connection_pool_size < 0 || o->idle_timeout_s <= 0 ||
	    o->max_connecting < 0 || o->conn_type > CHANNEL_CONN_SHORT ||
	    o->max_body_size == 0 || (o->credential_len && !o->credential))
		return -EINVAL;
	return 0;
}

/* "host:port", "[v6]:port": resolved once. */
static int resolve(struct channel *ch, const char *server)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	char host[256], *colon, *end;
	const char *h = host;
	struct addrinfo *ai;
	long port;
	int err;

	if (strlen(server) >= sizeof(host))
		return -EINVAL;
	if (uaddr_is_unix(server)) {
		if (uaddr_parse(server, &ch->addr, &ch->addrlen))
			return -EINVAL;
		snprintf(ch->addr_text, sizeof(ch->addr_text), "%s", server);
		return 0;
	}
	strcpy(host, server);
	colon = strrchr(host, ':');
	if (!colon || colon == host)
		return -EINVAL;
	*colon = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port <= 0 || port > 65535)
		return -EINVAL;
	if (host[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		h = host + 1;
	}
	err = getaddrinfo(h, colon + 1, &hints, &ai);
	if (err)
		return err == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
	memcpy(&ch->addr, ai->ai_addr, ai->ai_addrlen);
	ch->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(ch->addr_text, sizeof(ch->addr_text), "%s", server);
	return 0;
}

int channel_init(struct channel *ch, const char *server,
		 const struct channel_options *opt)
{
	struct callid_options co;
	int err;

	err = options_validate(opt);
	if (err)
		return err;
	memset(ch, 0, sizeof(*ch));
	ch->opt = *opt;
	ch->opt.mem = mem_or_default(opt->mem);
	baidu_limits_default(&ch->limits);
	ch->limits.max_body_size = opt->max_body_size;
	ch->limits.mem = ch->opt.mem;
	if (ch->limits.max_meta_size > ch->limits.max_body_size)
		ch->limits.max_meta_size = ch->limits.max_body_size;
	if (baidu_limits_validate(&ch->limits))
		return -EINVAL;
	err = resolve(ch, server);
	if (err)
		return err;
	callid_options_default(&co);
	co.capacity = opt->max_calls ? opt->max_calls : CALLID_CAPACITY_DEFAULT;
	co.mem = ch->opt.mem;
	err = callid_init(&ch->ids, &co);
	if (err)
		return err;
	ch->max_connecting = opt->max_connecting;
	if (!ch->max_connecting && opt->upgrade)
		ch->max_connecting = opt->upgrade->max_connecting;
	/* Spread channels over the loops, unless told. */
	ch->loop = opt->loop
		       ? opt->loop
		       : rt_loop_for(opt->rt, (unsigned)((uintptr_t)ch >> 6));
	loop_timer_init(&ch->idle_timer);
	return 0;
}

/* ---- attempts on connections (loop thread) -------------------------- */

static void att_link(struct chan_conn *cc, struct rpc_attempt *a)
{
	a->cc = cc;
	a->prev = NULL;
	a->next = cc->atts;
	if (cc->atts)
		cc->atts->prev = a;
	cc->atts = a;
}

static void att_unlink(struct rpc_attempt *a)
{
	struct chan_conn *cc = a->cc;

	if (a->prev)
		a->prev->next = a->next;
	else
		cc->atts = a->next;
	if (a->next)
		a->next->prev = a->prev;
	a->cc = NULL;
	a->prev = a->next = NULL;
}

static void idle_remove(struct chan_conn *cc)
{
	struct channel *ch = cc->ch;

	if (!cc->idle)
		return;
	if (cc->idle_prev)
		cc->idle_prev->idle_next = cc->idle_next;
	else
		ch->idle = cc->idle_next;
	if (cc->idle_next)
		cc->idle_next->idle_prev = cc->idle_prev;
	cc->idle = false;
	cc->idle_prev = cc->idle_next = NULL;
	ch->nidle--;
}

static void queue_remove(struct chan_conn *cc)
{
	struct channel *ch = cc->ch;

	if (cc->q_prev)
		cc->q_prev->q_next = cc->q_next;
	else
		ch->queued = cc->q_next;
	if (cc->q_next)
		cc->q_next->q_prev = cc->q_prev;
	else
		ch->queued_tail = cc->q_prev;
	cc->q_prev = cc->q_next = NULL;
}

static void admit(struct channel *ch);

/* cc is no longer being opened (ready, or closed): the next in line may
 * connect. */
static void opening_end(struct chan_conn *cc)
{
	if (!cc->opening)
		return;
	cc->opening = false;
	cc->ch->nopening--;
	admit(cc->ch);
}

/* Takes cc out of the channel's lists: no new attempt will pick it. */
static void cc_detach(struct chan_conn *cc)
{
	struct channel *ch = cc->ch;

	if (cc->state == CC_CLOSED)
		return;
	if (cc->state == CC_QUEUED)
		queue_remove(cc);
	cc->state = CC_CLOSED;
	if (ch->single == cc)
		ch->single = NULL;
	idle_remove(cc);
	if (cc->prev)
		cc->prev->next = cc->next;
	else
		ch->all = cc->next;
	if (cc->next)
		cc->next->prev = cc->prev;
}

/* Why the calls on cc failed, its connection having failed with `err`
 * (0: EOF) while connecting or, `connected`, later. */
static void conn_fail_text(struct chan_conn *cc, int err, bool connected,
			   const char *hs_why, char *buf, size_t size)
{
	struct channel *ch = cc->ch;

	if (!connected)
		snprintf(buf, size, "Fail to connect %s: %s", ch->addr_text,
			 strerror(-err));
	else if (hs_why)
		snprintf(buf, size, "Fail to handshake (%s) with %s: %s",
			 ch->opt.upgrade->name, ch->addr_text, hs_why);
	else if (err)
		snprintf(buf, size, "Broken connection to %s: %s",
			 ch->addr_text, strerror(-err));
	else
		snprintf(buf, size, "Connection to %s closed: Got EOF",
			 ch->addr_text);
}

/* The connection under attempt `a` failed with `err`; `why` says so. */
static void attempt_failed(struct rpc_attempt *a, int err, const char *why)
{
	struct channel *ch = a->call->ch;
	struct rpc_call *c;
	uint64_t id = a->id;
	void *p;

	att_unlink(a);
	if (callid_claim(&ch->ids, id, &p))
		return; /* ended, or a cancel holds it and will finish */
	c = p;
	chan_set_local_text(c, "%s", why);
	retry_or_finish(c, err);
}

/* Fails every attempt and streaming call on cc (connection closed or
 * connect failed). */
static void cc_fail_attempts(struct chan_conn *cc, int err)
{
	const struct conn_upgrade *up = cc->ch->opt.upgrade;
	/* A handshake that failed says why (only while it is the conn's
	 * transport, so only then). */
	const char *hs_why =
	    cc->has_conn && up && up->why ? up->why(&cc->conn) : NULL;
	char why[300];

	conn_fail_text(cc, err, cc->has_conn, hs_why, why, sizeof(why));
	chan_h2_close(cc, why);
	while (cc->atts)
		attempt_failed(cc->atts, err, why);
}

static void cc_free(struct chan_conn *cc)
{
	struct channel *ch = cc->ch;

	mem_free(ch->opt.mem, cc);
	if (__atomic_sub_fetch(&ch->nconns, 1, __ATOMIC_ACQ_REL) == 0)
		chan_futex_wake_all(&ch->nconns);
}

/* Closes cc whatever its state; its attempts fail with err. */
static void cc_close(struct chan_conn *cc, int err)
{
	if (cc->has_conn) {
		/* Its close runs on a later turn: it counts as being opened
		 * until then (cc_on_close ends that), so the next in line
		 * does not start its handshake beside this one's. */
		cc_detach(cc);
		conn_close(&cc->conn, err); /* on_close fails the attempts */
		return;
	}
	/* Queued or still connecting: no conn yet, the fd (if any) is ours. */
	cc_detach(cc);
	opening_end(cc);
	if (cc->cio.active)
		loop_io_del(cc->ch->loop, &cc->cio);
	loop_timer_stop(cc->ch->loop, &cc->ctimer);
	if (cc->fd >= 0)
		close(cc->fd);
	cc_fail_attempts(cc, err);
	cc_free(cc);
}

/* ---- sending -------------------------------------------------------- */

/* Packs and queues attempt `a`.  0, or a local failure (-ENOMEM,
 * -EMSGSIZE; -EOVERFLOW: max_unwritten) with `a` unlinked and the call's
 * text set. */
static int send_attempt(struct chan_conn *cc, struct rpc_attempt *a)
{
	struct rpc_call *c = a->call;
	struct channel *ch = c->ch;
	struct baidu_req_meta m = {
	    .service = c->service,
	    .method = c->method,
	    .correlation_id = a->id,
	    .compress_type = c->compress_type,
	    .has_log_id = c->has_log_id,
	    .log_id = c->log_id,
	};
	struct iobuf out, msg, att;
	int64_t unwritten = conn_queued(&cc->conn);
	int err;

	if (ch->opt.max_unwritten && unwritten > (int64_t)ch->opt.max_unwritten) {
		att_unlink(a);
		chan_set_local_text(c,
				    "Overcrowded: %lld bytes of requests wait "
				    "to be written to %s (it does not read)",
				    (long long)unwritten, ch->addr_text);
		return -EOVERFLOW;
	}
	if (ch->opt.protocol == CHANNEL_PROTO_GRPC) {
		a->sent = true;
		err = chan_h2_send(cc, a);
		if (err)
			att_unlink(a);
		return err;
	}
	if (c->has_crc) {
		m.checksum_type = BAIDU_CHECKSUM_CRC32C;
		m.checksum_value.ptr = c->crc;
		m.checksum_value.len = sizeof(c->crc);
	}
	/* Spec 1.7: the credential rides on a connection's first request. */
	if (ch->opt.credential && !cc->auth_sent) {
		m.auth.ptr = ch->opt.credential;
		m.auth.len = ch->opt.credential_len;
		cc->auth_sent = true;
	}
	iobuf_init(&out, ch->opt.pool);
	iobuf_init(&msg, ch->opt.pool);
	iobuf_init(&att, ch->opt.pool);
	/* Shares, not copies: the call keeps its bytes for a retry. */
	err = c->body_is_inline
		  ? 0
		  : iobuf_share(&msg, &c->body, 0, iobuf_len(&c->body));
	if (!err)
		err = iobuf_share(&att, &c->request_attachment, 0,
				  iobuf_len(&c->request_attachment));
	STAMP(STAMP_PACK);
	if (!err && c->body_is_inline)
		err = baidu_pack_request_flat(&out, &m, c->body_inline,
					      c->body_inline_len, &att);
	else if (!err)
		err = baidu_pack_request(&out, &m, &msg, &att);
	iobuf_destroy(&msg);
	iobuf_destroy(&att);
	a->sent = true;
	if (err) {
		/* Not the connection's fault: no retry helps. */
		iobuf_destroy(&out);
		att_unlink(a);
		chan_set_local_text(c, "Fail to pack request: %s",
				    strerror(-err));
		return err;
	}
	/* A failed write means the connection is closing: on_close will
	 * fail (and retry) this attempt. */
	conn_write(&cc->conn, &out);
	iobuf_destroy(&out);
	return 0;
}

/* The code a call ends with when its request cannot be packed. */
static int pack_error_code(int err)
{
	return err == -EMSGSIZE	   ? RPC_EREQUEST
	       : err == -EOVERFLOW ? RPC_EOVERCROWDED
				   : ENOMEM;
}

/* Connected: sends the attempts that waited for it. */
static void cc_send_pending(struct chan_conn *cc)
{
	struct rpc_attempt *a, *next;
	struct rpc_call *c;
	void *p;
	int err;

	if (cc->pending)
		chan_h2_start_pending(cc);
	for (a = cc->atts; a; a = next) {
		next = a->next;
		if (a->sent)
			continue;
		c = a->call;
		err = send_attempt(cc, a);
		if (err && !callid_claim(&cc->ch->ids, c->id, &p)) {
			if (has_live_attempt(c))
				unclaim(c);
			else
				finish(c, pack_error_code(err));
		}
	}
}

/* ---- connections ---------------------------------------------------- */

static void cc_on_data(struct conn *conn);
static void cc_on_close(struct conn *conn, int err);
static void cc_release(struct conn *conn);

static const struct conn_handler cc_handler = {
    .on_data = cc_on_data,
    .on_close = cc_on_close,
    .release = cc_release,
};

static void cc_connected(struct chan_conn *cc)
{
	struct channel *ch = cc->ch;
	int err;

	if (cc->cio.active)
		loop_io_del(ch->loop, &cc->cio);
	loop_timer_stop(ch->loop, &cc->ctimer);
	err = conn_init(&cc->conn, cc->fd, ch->loop, &conn_tcp, &cc_handler, cc,
			ch->opt.pool, ch->opt.mem, ch->opt.log);
	if (err) {
		chan_count(&ch->n_connect_failures);
		cc_close(cc, err);
		return;
	}
	cc->has_conn = true;
	cc->state = CC_READY;
	if (ch->opt.upgrade) {
		const struct conn_upgrade *up = ch->opt.upgrade;

		err = up->connect_start(up->ctx, &cc->conn);
		if (err < 0) {
			chan_count(&ch->n_connect_failures);
			conn_start(&cc->conn);
			conn_close(&cc->conn, err);
			conn_unref(&cc->conn);
			return;
		}
		if (err == CONN_UP_WAIT)
			cc->state = CC_HANDSHAKE;
	}
	conn_start(&cc->conn);
	conn_unref(&cc->conn); /* the watch holds it */
	if (cc->state == CC_READY) {
		cc_send_pending(cc);
		opening_end(cc);
	}
}

/* The upgrade's answer arrived (some of it).  True when the connection
 * is ready for requests (the pending ones were sent). */
static bool cc_handshake(struct chan_conn *cc)
{
	const struct conn_upgrade *up = cc->ch->opt.upgrade;
	int r = up->connect_step(up->ctx, &cc->conn);

	if (r == CONN_UP_WAIT)
		return false;
	if (r < 0) {
		chan_count(&cc->ch->n_connect_failures);
		conn_close(&cc->conn, r);
		return false;
	}
	cc->state = CC_READY;
	cc_send_pending(cc);
	opening_end(cc);
	return true;
}

static void connect_failed(struct chan_conn *cc, int err)
{
	struct channel *ch = cc->ch;

	chan_count(&ch->n_connect_failures);
	log_debug(ch->opt.log, "connect to %s failed: %s", ch->addr_text,
		  strerror(-err));
	cc_close(cc, err);
}

static void on_connect_io(struct loop_io *io, uint32_t events)
{
	struct chan_conn *cc = container_of(io, struct chan_conn, cio);
	socklen_t len = sizeof(int);
	int soerr = 0;

	if (getsockopt(cc->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr)
		connect_failed(cc, -soerr);
	else if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
		cc_connected(cc);
}

static void on_connect_timeout(struct loop_timer *t)
{
	connect_failed(container_of(t, struct chan_conn, ctimer), -ETIMEDOUT);
}

/* Starts cc's TCP connect.  0, or -errno: cc_close() it. */
static int cc_connect(struct chan_conn *cc)
{
	struct channel *ch = cc->ch;
	int fd, err;

	cc->state = CC_CONNECTING;
	cc->opening = true;
	ch->nopening++;
	chan_count(&ch->n_connects);
	fd = socket(ch->addr.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	cc->fd = fd;
	if (connect(fd, (struct sockaddr *)&ch->addr, ch->addrlen) < 0 &&
	    errno != EINPROGRESS)
		return -errno;
	loop_io_init(&cc->cio, fd, EPOLLOUT, on_connect_io);
	err = loop_io_add(ch->loop, &cc->cio);
	if (err)
		return err;
	loop_timer_start(ch->loop, &cc->ctimer,
			 loop_now(ch->loop) +
			     ch->opt.connect_timeout_ms * CLOCK_NS_PER_MS,
			 on_connect_timeout);
	return 0;
}

/* Connects the queued connections while there is room.  Not reentrant: a
 * failure below (and the retries it starts) only queues more. */
static void admit(struct channel *ch)
{
	struct chan_conn *cc;
	int err;

	if (ch->admitting)
		return;
	ch->admitting = true;
	while ((cc = ch->queued) && ch->nopening < ch->max_connecting &&
	       !ch->closing) {
		queue_remove(cc);
		err = cc_connect(cc);
		if (err) {
			chan_count(&ch->n_connect_failures);
			cc_close(cc, err);
		}
	}
	ch->admitting = false;
}

/* A new connection: connecting, or queued when max_connecting are being
 * opened already.  NULL with *err on a local failure. */
static struct chan_conn *cc_new(struct channel *ch, int *err)
{
	struct chan_conn *cc;

	cc = mem_zalloc(ch->opt.mem, sizeof(*cc));
	if (!cc) {
		*err = -ENOMEM;
		return NULL;
	}
	cc->ch = ch;
	cc->fd = -1;
	cc->state = CC_QUEUED;
	loop_timer_init(&cc->ctimer);
	__atomic_add_fetch(&ch->nconns, 1, __ATOMIC_ACQ_REL);
	cc->next = ch->all;
	if (ch->all)
		ch->all->prev = cc;
	ch->all = cc;
	if (ch->max_connecting && ch->nopening >= ch->max_connecting) {
		cc->q_prev = ch->queued_tail;
		if (ch->queued_tail)
			ch->queued_tail->q_next = cc;
		else
			ch->queued = cc;
		ch->queued_tail = cc;
		*err = 0;
		return cc;
	}
	*err = cc_connect(cc);
	if (*err) {
		chan_count(&ch->n_connect_failures);
		cc_close(cc, *err);
		return NULL;
	}
	return cc;
}

/* The connection attempt `a` goes on; NULL with *err if none can be had. */
static struct chan_conn *pick_conn(struct channel *ch, int *err)
{
	struct chan_conn *cc;

	switch (ch->opt.conn_type) {
	case CHANNEL_CONN_SINGLE:
		if (!ch->single)
			ch->single = cc_new(ch, err);
		return ch->single;
	case CHANNEL_CONN_POOLED:
		cc = ch->idle;
		if (cc) {
			idle_remove(cc);
			return cc;
		}
		return cc_new(ch, err);
	case CHANNEL_CONN_SHORT:
		break;
	}
	return cc_new(ch, err);
}

struct chan_conn *chan_stream_conn(struct channel *ch, bool own, int *err)
{
	struct chan_conn *cc;

	if (!own)
		return pick_conn(ch, err);
	cc = cc_new(ch, err);
	if (cc)
		cc->own = true;
	return cc;
}

void chan_stream_conn_done(struct chan_conn *cc)
{
	if (cc->own && !cc->atts && !cc->pending &&
	    !(cc->h2 && chan_h2_busy(cc)))
		cc_close(cc, 0);
}

/* A pooled connection's call ended: back to the idle pool, or closed. */
static void cc_call_ended(struct chan_conn *cc, bool answered)
{
	struct channel *ch = cc->ch;

	switch (ch->opt.conn_type) {
	case CHANNEL_CONN_SINGLE:
		return;
	case CHANNEL_CONN_POOLED:
		/* Unanswered (timeout, cancel, the backup won): its late
		 * answer would be dropped by id, but the connection is no
		 * longer "one call at a time": close it. */
		if (answered && cc->state == CC_READY && !cc->atts &&
		    ch->nidle < ch->opt.max_connection_pool_size &&
		    !ch->closing) {
			cc->idle = true;
			cc->idle_since = loop_now(ch->loop);
			cc->idle_prev = NULL;
			cc->idle_next = ch->idle;
			if (ch->idle)
				ch->idle->idle_prev = cc;
			ch->idle = cc;
			ch->nidle++;
			return;
		}
		break;
	case CHANNEL_CONN_SHORT:
		break;
	}
	if (!cc->atts)
		cc_close(cc, 0);
}

static void idle_scan(struct loop_timer *t)
{
	struct channel *ch = container_of(t, struct channel, idle_timer);
	int64_t limit = loop_now(ch->loop) - (int64_t)ch->opt.idle_timeout_s *
						 1000 * CLOCK_NS_PER_MS;
	struct chan_conn *cc, *next;

	for (cc = ch->idle; cc; cc = next) {
		next = cc->idle_next;
		if (cc->idle_since <= limit)
			cc_close(cc, 0);
	}
	if (!ch->closing)
		loop_timer_start(ch->loop, &ch->idle_timer,
				 loop_now(ch->loop) + IDLE_SCAN_NS, idle_scan);
}

/* ---- answers (loop thread) ------------------------------------------ */

static struct rpc_attempt *find_attempt(struct rpc_call *c, uint64_t id)
{
	for (unsigned i = 0; i < ARRAY_SIZE(c->att); i++)
		if (c->att[i].cc && c->att[i].id == id)
			return &c->att[i];
	return NULL;
}

static void cc_on_data(struct conn *conn)
{
	struct chan_conn *cc = container_of(conn, struct chan_conn, conn);
	struct channel *ch = cc->ch;
	struct baidu_frame f;
	int n;

	if (cc->state == CC_HANDSHAKE && !cc_handshake(cc))
		return;
	if (ch->opt.protocol == CHANNEL_PROTO_GRPC) {
		chan_h2_data(cc);
		return;
	}
	while (!conn_closing(conn)) {
		n = baidu_parse(&conn->in, &f, &ch->limits);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			log_warn(ch->opt.log,
				 "closing connection to %s: bad "
				 "baidu_std answer: %s",
				 ch->addr_text, strerror(-n));
			conn_close(conn, n);
			return;
		}
		STAMP(STAMP_PARSED);
		if (!f.meta.has_response) {
			log_warn(ch->opt.log,
				 "closing connection to %s: a "
				 "frame without a response meta",
				 ch->addr_text);
			baidu_frame_release(&f);
			conn_close(conn, -EPROTO);
			return;
		}
		chan_answer(cc, f.meta.correlation_id, &f);
	}
}

void chan_answer(struct chan_conn *cc, uint64_t id, struct baidu_frame *f)
{
	struct channel *ch = cc->ch;
	struct rpc_attempt *a;
	struct rpc_call *c;
	void *p;

	if (callid_claim(&ch->ids, id, &p)) {
		/* Late (timed out, cancelled), duplicate, or the losing
		 * attempt of a backup: dropped by id. */
		chan_count(&ch->n_stale);
		baidu_frame_release(f);
		return;
	}
	c = p;
	a = find_attempt(c, id);
	if (!a || a->cc != cc) {
		/* An attempt this call gave up on (its connection failed
		 * and it was retried elsewhere). */
		chan_count(&ch->n_stale);
		baidu_frame_release(f);
		if (callid_unclaim(&ch->ids, c->id) == -EBUSY)
			finish(c, ECANCELED);
		return;
	}
	c->resp = *f;
	c->has_resp = true;
	att_unlink(a);
	cc_call_ended(cc, true);
	finish(c, 0);
}

static void cc_on_close(struct conn *conn, int err)
{
	struct chan_conn *cc = container_of(conn, struct chan_conn, conn);

	cc_detach(cc);
	opening_end(cc);
	if (cc->atts)
		log_debug(cc->ch->opt.log,
			  "connection to %s closed with "
			  "calls in flight: %s",
			  cc->ch->addr_text, err ? strerror(-err) : "EOF");
	cc_fail_attempts(cc, err);
}

static void cc_release(struct conn *conn)
{
	cc_free(container_of(conn, struct chan_conn, conn));
}

/* ---- the call's state machine (loop thread) -------------------------- */

/*
 * Sends the call's next attempt (a first try, a retry or a backup).  The
 * caller holds the claim or the call is fresh.  0, or a local failure
 * (-errno) with nothing linked.
 */
static int start_attempt(struct rpc_call *c)
{
	struct channel *ch = c->ch;
	struct rpc_attempt *a = NULL;
	struct chan_conn *cc;
	uint64_t aid;
	int err = 0;

	for (unsigned i = 0; i < ARRAY_SIZE(c->att); i++)
		if (!c->att[i].cc) {
			a = &c->att[i];
			break;
		}
	if (!a)
		return -EBUSY;
	if (callid_make_attempt(c->id, (unsigned)c->next_attempt, &aid))
		return -ERANGE;
	/* Counted even if no connection can be had for it. */
	c->next_attempt++;
	c->attempts++;
	cc = pick_conn(ch, &err);
	if (!cc) {
		chan_set_local_text(c, "Fail to connect %s: %s", ch->addr_text,
				    strerror(-err));
		return err;
	}
	a->call = c;
	a->id = aid;
	a->sent = false;
	att_link(cc, a);
	if (cc->state == CC_READY) {
		err = send_attempt(cc, a);
		if (err) {
			if (!cc->atts)
				cc_call_ended(cc, false);
			return err;
		}
	}
	return 0;
}

static bool has_live_attempt(const struct rpc_call *c)
{
	for (unsigned i = 0; i < ARRAY_SIZE(c->att); i++)
		if (c->att[i].cc)
			return true;
	return false;
}

/* Gives the claim back; a cancel that came meanwhile finishes now. */
static void unclaim(struct rpc_call *c)
{
	if (callid_unclaim(&c->ch->ids, c->id) == -EBUSY) {
		chan_set_local_text(c, "RPC call is canceled");
		finish(c, ECANCELED);
	}
}

/* A connection failure under a claimed call: retry or end it. */
static void retry_or_finish(struct rpc_call *c, int err)
{
	struct channel *ch = c->ch;
	int r;

	if (err == -ENOMEM || err == -EMSGSIZE || err == -EOVERFLOW) {
		/* local: another attempt here would fail the same way */
		if (has_live_attempt(c))
			unclaim(c);
		else
			finish(c, pack_error_code(err));
		return;
	}
	if (has_live_attempt(c)) {
		/* The other attempt (a backup) may still answer. */
		unclaim(c);
		return;
	}
	while (c->retries_left > 0 && !ch->closing &&
	       !__atomic_load_n(&c->cancel_requested, __ATOMIC_ACQUIRE) &&
	       (c->deadline_ns < 0 || loop_now(ch->loop) < c->deadline_ns)) {
		c->retries_left--;
		chan_count(&ch->n_retries);
		r = start_attempt(c);
		if (r == 0) {
			unclaim(c);
			return;
		}
		err = r;
		if (r == -ENOMEM || r == -EMSGSIZE || r == -EOVERFLOW) {
			finish(c, pack_error_code(r));
			return;
		}
	}
	if (__atomic_load_n(&c->cancel_requested, __ATOMIC_ACQUIRE)) {
		chan_set_local_text(c, "RPC call is canceled");
		finish(c, ECANCELED);
	} else if (c->deadline_ns >= 0 &&
		   loop_now(ch->loop) >= c->deadline_ns) {
		chan_set_local_text(c, "Reached timeout=%dms @%s",
				    c->timeout_used_ms, ch->addr_text);
		finish(c, RPC_ERPCTIMEDOUT);
	} else {
		finish(c, conn_error_code(err));
	}
}

static void on_deadline(struct loop_timer *t)
{
	struct rpc_call *c = container_of(t, struct rpc_call, deadline_timer);
	void *p;

	if (callid_claim(&c->ch->ids, c->id, &p))
		return; /* a cancel holds it and will finish */
	chan_count(&c->ch->n_timeouts);
	chan_set_local_text(c, "Reached timeout=%dms @%s", c->timeout_used_ms,
			    c->ch->addr_text);
	finish(c, RPC_ERPCTIMEDOUT);
}

static void on_backup(struct loop_timer *t)
{
	struct rpc_call *c = container_of(t, struct rpc_call, backup_timer);
	void *p;

	if (callid_claim(&c->ch->ids, c->id, &p))
		return;
	/* Connection failures that ended every attempt retried already;
	 * a backup is one more try, alongside the first. */
	if (has_live_attempt(c) && start_attempt(c) == 0)
		chan_count(&c->ch->n_backups);
	unclaim(c);
}

void chan_start_task_fn(struct task *t)
{
	struct rpc_call *c = container_of(t, struct rpc_call, start_task);
	struct channel *ch = c->ch;
	void *p;
	int err;

	c->started = true;
	if (c->end_pending) {
		finish(c, c->finish_code);
		return;
	}
	if (ch->closing) {
		if (!callid_claim(&ch->ids, c->id, &p)) {
			chan_set_local_text(c, "channel to %s is closed",
					    ch->addr_text);
			finish(c, ECANCELED);
		}
		return;
	}
	if (c->deadline_ns >= 0)
		loop_timer_start(ch->loop, &c->deadline_timer, c->deadline_ns,
				 on_deadline);
	if (c->backup_ns >= 0)
		loop_timer_start(ch->loop, &c->backup_timer, c->backup_ns,
				 on_backup);
	if (ch->opt.conn_type == CHANNEL_CONN_POOLED &&
	    !loop_timer_active(&ch->idle_timer))
		loop_timer_start(ch->loop, &ch->idle_timer,
				 loop_now(ch->loop) + IDLE_SCAN_NS, idle_scan);
	err = start_attempt(c);
	if (err && !callid_claim(&ch->ids, c->id, &p))
		retry_or_finish(c, err);
}

/*
 * Ends a claimed call from outside its own events (a cancel, the channel
 * closing).  If its start task has not run yet (a deferred start can
 * trail a cancel's posted task), the start task ends it instead, so no
 * task of the call is left queued when it is delivered.
 */
static void end_claimed(struct rpc_call *c, int code)
{
	if (!c->started) {
		c->finish_code = code;
		c->end_pending = true;
		return;
	}
	finish(c, code);
}

/* A cancel won the claim on another thread and posted this. */
void chan_finish_task_fn(struct task *t)
{
	struct rpc_call *c = container_of(t, struct rpc_call, task);

	end_claimed(c, c->finish_code);
}

/*
 * Ends a call whose claim this thread holds (loop thread, or the
 * caller's before the call was posted): stops its timers, takes its
 * attempts off their connections, releases the id, delivers.
 */
static void finish(struct rpc_call *c, int code)
{
	struct channel *ch = c->ch;
	struct chan_conn *cc;

	if (loop_timer_active(&c->deadline_timer))
		loop_timer_stop(ch->loop, &c->deadline_timer);
	if (loop_timer_active(&c->backup_timer))
		loop_timer_stop(ch->loop, &c->backup_timer);
	for (unsigned i = 0; i < ARRAY_SIZE(c->att); i++) {
		cc = c->att[i].cc;
		if (!cc)
			continue;
		att_unlink(&c->att[i]);
		cc_call_ended(cc, false);
	}
	c->finish_code = code;
	c->latency_us = (clock_mono_ns() - c->start_ns) / 1000;
	chan_count(&ch->n_calls);
	if (code || (c->has_resp && c->resp.meta.error_code))
		chan_count(&ch->n_errors);
	callid_release(&ch->ids, c->id);
	chan_deliver(c);
}

/* ---- closing -------------------------------------------------------- */

static void drain_one(void *arg, uint64_t id, void *call)
{
	struct rpc_call *c = call;

	(void)arg;
	(void)id;
	chan_set_local_text(c, "channel to %s is closed", c->ch->addr_text);
	end_claimed(c, ECANCELED);
}

static void close_task_fn(struct task *t)
{
	struct channel *ch = container_of(t, struct channel, close_task);

	ch->closing = true;
	loop_timer_stop(ch->loop, &ch->idle_timer);
	callid_drain(&ch->ids, drain_one, ch);
	while (ch->all)
		cc_close(ch->all, -ECANCELED);
	__atomic_store_n(&ch->close_done, 1, __ATOMIC_RELEASE);
	chan_futex_wake_all(&ch->close_done);
}

void channel_destroy(struct channel *ch)
{
	int n;

	task_init(&ch->close_task, close_task_fn);
	loop_post(ch->loop, &ch->close_task);
	while (!__atomic_load_n(&ch->close_done, __ATOMIC_ACQUIRE))
		chan_futex_wait(&ch->close_done, 0);
	/* Connections go when their close tasks have run. */
	while ((n = __atomic_load_n(&ch->nconns, __ATOMIC_ACQUIRE)) != 0)
		chan_futex_wait(&ch->nconns, n);
	callid_destroy(&ch->ids);
}

void channel_stats(struct channel *ch, struct channel_stats *out)
{
	out->calls = __atomic_load_n(&ch->n_calls, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&ch->n_errors, __ATOMIC_RELAXED);
	out->retries = __atomic_load_n(&ch->n_retries, __ATOMIC_RELAXED);
	out->backups = __atomic_load_n(&ch->n_backups, __ATOMIC_RELAXED);
	out->timeouts = __atomic_load_n(&ch->n_timeouts, __ATOMIC_RELAXED);
	out->stale_responses = __atomic_load_n(&ch->n_stale, __ATOMIC_RELAXED);
	out->connects = __atomic_load_n(&ch->n_connects, __ATOMIC_RELAXED);
	out->connect_failures =
	    __atomic_load_n(&ch->n_connect_failures, __ATOMIC_RELAXED);
	out->connections = __atomic_load_n(&ch->nconns, __ATOMIC_RELAXED);
	out->inflight = callid_live(&ch->ids);
}
