/*
 * channel_call: the caller's side of a channel's calls (preparing,
 * launching, waiting, joining and cancelling; the request is encoded on
 * the caller's thread) and their completion (the answer checked,
 * decompressed and decoded into the outputs on the consumer's thread,
 * then handed over).  The loop's side is channel.c.
 */
#include "channel_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/stamp.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/pbuf.h"
#include "codec/rpc_errno.h"
#include "codec/rpc_msg.h"

void chan_set_local_text(struct rpc_call *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->local_text, sizeof(c->local_text), fmt, ap);
	va_end(ap);
}

/* ---- completion ----------------------------------------------------- */

/* Copies the server's error text (the frame goes before the caller reads
 * it). */
static void keep_server_text(struct rpc_call *c, const char *text)
{
	size_t n = strlen(text);

	c->text_buf = mem_alloc(c->ch->opt.mem, n + 1);
	if (c->text_buf) {
		memcpy(c->text_buf, text, n + 1);
		c->error_text = c->text_buf;
	} else {
		c->error_text = rpc_errno_text(c->error_code);
	}
}

/*
 * Turns the end of a call into its outputs, on the consumer's thread
 * (the caller for sync and joinable calls, a worker for async ones): the
 * answer is verified, decompressed and decoded here, off the loop.
 */
static void complete_outputs(struct rpc_call *c)
{
	const struct mem *mem = c->ch ? c->ch->opt.mem : NULL;
	struct baidu_frame *f = &c->resp;
	int err;

	if (c->outputs_ready)
		return;
	c->outputs_ready = true;
	if (!c->has_resp) {
		c->error_code = c->finish_code;
		c->error_text = c->local_text[0]
				    ? c->local_text
				    : rpc_errno_text(c->error_code);
		if (!c->error_text)
			c->error_text = "unknown error";
		return;
	}
	c->response_compress_type = f->meta.compress_type;
	if (f->meta.error_code) {
		c->error_code = f->meta.error_code;
		c->error_from_server = true;
		keep_server_text(c, f->meta.error_text);
		goto out;
	}
	if (!c->resp_desc) {
		/* Raw: handed on as received, bad attachment_size included
		 * (the data then holds it all; the far end judges). */
		iobuf_append_buf(&c->response_body, &f->data);
		iobuf_append_buf(&c->response_attachment, &f->attachment);
		c->has_response_crc = f->meta.checksum_value.ptr &&
				      f->meta.checksum_value.len == 4;
		if (c->has_response_crc)
			memcpy(c->response_crc, f->meta.checksum_value.ptr, 4);
		c->error_code = 0;
		c->error_text = "";
		goto out;
	}
	if (f->bad_attachment) {
		c->error_code = RPC_ERESPONSE;
		chan_set_local_text(c,
				    "attachment_size=%d is larger than the "
				    "response body of %zu bytes",
				    f->meta.attachment_size,
				    iobuf_len(&f->data));
		c->error_text = c->local_text;
		goto out;
	}
	err = rpc_msg_verify(f);
	if (!err)
		err = rpc_msg_decode(c->resp_desc, f->meta.compress_type,
				     &f->data, c->ch->limits.max_body_size, mem,
				     &c->response);
	if (err) {
		/* brpc reports an undecodable answer as EREQUEST. */
		c->error_code = err == -ENOMEM ? ENOMEM : RPC_EREQUEST;
		chan_set_local_text(
		    c,
		    "Fail to parse response=%s, CompressType=%s,"
		    " ChecksumType=%s, response_size=%zu: %s",
		    c->resp_desc->name,
		    compress_type_name(f->meta.compress_type),
		    rpc_checksum_type_name(f->meta.checksum_type),
		    iobuf_len(&f->data), strerror(-err));
		c->error_text = c->local_text;
		goto out;
	}
	iobuf_append_buf(&c->response_attachment, &f->attachment);
	c->error_code = 0;
	c->error_text = "";
out:
	baidu_frame_release(f);
	c->has_resp = false;
}

