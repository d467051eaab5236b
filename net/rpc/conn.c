/*
 * conn: a connection on an event loop (see conn.h for the write queue's
 * algorithm, the threads and the lifetime rules).
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "base/uaddr.h"

/* A pushed request whose link to the older ones is not stored yet. */
#define WREQ_PENDING ((struct conn_wreq *)(uintptr_t)1)
/* Bytes one read call may take: 64 blocks, brpc's read batch. */
#define CONN_READ_MAX (64 * IOBUF_BLOCK_CAP)
/* Socket events always watched. */
#define CONN_EVENTS (EPOLLIN | EPOLLRDHUP)

/* The first read offers one fresh block (one region: a recv) while reads
 * fit in one, two while they do not, as iobuf_read_fd_first() says. */
static ssize_t tcp_read(struct conn *c, struct iobuf *in)
{
	ssize_t r = iobuf_read_fd_first(in, c->io.fd, CONN_READ_MAX,
					c->last_read > IOBUF_BLOCK_CAP ? 2 : 1);

	if (r > 0)
		c->last_read = (size_t)r;
	return r;
}

static ssize_t tcp_write(struct conn *c, struct iobuf *out)
{
	return iobuf_write_fd(out, c->io.fd);
}

const struct conn_transport conn_tcp = {
    .name = "tcp",
    .read = tcp_read,
    .write = tcp_write,
    /* A stream socket returns less than asked only when empty. */
    .drained_below = CONN_READ_MAX,
};

static void format_peer(struct conn *c, int fd)
{
	socklen_t len = sizeof(c->peer);
	char host[INET6_ADDRSTRLEN] = "?";
	struct sockaddr_in6 *s6 = (void *)&c->peer;
	struct sockaddr_in *s4 = (void *)&c->peer;

	memset(&c->peer, 0, sizeof(c->peer));
	if (getpeername(fd, (struct sockaddr *)&c->peer, &len) < 0) {
		snprintf(c->peer_text, sizeof(c->peer_text), "fd %d", fd);
		return;
	}
	switch (c->peer.ss_family) {
	case AF_INET:
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(c->peer_text, sizeof(c->peer_text), "%s:%u", host,
			 ntohs(s4->sin_port));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(c->peer_text, sizeof(c->peer_text), "[%s]:%u", host,
			 ntohs(s6->sin6_port));
		break;
	case AF_UNIX: {
		/* A client's end has no name: ours (the listening path) says
		 * where it came in. */
		struct sockaddr_storage me;
		socklen_t ml = sizeof(me);

		if (len > sizeof(sa_family_t))
			uaddr_format(&c->peer, len, c->peer_text,
				     sizeof(c->peer_text));
		else if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
			uaddr_format(&me, ml, c->peer_text,
				     sizeof(c->peer_text));
		else
			snprintf(c->peer_text, sizeof(c->peer_text), "unix:");
		break;
	}
	default:
		snprintf(c->peer_text, sizeof(c->peer_text), "local fd %d", fd);
	}
}

void conn_ref(struct conn *c)
{
	__atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED);
}

bool conn_tryref(struct conn *c)
{
	int n = __atomic_load_n(&c->refs, __ATOMIC_RELAXED);

	while (n > 0)
		if (__atomic_compare_exchange_n(&c->refs, &n, n + 1, true,
						__ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return true;
	return false;
}

static inline const struct conn_transport *tp_of(const struct conn *c)
{
	return __atomic_load_n(&c->tp, __ATOMIC_ACQUIRE);
}

void conn_unref(struct conn *c)
{
	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL))
		return;
	if (c->tp->release)
		c->tp->release(c);
	close(c->io.fd);
	iobuf_destroy(&c->in);
	if (c->h->release)
		c->h->release(c);
}

/* ---- the write queue ---------------------------------------------- */

static void read_all(struct conn *c, bool hup);

/* n bytes more (or, negative, fewer) wait to go out.  Fewer: a paused
 * reader resumes (on its loop) once half its pause have gone. */
