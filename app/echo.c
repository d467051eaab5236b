/*
 * echo: example.EchoService as the recorded brpc server answers it (see
 * echo.h).
 */
#include "echo.h"

#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "codec/rpc_errno.h"
#include "echo.pb-c.h"

/* A delayed answer: the timer lives in the call's `user` slot. */
struct echo_delay {
	struct loop_timer timer;
	struct server_call *call;
	struct echo_service *e;
	struct task start;
	int64_t delay_us;
	bool slot;		 /* holds a serve_slots slot */
	struct echo_delay *next; /* e->waiting */
};

/* Whether this call is one of the fail_percent of every hundred
 * consecutive calls (exactly that many, spread over the hundred). */
static bool fails_by_share(struct echo_service *e)
{
	uint64_t n;

	if (e->fail_percent <= 0)
		return false;
	n = __atomic_fetch_add(&e->seq, 1, __ATOMIC_RELAXED);
	return (n * (uint64_t)e->fail_percent) % 100 <
	       (uint64_t)e->fail_percent;
}

static void echo_answer(struct server_call *call, struct echo_service *e)
{
	const Example__EchoRequest *req = (const void *)call->request;
	Example__EchoResponse *resp = (void *)call->response;

	if (!strcmp(req->message, ECHO_FAIL_MESSAGE) || fails_by_share(e)) {
		server_call_fail(call, ECHO_FAIL_CODE, "%s", ECHO_FAIL_TEXT);
		server_call_finish(call);
		return;
	}
	if (e->discard) {
		/* One-way throughput: an empty answer. */
		resp->message = "";
		server_call_finish(call);
		return;
	}
	/* The request outlives the answer's packing: no copy. */
	resp->message = req->message;
	if (iobuf_append_buf(&call->response_attachment,
			     &call->request_attachment)) {
		server_call_fail(call, ENOMEM, "no memory for the attachment");
		server_call_finish(call);
		return;
	}
	call->response_compress_type = call->request_compress_type;
	server_call_finish(call);
}

static void delay_fired(struct loop_timer *t);

/* Runs on the call's loop: timers belong to their loop's thread. */
static void delay_start(struct task *t)
{
	struct echo_delay *d = container_of(t, struct echo_delay, start);
	struct loop *loop = server_call_loop(d->call);

	loop_timer_init(&d->timer);
	loop_timer_start(loop, &d->timer, loop_now(loop) + d->delay_us * 1000,
			 delay_fired);
}

/* Starts d's timer on its call's loop, from any thread. */
static void delay_go(struct echo_delay *d)
{
	task_init(&d->start, delay_start);
	/* Inline handlers are on the loop already: no post, no wake-up. */
	if (loop_on_thread(server_call_loop(d->call)))
		delay_start(&d->start);
	else
		loop_post(server_call_loop(d->call), &d->start);
}

/* A slot is free: the oldest waiting call takes it, or the count drops. */
static void slot_release(struct echo_service *e)
{
	struct echo_delay *next;

	pthread_mutex_lock(&e->lock);
	next = e->waiting;
	if (next) {
		e->waiting = next->next;
		if (!e->waiting)
			e->waiting_tail = NULL;
	} else {
		e->busy--;
	}
	pthread_mutex_unlock(&e->lock);
	if (next)
		delay_go(next);
}

/* A slot for d, or a place in the queue: true when it starts now. */
static bool slot_take(struct echo_service *e, struct echo_delay *d)
{
	int slots = e->serve_slots > 0 ? e->serve_slots : 1;
	bool now;

	d->slot = true;
	d->next = NULL;
	pthread_mutex_lock(&e->lock);
	now = e->busy < slots;
	if (now) {
		e->busy++;
	} else if (e->waiting_tail) {
		e->waiting_tail->next = d;
		e->waiting_tail = d;
	} else {
		e->waiting = e->waiting_tail = d;
	}
	pthread_mutex_unlock(&e->lock);
	return now;
}

static void delay_fired(struct loop_timer *t)
{
	struct echo_delay *d = container_of(t, struct echo_delay, timer);
	struct server_call *call = d->call;
	struct echo_service *e = d->e;
	bool slot = d->slot;

	mem_free(call->srv->opt.mem, d);
	echo_answer(call, e);
	if (slot)
		slot_release(e);
}

static void echo_handler(struct server_call *call, void *arg)
{
	struct echo_service *e = arg;
	struct echo_delay *d;

	if (e->sleep_ms <= 0 && e->serve_us <= 0) {
		echo_answer(call, e);
		return;
	}
	d = mem_alloc(call->srv->opt.mem, sizeof(*d));
	if (!d) {
		server_call_fail(call, ENOMEM, "no memory to delay the answer");
		server_call_finish(call);
		return;
	}
	d->call = call;
	d->e = e;
	d->slot = false;
	if (e->serve_us > 0) {
		d->delay_us = e->serve_us;
		if (!slot_take(e, d))
			return; /* a slot's release starts it */
	} else {
		d->delay_us = (int64_t)e->sleep_ms * 1000;
	}
	delay_go(d);
}

int echo_service_add(struct server *s, struct echo_service *e)
{
	static server_handler_fn *const handlers[] = {echo_handler};

	int err;

	pthread_mutex_init(&e->lock, NULL);
	err = server_add_service(s, &example__echo_service__descriptor,
				 handlers, e,
				 e->on_workers ? 0 : SERVER_METHOD_INLINE);
	return err ? err : echo_stream_add(s, e);
}

void echo_service_destroy(struct echo_service *e)
{
	pthread_mutex_destroy(&e->lock);
}

/* A mirror's call: the request's bytes are the answer's. */
static void mirror_handler(struct server_call *call, void *arg)
{
	const struct pbd_service *ps = arg;
	const struct pbd_method *pm =
	    pbd_find_method(ps, call->method, strlen(call->method));

	if (!pm || pm->input != pm->output) {
		server_call_fail(call, RPC_EREQUEST,
				 "echo mirrors only methods whose request and "
				 "response are of one type; %s.%s's are not",
				 ps->full_name, call->method);
	} else if (iobuf_append_buf(&call->response_body,
				    &call->request_body) ||
		   iobuf_append_buf(&call->response_attachment,
				    &call->request_attachment)) {
		server_call_fail(call, ENOMEM, "no memory for the answer");
	} else {
		call->response_compress_type = call->request_compress_type;
	}
	server_call_finish(call);
}

int echo_mirrors_add(struct server *s, const struct pbd_pool *pool,
		     struct echo_service *e)
{
	(void)e;
	for (unsigned i = 0; i < pool->nservices; i++) {
		const struct pbd_service *ps = pool->services[i];
		int err;

		if (!strcmp(ps->full_name,
			    example__echo_service__descriptor.name))
			continue;
		err = server_add_raw_service(s, ps, mirror_handler, (void *)ps,
					     SERVER_METHOD_INLINE);
		if (err && err != -EEXIST)
			return err;
	}
	return 0;
}