static void done_task_fn(struct task *t)
{
	struct rpc_call *c = container_of(t, struct rpc_call, task);

	complete_outputs(c);
	c->done(c, c->done_arg); /* may free c */
}

void chan_deliver(struct rpc_call *c)
{
	struct channel *ch = c->ch;

	STAMP(STAMP_DISPATCH);

	if (c->done && c->done != RPC_JOINABLE) {
		task_init(&c->task, done_task_fn);
		if (ch->opt.done_inline && loop_on_thread(ch->loop)) {
			done_task_fn(&c->task);
			return;
		}
		if (rt_submit(ch->opt.rt, &c->task))
			done_task_fn(&c->task); /* workers stopped */
		return;
	}
	__atomic_store_n(&c->state, 1, __ATOMIC_RELEASE);
	chan_futex_wake_all(&c->state);
}

/* ---- the caller's side ---------------------------------------------- */

void rpc_done_joinable(struct rpc_call *c, void *arg)
{
	(void)c;
	(void)arg;
}

void rpc_call_init(struct rpc_call *c, struct iobuf_pool *pool)
{
	memset(c, 0, sizeof(*c));
	c->timeout_ms = RPC_CALL_CHANNEL;
	c->max_retry = RPC_CALL_CHANNEL;
	c->backup_request_ms = RPC_CALL_CHANNEL;
	c->error_text = "";
	iobuf_init(&c->request_attachment, pool);
	iobuf_init(&c->response_attachment, pool);
	iobuf_init(&c->response_body, pool);
	iobuf_init(&c->body, pool);
	loop_timer_init(&c->deadline_timer);
	loop_timer_init(&c->backup_timer);
}

/* Frees what the last call produced. */
static void clear_outputs(struct rpc_call *c)
{
	const struct mem *mem = c->ch ? c->ch->opt.mem : NULL;

	pbuf_free(c->response, mem);
	c->response = NULL;
	mem_free(mem, c->text_buf);
	c->text_buf = NULL;
	if (c->has_resp)
		baidu_frame_release(&c->resp);
	c->has_resp = false;
	iobuf_reset(&c->response_attachment);
	iobuf_reset(&c->response_body);
	c->has_response_crc = false;
	c->error_from_server = false;
	c->error_code = 0;
	c->error_text = "";
	c->local_text[0] = '\0';
	c->latency_us = 0;
	c->attempts = 0;
	c->outputs_ready = false;
	c->finish_code = 0;
	c->response_compress_type = 0;
}

void rpc_call_reset(struct rpc_call *c)
{
	struct iobuf_pool *pool = c->request_attachment.pool;

	clear_outputs(c);
	iobuf_destroy(&c->request_attachment);
	iobuf_destroy(&c->response_attachment);
	iobuf_destroy(&c->response_body);
	iobuf_destroy(&c->body);
	rpc_call_init(c, pool);
}

void rpc_call_destroy(struct rpc_call *c)
{
	clear_outputs(c);
	iobuf_destroy(&c->request_attachment);
	iobuf_destroy(&c->response_attachment);
	iobuf_destroy(&c->response_body);
	iobuf_destroy(&c->body);
}

static void wait_ended(struct rpc_call *c)
{
	while (!__atomic_load_n(&c->state, __ATOMIC_ACQUIRE))
		chan_futex_wait(&c->state, 0);
}

static bool on_rt_loop(struct rt *rt);

int rpc_call_join(struct rpc_call *c)
{
	if (!__atomic_load_n(&c->state, __ATOMIC_ACQUIRE) &&
	    on_rt_loop(c->ch->opt.rt))
		return -EDEADLK;
	wait_ended(c);
	complete_outputs(c);
	return 0;
}