static void queued_add(struct conn *c, int64_t n)
{
	/* Sequentially consistent with read_all's pause: one of the two
	 * sees the other's store. */
	int64_t now = __atomic_add_fetch(&c->queued, n, __ATOMIC_SEQ_CST);

	if (c->acct)
		metrics_gauge_add(c->acct, n);
	if (n < 0 && c->read_pause && now <= c->read_pause / 2 &&
	    __atomic_load_n(&c->read_paused, __ATOMIC_SEQ_CST) &&
	    __atomic_exchange_n(&c->read_paused, 0, __ATOMIC_ACQ_REL) &&
	    !__atomic_exchange_n(&c->read_posted, 1, __ATOMIC_ACQ_REL)) {
		conn_ref(c); /* the read task's */
		loop_post(c->loop, &c->read_task);
	}
}

static void read_task_fn(struct task *t)
{
	struct conn *c = container_of(t, struct conn, read_task);

	__atomic_store_n(&c->read_posted, 0, __ATOMIC_RELEASE);
	if (c->started)
		read_all(c, false);
	conn_unref(c);
}

/* The parked writer made no progress for write_timeout_ms: the peer does
 * not read its answers. */
static void write_due(struct loop_timer *t)
{
	struct conn *c = container_of(t, struct conn, wto);
	int64_t due = c->out_progress_ns + (int64_t)c->write_timeout_ms * 1000000;

	if (!c->want_out || conn_closing(c))
		return;
	if (loop_now(c->loop) < due) {
		loop_timer_start(c->loop, &c->wto, due, write_due);
		return;
	}
	c->write_timed_out = true;
	conn_close(c, -ETIMEDOUT);
}

static void wreq_free(struct conn *c, struct conn_wreq *r)
{
	iobuf_destroy(&r->data);
	mem_free(c->mem, r);
}

/*
 * Writer, with wq_fifo empty and `last` the newest request it knows:
 * moves the requests pushed since into wq_fifo, oldest first.  False when
 * there are none.  `last` stays the head until the writer gives the role
 * up, so the head cannot be a freed request that came back.
 */
static bool wq_take_newer(struct conn *c, struct conn_wreq *last)
{
	struct conn_wreq *p, *n, *fifo = NULL;

	p = __atomic_load_n(&c->wq_head, __ATOMIC_ACQUIRE);
	if (p == last)
		return false;
	/* A producer links its request right after its exchange; wait for
	 * that store if we got there first. */
	while (p != last) {
		while ((n = __atomic_load_n(&p->next, __ATOMIC_ACQUIRE)) ==
		       WREQ_PENDING)
			sched_yield();
		p->next = fifo;
		fifo = p;
		p = n;
	}
	c->wq_fifo = fifo;
	return true;
}

/*
 * `done` has been written (or dropped).  Returns the next request in FIFO
 * order, or NULL when the queue is empty and the writer role is given up.
 * `done` is freed either way.
 */
static struct conn_wreq *wq_next(struct conn *c, struct conn_wreq *done)
{
	struct conn_wreq *expected = done, *p;

	/* With wq_fifo empty `done` is the newest we know: if it is still
	 * the head, we are the last writer and the queue is empty. */
	if (!c->wq_fifo &&
	    __atomic_compare_exchange_n(&c->wq_head, &expected, NULL, false,
					__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
		wreq_free(c, done);
		/* Sequentially consistent with conn_close_after_flush():
		 * one of the two sees the other's store. */
		if (__atomic_load_n(&c->close_on_drain, __ATOMIC_SEQ_CST))
			conn_close(c, __atomic_load_n(&c->drain_err,
						      __ATOMIC_RELAXED));
		return NULL;
	}
	if (!c->wq_fifo)
		wq_take_newer(c, done); /* the exchange failed: some came */
	p = c->wq_fifo;
	c->wq_fifo = p->next;
	wreq_free(c, done);
	return p;
}

/*
 * Writer: joins the requests queued behind `r` to it, so that one system
 * call (or one round of RDMA sends) takes them all: answers made from
 * one read go out together.  The data moves into the newest request
 * joined, which is returned; the older ones are freed.  Stops at
 * IOBUF_WRITE_MAX_IOV block references, what one write takes.
 */
static struct conn_wreq *wq_gather(struct conn *c, struct conn_wreq *r)
{
	struct conn_wreq *s;
	struct iobuf tmp;

	while (iobuf_ref_count(&r->data) < IOBUF_WRITE_MAX_IOV) {
		if (!c->wq_fifo && !wq_take_newer(c, r))
			break;
		s = c->wq_fifo;
		if (iobuf_append_buf(&r->data, &s->data))
			break; /* -ENOMEM: nothing moved; write what we have */
		c->wq_fifo = s->next;
		/* Swap: s carries everything, r the emptied iobuf. */
		tmp = s->data;
		s->data = r->data;
		r->data = tmp;
		wreq_free(c, r);
		r = s;
	}
	return r;
}

/* Loop thread: park (or unpark) the writer role until EPOLLOUT.  Before
 * the watch starts the wish is recorded and applied by the start task. */
static void watch_out(struct conn *c, bool on)
{
	if (c->want_out == on)
		return;
	c->want_out = on;
	if (c->write_timeout_ms && on) {
		c->out_progress_ns = loop_now(c->loop);
		loop_timer_start(c->loop, &c->wto,
				 c->out_progress_ns +
				     (int64_t)c->write_timeout_ms * 1000000,
				 write_due);
	} else if (c->write_timeout_ms) {
		loop_timer_stop(c->loop, &c->wto);
	}
	if (c->started && !tp_of(c)->own_wakeup)
		loop_io_mod(c->loop, &c->io, CONN_EVENTS | (on ? EPOLLOUT : 0));
}

/*
 * The writer role: writes c->wq_cur and everything queued after it, in
 * order, until the queue is empty (role given up, reference dropped) or
 * the socket is full (role handed to the loop thread).  Once wq_next()
 * gives the role up another thread may already hold it: nothing of the
 * writer's state is touched after that.
 */
static void write_queue(struct conn *c)
{
	bool on_loop = loop_on_thread(c->loop);
	struct conn_wreq *r = c->wq_cur;
	ssize_t n;

	while (r) {
		r = wq_gather(c, r);
		while (iobuf_len(&r->data)) {
			if (conn_closing(c)) {
				queued_add(c, -(int64_t)iobuf_len(&r->data));
				iobuf_reset(&r->data);
				break;
			}
			n = tp_of(c)->write(c, &r->data);
			if (n > 0) {
				c->bytes_out += (uint64_t)n;
				queued_add(c, -n);
				if (on_loop && c->want_out)
					c->out_progress_ns = loop_now(c->loop);
				continue;
			}
			if (n == -EAGAIN) {
				c->wq_cur = r;
				if (on_loop)
					watch_out(c, true);
				else
					loop_post(c->loop, &c->write_task);
				return;
			}
			log_debug(c->log, "write to %s failed: %s",
				  c->peer_text, strerror((int)-n));
			conn_close(c, (int)n);
			queued_add(c, -(int64_t)iobuf_len(&r->data));
			iobuf_reset(&r->data);
		}
		/* The last known request: stop waiting for EPOLLOUT while
		 * the role is still ours (wq_next may give it up). */
		if (on_loop && !c->wq_fifo)
			watch_out(c, false);
		r = wq_next(c, r);
	}
	conn_unref(c);
}

static void write_task_fn(struct task *t)
{
	write_queue(container_of(t, struct conn, write_task));
}

/* Loop thread: the writer role, held by the cork, starts writing. */
static void uncork(struct conn *c)
{
	c->corked = false;
	write_queue(c);
}

/* The end of the iteration that corked: uncorks if nothing did yet. */
static void flush_task_fn(struct task *t)
{
	struct conn *c = container_of(t, struct conn, flush_task);

	c->flush_queued = false;
	if (c->corked)
		uncork(c);
	conn_unref(c);
}

/*
 * Loop thread: the answer being queued is the last this read will make:
 * on_data has used up every byte of a read that drained the socket.  It
 * goes out now, with whatever the read's earlier answers corked: what
 * the rest of the iteration does (freeing the call, say) then overlaps
 * the peer's wake-up instead of delaying it.  Every answer of the read
 * joins the write; what is queued to this conn later in the iteration
 * (a task's write) goes in a write of its own, the price of not waiting.
 */
static bool read_answered(const struct conn *c)
{
	return c->last_batch && !iobuf_len(&c->in);
}

int conn_write(struct conn *c, struct iobuf *data)
{
	size_t n = iobuf_len(data);
	struct conn_wreq *r, *prev;

	if (conn_closing(c)) {
		/* The winner of conn_close() stores its error right after
		 * winning; a racing writer may see 0 and says "reset". */
		int err = __atomic_load_n(&c->close_err, __ATOMIC_ACQUIRE);

		iobuf_reset(data);
		return err ? err : -ECONNRESET;
	}
	r = mem_alloc(c->mem, sizeof(*r));
	if (!r) {
		iobuf_reset(data);
		return -ENOMEM;
	}
	/* An iobuf moves by value (it holds no pointer into itself). */
	r->data = *data;
	iobuf_init(data, c->pool);
	queued_add(c, (int64_t)n); /* before the push: a writer may take it */
	r->next = WREQ_PENDING;
	prev = __atomic_exchange_n(&c->wq_head, r, __ATOMIC_ACQ_REL);
	if (prev) {
		__atomic_store_n(&r->next, prev, __ATOMIC_RELEASE);
		/* r may be written and freed already: only n from here. */
		if (loop_on_thread(c->loop) && c->corked) {
			c->corked_bytes += n;
			if (c->corked_bytes >= CONN_CORK_BYTES ||
			    read_answered(c))
				uncork(c);
		}
		return 0;
	}
	r->next = NULL;
	conn_ref(c); /* the writer's */
	c->wq_cur = r;
	/* On the loop thread the write waits for the end of the loop's
	 * iteration, or for CONN_CORK_BYTES: what the other callbacks of
	 * this batch queue (the answers to every request of one read) goes
	 * in the same write; the read's last answer needs no wait.  Another
	 * thread writes at once: nothing would batch behind it. */
	if (n < CONN_CORK_BYTES && loop_on_thread(c->loop) &&
	    !read_answered(c)) {
		c->corked = true;
		c->corked_bytes = n;
		if (!c->flush_queued) {
			c->flush_queued = true;
			conn_ref(c); /* the flush task's */
			loop_defer_last(c->loop, &c->flush_task);
		}
		return 0;
	}
	write_queue(c);
	return 0;
}

/* ---- reading, starting, closing ------------------------------------ */

/* `hup`: the event said the peer closed; then read until EOF shows, no
 * later edge would report it. */
static void read_all(struct conn *c, bool hup)
{
	ssize_t n;

	while (!conn_closing(c)) {
		const struct conn_transport *tp = c->tp;

		if (c->read_pause && conn_queued(c) > c->read_pause) {
			/* The peer is not reading its answers: leave its
			 * requests in the socket.  The writer that brings
			 * the queue down resumes (queued_add). */
			__atomic_store_n(&c->read_paused, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&c->queued, __ATOMIC_SEQ_CST) >
				c->read_pause / 2 ||
			    !__atomic_exchange_n(&c->read_paused, 0,
						 __ATOMIC_ACQ_REL))
				return;
			continue; /* drained meanwhile, and not resumed */
		}
		n = tp->read(c, &c->in);
		if (n > 0) {
			c->bytes_in += (uint64_t)n;
			c->last_batch = (size_t)n < tp->drained_below && !hup;
			c->h->on_data(c);
			c->last_batch = false;
			if ((size_t)n < tp->drained_below && !hup)
				return; /* one syscall less per event */
			continue;
		}
		if (n == -EAGAIN)
			return;
		conn_close(c, n == 0 ? 0 : (int)n);
	}
}