/* Ends a call that never reached the loop (the caller's thread). */
static int fail_early(struct rpc_call *c, int code, bool id_claimed)
{
	if (id_claimed)
		callid_release(&c->ch->ids, c->id);
	c->finish_code = code;
	c->latency_us = (clock_mono_ns() - c->start_ns) / 1000;
	chan_count(&c->ch->n_calls);
	chan_count(&c->ch->n_errors);
	if (!c->done) {
		complete_outputs(c);
		return c->error_code;
	}
	if (loop_on_thread(c->ch->loop)) {
		/* A done that starts the next call must not recurse here
		 * call after failed call: run it after this task. */
		task_init(&c->task, done_task_fn);
		loop_defer(c->ch->loop, &c->task);
		return 0;
	}
	chan_deliver(c);
	return 0;
}

static bool on_rt_loop(struct rt *rt)
{
	for (int i = 0; i < rt->opt.dispatchers; i++)
		if (loop_on_thread(&rt->loops[i]))
			return true;
	return false;
}

static int or_channel(int call_value, int channel_value)
{
	return call_value == RPC_CALL_CHANNEL ? channel_value : call_value;
}

/* What every call starts with: outputs cleared, the controller bound
 * to `ch` and `done`. */
static void call_prepare(struct channel *ch, struct rpc_call *c,
			 rpc_done_fn *done, void *arg)
{
	clear_outputs(c);
	__atomic_store_n(&c->ch, ch, __ATOMIC_RELAXED);
	__atomic_store_n(&c->id, 0, __ATOMIC_RELAXED);
	c->done = done;
	c->done_arg = arg;
	c->state = 0;
	c->started = false;
	c->end_pending = false;
	c->start_ns = clock_mono_ns();
	memset(c->att, 0, sizeof(c->att));
	c->next_attempt = 0;
	c->body_is_inline = false;
}

/* A sync call on a loop thread would wait on itself. */
static bool would_deadlock(struct channel *ch, struct rpc_call *c)
{
	if (c->done || !on_rt_loop(ch->opt.rt))
		return false;
	chan_set_local_text(c, "a synchronous call on an event loop thread "
			       "would wait on itself");
	return true;
}

/* The call's deadline and backup time from its inputs or the channel. */
static void call_times(struct channel *ch, struct rpc_call *c)
{
	int backup_ms;

	c->timeout_used_ms = or_channel(c->timeout_ms, ch->opt.timeout_ms);
	c->retries_left = or_channel(c->max_retry, ch->opt.max_retry);
	backup_ms = or_channel(c->backup_request_ms, ch->opt.backup_request_ms);
	c->deadline_ns =
	    c->timeout_used_ms > 0
		? c->start_ns + c->timeout_used_ms * CLOCK_NS_PER_MS
		: -1;
	c->backup_ns =
	    backup_ms > 0 ? c->start_ns + backup_ms * CLOCK_NS_PER_MS : -1;
}

/* Takes a call id and posts the call to the loop; waits for a sync one. */
static int call_launch(struct channel *ch, struct rpc_call *c)
{
	uint64_t id;
	void *p;

	if (callid_alloc(&ch->ids, c, &id)) {
		chan_set_local_text(
		    c,
		    "too many calls in flight on the channel to "
		    "%s (%u)",
		    ch->addr_text, callid_capacity(&ch->ids));
		return fail_early(c, EAGAIN, false);
	}
	/*
	 * rpc_call_cancel() stores its flag, then reads the id; this stores
	 * the id, then reads the flag.  Sequentially consistent: one of the
	 * two sees the other's store, so a cancel is never missed.
	 */
	__atomic_store_n(&c->id, id, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&c->cancel_requested, __ATOMIC_SEQ_CST) &&
	    !callid_claim(&ch->ids, c->id, &p)) {
		chan_set_local_text(c, "RPC call is canceled");
		return fail_early(c, ECANCELED, true);
	}
	task_init(&c->start_task, chan_start_task_fn);
	/* From a done_inline callback: no wake-up needed, and deferring
	 * (not running it here) keeps call chains from recursing. */
	if (loop_on_thread(ch->loop))
		loop_defer(ch->loop, &c->start_task);
	else
		loop_post(ch->loop, &c->start_task);
	if (c->done)
		return 0;
	wait_ended(c);
	complete_outputs(c);
	return c->error_code;
}