static void on_io(struct loop_io *io, uint32_t events)
{
	struct conn *c = container_of(io, struct conn, io);

	/* want_out is the loop's own: true only while the writer role is
	 * parked here, so no other thread is writing. */
	if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->want_out)
		write_queue(c);
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		read_all(c, events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
}

static void start_task_fn(struct task *t)
{
	struct conn *c = container_of(t, struct conn, start_task);
	int err;

	if (conn_closing(c)) {
		conn_unref(c); /* the watch's, never used */
		return;
	}
	c->io.events =
	    CONN_EVENTS | (c->want_out && !tp_of(c)->own_wakeup ? EPOLLOUT : 0);
	err = loop_io_add(c->loop, &c->io);
	if (err) {
		log_warn(c->log, "cannot watch connection %s: %s", c->peer_text,
			 strerror(-err));
		conn_unref(c);
		conn_close(c, err);
		return;
	}
	c->started = true;
	/* Bytes may have arrived before the watch: edge-triggered epoll
	 * reports them anyway (the fd is ready when added), nothing to do. */
	if (c->h->on_start)
		c->h->on_start(c);
}

static void close_task_fn(struct task *t)
{
	struct conn *c = container_of(t, struct conn, close_task);
	bool was_started = c->started;

	if (was_started) {
		loop_io_del(c->loop, &c->io);
		c->started = false;
	}
	shutdown(c->io.fd, SHUT_RDWR);
	loop_timer_stop(c->loop, &c->wto);
	if (c->tp->close)
		c->tp->close(c);
	/* A writer parked on this loop will see no EPOLLOUT any more: it
	 * drops what is left now.  (A writer handed over in write_task, or
	 * corked, is still on its way and drops when it runs.) */
	if (c->want_out)
		write_queue(c);
	c->h->on_close(c, c->close_err);
	iobuf_reset(&c->in);
	if (was_started)
		conn_unref(c); /* the watch's */
	conn_unref(c);	       /* this task's */
}