/* A small request, uncompressed and unchecked: encoded into the call. */
static bool encode_inline(const struct channel *ch, struct rpc_call *c,
			  const ProtobufCMessage *req)
{
	size_t n;

	if (c->compress_type != COMPRESS_NONE || ch->opt.checksum)
		return false;
	n = protobuf_c_message_get_packed_size(req);
	if (n > sizeof(c->body_inline))
		return false;
	_Static_assert(RPC_CALL_INLINE_BODY <= UINT16_MAX, "body_inline_len");
	c->body_inline_len =
	    (uint16_t)protobuf_c_message_pack(req, c->body_inline);
	c->body_is_inline = true;
	c->has_crc = false;
	return true;
}

int channel_call(struct channel *ch, const ProtobufCServiceDescriptor *svc,
		 unsigned method_index, const ProtobufCMessage *req,
		 struct rpc_call *c, rpc_done_fn *done, void *arg)
{
	int err;

	call_prepare(ch, c, done, arg);
	iobuf_reset(&c->body);
	if (!svc || method_index >= svc->n_methods || !req ||
	    req->descriptor != svc->methods[method_index].input) {
		chan_set_local_text(c, "bad arguments to channel_call");
		return fail_early(c, EINVAL, false);
	}
	c->service = svc->name;
	c->method = svc->methods[method_index].name;
	c->resp_desc = svc->methods[method_index].output;
	if (would_deadlock(ch, c))
		return fail_early(c, EDEADLK, false);
	call_times(ch, c);
	if (encode_inline(ch, c, req))
		return call_launch(ch, c);
	/* The caller's thread pays for encoding and compressing. */
	err = rpc_msg_encode(req, c->compress_type, &c->body);
	if (err) {
		chan_set_local_text(c,
				    "Fail to serialize request=%s, "
				    "CompressType=%s: %s",
				    req->descriptor->name,
				    compress_type_name(c->compress_type),
				    strerror(-err));
		return fail_early(c, err == -ENOMEM ? ENOMEM : EINVAL, false);
	}
	c->has_crc =
	    ch->opt.checksum && rpc_msg_checksum(&c->body, NULL, c->crc) == 0;
	return call_launch(ch, c);
}

int channel_call_raw(struct channel *ch, const char *service,
		     const char *method, struct rpc_call *c, rpc_done_fn *done,
		     void *arg)
{
	call_prepare(ch, c, done, arg);
	if (!service || !method || !*service || !*method) {
		chan_set_local_text(c, "bad arguments to channel_call_raw");
		return fail_early(c, EINVAL, false);
	}
	c->service = service;
	c->method = method;
	c->resp_desc = NULL;
	if (would_deadlock(ch, c))
		return fail_early(c, EDEADLK, false);
	call_times(ch, c);
	c->has_crc = c->has_request_crc;
	if (c->has_crc)
		memcpy(c->crc, c->request_crc, sizeof(c->crc));
	return call_launch(ch, c);
}

int channel_cancel(struct channel *ch, uint64_t id)
{
	struct rpc_call *c;
	void *p;

	if (callid_claim(&ch->ids, id, &p))
		return -ENOENT;
	c = p;
	chan_set_local_text(c, "RPC call is canceled");
	c->finish_code = ECANCELED;
	task_init(&c->task, chan_finish_task_fn);
	loop_post(ch->loop, &c->task);
	return 0;
}

void rpc_call_cancel(struct rpc_call *c)
{
	uint64_t id;

	__atomic_store_n(&c->cancel_requested, 1, __ATOMIC_SEQ_CST);
	id = __atomic_load_n(&c->id, __ATOMIC_SEQ_CST);
	if (id)
		channel_cancel(__atomic_load_n(&c->ch, __ATOMIC_RELAXED), id);
}