void conn_close(struct conn *c, int err)
{
	if (__atomic_exchange_n(&c->closing, 1, __ATOMIC_ACQ_REL))
		return;
	__atomic_store_n(&c->close_err, err, __ATOMIC_RELEASE);
	conn_ref(c);
	loop_post(c->loop, &c->close_task);
}

void conn_close_after_flush(struct conn *c, int err)
{
	__atomic_store_n(&c->drain_err, err, __ATOMIC_RELAXED);
	__atomic_store_n(&c->close_on_drain, 1, __ATOMIC_SEQ_CST);
	/* No writer holds the role: nothing is queued, close now.  Else
	 * the writer that empties the queue closes (wq_next). */
	if (!__atomic_load_n(&c->wq_head, __ATOMIC_SEQ_CST))
		conn_close(c, err);
}

void conn_resume_writes(struct conn *c)
{
	/* want_out is true only while the role is parked on this loop. */
	if (!c->want_out)
		return;
	c->want_out = false;
	write_queue(c);
}

void conn_set_transport(struct conn *c, const struct conn_transport *tp,
			void *ctx)
{
	bool was_own = tp_of(c)->own_wakeup;

	c->tp_ctx = ctx;
	__atomic_store_n(&c->tp, tp, __ATOMIC_RELEASE);
	/* A role parked for EPOLLOUT under TCP: stop asking for it. */
	if (c->want_out && !was_own && c->started && tp->own_wakeup)
		loop_io_mod(c->loop, &c->io, CONN_EVENTS);
	conn_resume_writes(c);
}

void conn_delivered(struct conn *c, size_t n)
{
	if (!n || conn_closing(c))
		return;
	c->bytes_in += n;
	c->h->on_data(c);
}

void conn_start(struct conn *c)
{
	conn_ref(c); /* the watch's */
	loop_post(c->loop, &c->start_task);
}

int conn_init(struct conn *c, int fd, struct loop *loop,
	      const struct conn_transport *tp, const struct conn_handler *h,
	      void *ctx, struct iobuf_pool *pool, const struct mem *mem,
	      struct log *log)
{
	int one = 1;

	if (fd_set_nonblock(fd))
		return -errno;
	/* Requests are small and latency-bound: no Nagle (fails harmlessly
	 * on non-TCP sockets). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->tp = tp;
	c->h = h;
	c->ctx = ctx;
	c->mem = mem;
	c->log = log;
	c->pool = pool;
	c->refs = 1;
	iobuf_init(&c->in, pool);
	loop_io_init(&c->io, fd, CONN_EVENTS, on_io);
	task_init(&c->start_task, start_task_fn);
	task_init(&c->write_task, write_task_fn);
	task_init(&c->flush_task, flush_task_fn);
	task_init(&c->close_task, close_task_fn);
	task_init(&c->read_task, read_task_fn);
	loop_timer_init(&c->wto);
	format_peer(c, fd);
	return 0;
}

void conn_set_limits(struct conn *c, struct metrics_gauge *acct,
		     size_t read_pause, int write_timeout_ms)
{
	c->acct = acct;
	c->read_pause = (int64_t)read_pause;
	c->write_timeout_ms = write_timeout_ms > 0 ? write_timeout_ms : 0;
}
