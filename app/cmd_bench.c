/*
 * bench: a closed-loop load generator for example.EchoService (brpc's
 * rpc_press in its simplest form).
 *
 *   rpcgate bench --server=HOST:PORT [--concurrency=N] [--payload=BYTES]
 *                 [--duration=S] [--connection_type=single|pooled|short]
 *                 [--compress=none|snappy|gzip|zlib] [--json]
 *                 [--verify | --oneway] [--transport=tcp|rdma]
 *                 [--wait_ms=MS] [--rate=QPS]
 *                 (and call's --timeout_ms, --max_retry, --checksum,
 *                 --auth_token)
 *
 * N slots each keep one asynchronous call in flight: a call's done
 * callback (on a task worker) records the latency and, until the
 * duration is over, issues the slot's next call at once.  The request's
 * message is BYTES bytes of a pattern, one message shared by every call.
 * With --verify each call sends a message and an attachment of random
 * sizes 0..BYTES (cuts of the pattern) and checks that the answer holds
 * exactly the same bytes; a wrong answer counts as an error.  With
 * --oneway each call sends an empty message and BYTES bytes of attachment
 * (one buffer's blocks, shared by every call: no copy) and expects an
 * empty answer (echo --discard=true): throughput one way.
 *
 *   main       start N calls -> one progress line a second on stderr
 *              (not with --json) -> wait until every slot has ended
 *              (calls still out BENCH_DRAIN_SLACK_MS past their deadline
 *              are cancelled) -> close the channel -> print the result
 *   worker     done: record -> next call, or end the slot
 *
 * Result: qps = successful calls / seconds from the start to the end of
 * the last call; latency percentiles of the successful calls from a
 * log-linear histogram; errors = failed calls (the first one is printed
 * on stderr when it happens).  --json prints exactly one line:
 *
 *   {"qps":N.N,"calls":N,"errors":N,"p50_us":N,"p90_us":N,"p99_us":N,
 *    "p999_us":N,"avg_us":N,"concurrency":N,"payload":N,"duration_s":N,
 *    "connection_type":"single"}
 *
 * Exit 0 when at least one call succeeded, 1 otherwise, 2 without
 * --server.
 */
#include "app.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "codec/compress.h"
#include "rpc/channel.h"
#include "base/util.h"
#include "codec/rpc_errno.h"
#include "echo.pb-c.h"
#include "rdt.h"

#define WHO "rpcgate bench"

/* How long past the calls' deadline (timeout_ms, or none) the end waits
 * for stragglers before cancelling them: a deadline timer fires on its
 * loop's next turn, and a loaded machine can be late by a second. */
#define BENCH_DRAIN_SLACK_MS 2000

/* ---- latency histogram ------------------------------------------------ */

/*
 * Log-linear buckets of microseconds: values below HIST_SUB are exact;
 * above, each power of two is cut into HIST_SUB equal buckets, so a
 * bucket's midpoint is within 1/(2 * HIST_SUB) (0.8 %) of any value in
 * it.  Values of 2^HIST_MAX_EXP us (16.8 s) and more, beyond any sane
 * deadline, share the last bucket.  Counters are atomic: done callbacks
 * run on every task worker at once.
 */
#define HIST_SUB_BITS 6
#define HIST_SUB      (1 << HIST_SUB_BITS)
#define HIST_MAX_EXP  24
#define HIST_BUCKETS  ((HIST_MAX_EXP - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint64_t n[HIST_BUCKETS];
	uint64_t count;
	uint64_t sum_us;
};

static int hist_index(uint64_t us)
{
	int e, shift;

	if (us < HIST_SUB)
		return (int)us;
	e = 63 - __builtin_clzll(us); /* us in [2^e, 2^(e+1)) */
	if (e >= HIST_MAX_EXP)
		return HIST_BUCKETS - 1;
	shift = e - HIST_SUB_BITS;
	return (e - HIST_SUB_BITS + 1) * HIST_SUB +
	       (int)((us >> shift) - HIST_SUB);
}

/* The value a bucket stands for: its midpoint. */
static uint64_t hist_value(int i)
{
	int group = i / HIST_SUB, shift;

	if (group == 0)
		return (uint64_t)i;
	shift = group - 1;
	return ((uint64_t)(HIST_SUB + i % HIST_SUB) << shift) +
	       ((1ull << shift) >> 1);
}

static void hist_add(struct hist *h, int64_t us)
{
	uint64_t v = us > 0 ? (uint64_t)us : 0;

	__atomic_fetch_add(&h->n[hist_index(v)], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum_us, v, __ATOMIC_RELAXED);
}

/* The value at quantile `per10k`/10000 (5000: the median); 0 when
 * empty.  Read once every call has ended. */
static uint64_t hist_quantile(const struct hist *h, unsigned per10k)
{
	uint64_t rank = (h->count * per10k + 9999) / 10000, seen = 0;

	if (rank == 0)
		rank = 1;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->n[i];
		if (seen >= rank)
			return hist_value(i);
	}
	return 0;
}

/* ---- the bench -------------------------------------------------------- */

struct bench;

struct bench_slot {
	struct rpc_call call;
	struct bench *b;
	int ended; /* atomic: its last call ended, no next one */
	/* --rate: when its next call is due, and the timer that waits */
	struct loop *loop;
	int64_t next_ns;
	struct loop_timer timer;
	struct task wait_task;
	/* --verify: this call's request, a random cut of the pattern */
	Example__EchoRequest req;
	size_t msg_len, att_len;
	uint64_t rng;
};

struct bench {
	struct app_runtime r;
	struct channel ch;
	Example__EchoRequest req; /* shared, read-only while calls run */
	char *message;
	struct bench_slot *slots;

	/* from the flags */
	int concurrency, payload, duration_s, timeout_ms, compress;
	int64_t rate;	   /* --rate: calls a second, 0: closed loop */
	int64_t period_ns; /* a slot's calls this far apart */
	bool json, verify, oneway;
	struct iobuf attachment; /* --oneway: the payload, shared by calls */
	const char *server, *conn_type, *transport;

	int64_t start_ns, end_ns; /* no call starts at or after end_ns */
	uint64_t ok, errors;	  /* atomic */
	uint64_t mismatches;	  /* atomic: --verify answers that differ */
	uint64_t elimit, timeouts; /* atomic: errors ELIMIT, ERPCTIMEDOUT */
	struct hist fail_hist;	   /* failed calls' latencies */
	int first_error;	  /* atomic: printed already */
	struct hist hist;

	pthread_mutex_t lock; /* guards the two below */
	pthread_cond_t idle;  /* CLOCK_MONOTONIC */
	int running;	      /* slots not ended */
	int64_t drained_ns;   /* when the last slot ended */
};

struct bench_result {
	/* RDMA handshakes that ended on RDMA, on TCP, or failed */
	uint64_t hs_rdma, hs_tcp, hs_failed;
	uint64_t calls, errors, mismatches, elimit, timeouts;
	double elapsed_s, qps, offered;
	uint64_t p50, p90, p99, p999, avg, fail_p99;
};

static void bench_from_flags(struct bench *b, const struct app_config *cfg)
{
	const struct flags *fl = &cfg->flags;

	b->concurrency = (int)flags_int(fl, "concurrency");
	b->payload = (int)flags_int(fl, "payload");
	b->duration_s = (int)flags_int(fl, "duration");
	b->timeout_ms = (int)flags_int(fl, "timeout_ms");
	b->rate = flags_int(fl, "rate");
	b->compress = app_compress_type(cfg);
	b->json = app_flag_true(fl, "json");
	b->verify = flags_bool(fl, "verify");
	b->oneway = flags_bool(fl, "oneway");
	b->server = flags_str(fl, "server");
	b->conn_type = flags_str(fl, "connection_type");
	/* TLS rides on TCP: the label says so (never with RDMA). */
	b->transport = flags_bool(fl, "tls") ? "tls" : flags_str(fl, "transport");
}

/* The shared request and the slots.  0 or -ENOMEM. */
static int bench_alloc(struct bench *b)
{
	Example__EchoRequest init = EXAMPLE__ECHO_REQUEST__INIT;

	b->message = mem_alloc(NULL, (size_t)b->payload + 1);
	b->slots = mem_zalloc(NULL, (size_t)b->concurrency *
					sizeof(struct bench_slot));
	if (!b->message || !b->slots) {
		mem_free(NULL, b->message);
		mem_free(NULL, b->slots);
		return -ENOMEM;
	}
	/* A pattern with no period of a block's size: a byte in the wrong
	 * place shows. */
	for (int i = 0; i < b->payload; i++)
		b->message[i] = (char)('a' + (i * 7 + i / 8160) % 26);
	b->message[b->payload] = '\0';
	b->req = init;
	b->req.message = b->oneway ? "" : b->message;
	return 0;
}

static void bench_free(struct bench *b)
{
	mem_free(NULL, b->slots);
	mem_free(NULL, b->message);
}

static int bench_sync_init(struct bench *b)
{
	pthread_condattr_t ca;
	int err;

	err = pthread_mutex_init(&b->lock, NULL);
	if (err)
		return -err;
	err = pthread_condattr_init(&ca);
	if (!err) {
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		err = pthread_cond_init(&b->idle, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (err)
		pthread_mutex_destroy(&b->lock);
	return -err;
}

static void bench_sync_destroy(struct bench *b)
{
	pthread_cond_destroy(&b->idle);
	pthread_mutex_destroy(&b->lock);
}

/* xorshift64: per slot, no lock. */
static uint64_t rng_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void bench_done(struct rpc_call *c, void *arg);

/* Starts the slot's next call.  Always completes through bench_done():
 * a call that cannot start still runs its done (channel.h). */
static void bench_issue(struct bench_slot *s)
{
	struct rpc_call *c = &s->call;
	struct bench *b = s->b;

	const Example__EchoRequest *req = &b->req;

	/* Deadline and retries: the channel's (rpc_call_init's default). */
	c->compress_type = b->compress;
	/* Its blocks shared, not copied: as brpc sends an attachment. */
	if (b->oneway && iobuf_share(&c->request_attachment, &b->attachment, 0,
				     iobuf_len(&b->attachment)))
		iobuf_reset(&c->request_attachment); /* counted short below */
	if (b->verify) {
		/* Sizes 0..payload, message and attachment apart: the tail
		 * of the pattern (a C string), and its head. */
		s->msg_len =
		    (size_t)(rng_next(&s->rng) % ((uint64_t)b->payload + 1));
		s->att_len =
		    (size_t)(rng_next(&s->rng) % ((uint64_t)b->payload + 1));
		s->req = b->req;
		s->req.message = b->message + (b->payload - (int)s->msg_len);
		req = &s->req;
		if (iobuf_append(&c->request_attachment, b->message,
				 s->att_len)) {
			s->att_len = 0;
			iobuf_reset(&c->request_attachment);
		}
	}
	channel_call(&b->ch, &example__echo_service__descriptor,
		     APP_ECHO_METHOD, &req->base, c, bench_done, s);
}

/* --verify: the echo must give back exactly what was sent. */
static bool answer_matches(const struct bench_slot *s, const struct rpc_call *c,
			   char *why, size_t size)
{
	const Example__EchoResponse *resp =
	    (const Example__EchoResponse *)c->response;
	const char *want = s->req.message;
	uint8_t buf[4096];
	size_t off = 0, n;

	if (!resp || !resp->message || strlen(resp->message) != s->msg_len ||
	    memcmp(resp->message, want, s->msg_len)) {
		snprintf(why, size,
			 "message of %zu bytes came back as %zu "
			 "bytes%s",
			 s->msg_len,
			 resp && resp->message ? strlen(resp->message) : 0,
			 resp && resp->message &&
				 strlen(resp->message) == s->msg_len
			     ? " with other content"
			     : "");
		return false;
	}
	if (iobuf_len(&c->response_attachment) != s->att_len) {
		snprintf(why, size, "attachment of %zu bytes came back as %zu",
			 s->att_len, iobuf_len(&c->response_attachment));
		return false;
	}
	while (off < s->att_len) {
		n = iobuf_copy_out(&c->response_attachment, off, buf,
				   sizeof(buf));
		if (memcmp(buf, s->b->message + off, n)) {
			snprintf(why, size,
				 "attachment differs within bytes "
				 "%zu..%zu of %zu",
				 off, off + n, s->att_len);
			return false;
		}
		off += n;
	}
	return true;
}

static void bench_record(struct bench_slot *s, const struct rpc_call *c)
{
	struct bench *b = s->b;
	int code = c->error_code;
	bool wrong = false;
	char why[160];

	if (!code && b->oneway &&
	    (iobuf_len(&c->request_attachment) != (size_t)b->payload ||
	     iobuf_len(&c->response_attachment))) {
		snprintf(why, sizeof(why),
			 "%zu of %d bytes sent, %zu came back (--oneway wants "
			 "an empty answer: echo --discard=true)",
			 iobuf_len(&c->request_attachment), b->payload,
			 iobuf_len(&c->response_attachment));
		wrong = true;
	}
	if (!code && !wrong && b->verify)
		wrong = !answer_matches(s, c, why, sizeof(why));
	if (wrong) {
		__atomic_fetch_add(&b->errors, 1, __ATOMIC_RELAXED);
		if (!__atomic_fetch_add(&b->mismatches, 1, __ATOMIC_RELAXED))
			fprintf(stderr, WHO ": first wrong answer: %s\n", why);
		return;
	}
	if (!code) {
		hist_add(&b->hist, c->latency_us);
		__atomic_fetch_add(&b->ok, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_fetch_add(&b->errors, 1, __ATOMIC_RELAXED);
	if (code == RPC_ELIMIT)
		__atomic_fetch_add(&b->elimit, 1, __ATOMIC_RELAXED);
	else if (code == RPC_ERPCTIMEDOUT)
		__atomic_fetch_add(&b->timeouts, 1, __ATOMIC_RELAXED);
	hist_add(&b->fail_hist, c->latency_us);
	if (!__atomic_exchange_n(&b->first_error, 1, __ATOMIC_RELAXED))
		fprintf(stderr, WHO ": first error %d (%s): %s\n", code,
			app_error_name(code),
			c->error_text ? c->error_text : "");
}

static void bench_slot_end(struct bench_slot *s)
{
	struct bench *b = s->b;

	__atomic_store_n(&s->ended, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&b->lock);
	if (--b->running == 0) {
		b->drained_ns = clock_mono_ns();
		pthread_cond_broadcast(&b->idle);
	}
	pthread_mutex_unlock(&b->lock);
}

/* rpc_done_fn, on the channel's loop thread (done_inline: it never
 * blocks, and the next call goes out without a thread hand-off). */
/* --rate: the slot's timer is due: its next call, or its end. */
static void pace_due(struct loop_timer *t)
{
	struct bench_slot *s = container_of(t, struct bench_slot, timer);

	if (s->next_ns >= s->b->end_ns)
		bench_slot_end(s);
	else
		bench_issue(s);
}

/* On the slot's loop: wait for next_ns (timers are their loop's). */
static void pace_wait(struct task *t)
{
	struct bench_slot *s = container_of(t, struct bench_slot, wait_task);

	loop_timer_start(s->loop, &s->timer, s->next_ns, pace_due);
}

/*
 * --rate: slot i starts its calls at start + i * period / N, then every
 * period (N slots, period = N / rate): the calls a second stay `rate`
 * whatever the answers' latency, as long as a slot is free when its
 * turn comes (a late slot starts at once and does not catch up).
 */
static void pace_next(struct bench_slot *s)
{
	struct bench *b = s->b;
	int64_t now = clock_mono_ns();

	s->next_ns += b->period_ns;
	if (s->next_ns < now)
		s->next_ns = now;
	if (s->next_ns >= b->end_ns) {
		bench_slot_end(s);
		return;
	}
	loop_post(s->loop, &s->wait_task);
}

static void bench_done(struct rpc_call *c, void *arg)
{
	struct bench_slot *s = arg;

	bench_record(s, c);
	if (clock_mono_ns() >= s->b->end_ns) {
		bench_slot_end(s);
		return;
	}
	rpc_call_reset(c);
	if (s->b->rate)
		pace_next(s);
	else
		bench_issue(s);
}

static void bench_start(struct bench *b)
{
	b->running = b->concurrency;
	b->start_ns = clock_mono_ns();
	b->end_ns = b->start_ns + (int64_t)b->duration_s * CLOCK_NS_PER_S;
	b->period_ns = b->rate ? (int64_t)b->concurrency * CLOCK_NS_PER_S /
				     b->rate
			       : 0;
	for (int i = 0; i < b->concurrency; i++) {
		struct bench_slot *s = &b->slots[i];

		s->b = b;
		s->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		rpc_call_init(&s->call, &b->r.pool);
		s->loop = rt_loop_for(&b->r.rt, (unsigned)i);
		loop_timer_init(&s->timer);
		task_init(&s->wait_task, pace_wait);
		s->next_ns = b->start_ns + b->period_ns * i / b->concurrency;
	}
	for (int i = 0; i < b->concurrency; i++) {
		if (b->rate)
			loop_post(b->slots[i].loop, &b->slots[i].wait_task);
		else
			bench_issue(&b->slots[i]);
	}
}

static void sleep_until(int64_t mono_ns)
{
	struct timespec ts = {
	    .tv_sec = mono_ns / CLOCK_NS_PER_S,
	    .tv_nsec = mono_ns % CLOCK_NS_PER_S,
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

/* Sleeps through the duration, with a line a second unless --json; with
 * RDMA, the line counts the handshakes that ended on RDMA so far. */
static void bench_progress(struct bench *b)
{
	uint64_t ok, errors, prev = 0;
	struct rdt_stats st;
	char rdma[48];

	for (int sec = 1; sec <= b->duration_s; sec++) {
		sleep_until(b->start_ns + (int64_t)sec * CLOCK_NS_PER_S);
		if (b->json)
			continue;
		ok = __atomic_load_n(&b->ok, __ATOMIC_RELAXED);
		errors = __atomic_load_n(&b->errors, __ATOMIC_RELAXED);
		rdma[0] = '\0';
		if (b->r.rdma) {
			rdt_stats(b->r.rdma, &st);
			snprintf(rdma, sizeof(rdma), ", %llu RDMA handshakes",
				 (unsigned long long)st.hs_rdma);
		}
		fprintf(stderr,
			WHO ": %d/%ds %llu calls/s, %llu calls, %llu "
			    "errors%s\n",
			sec, b->duration_s, (unsigned long long)(ok - prev),
			(unsigned long long)ok, (unsigned long long)errors,
			rdma);
		prev = ok;
	}
}

/* Waits until every slot has ended or `deadline_ns` passed (-1: no
 * limit); true when all have. */
static bool bench_wait_idle(struct bench *b, int64_t deadline_ns)
{
	struct timespec ts = {
	    .tv_sec = deadline_ns / CLOCK_NS_PER_S,
	    .tv_nsec = deadline_ns % CLOCK_NS_PER_S,
	};
	bool idle;

	pthread_mutex_lock(&b->lock);
	while (b->running > 0) {
		if (deadline_ns < 0)
			pthread_cond_wait(&b->idle, &b->lock);
		else if (pthread_cond_timedwait(&b->idle, &b->lock, &ts) ==
			 ETIMEDOUT)
			break;
	}
	idle = b->running == 0;
	pthread_mutex_unlock(&b->lock);
	return idle;
}

/*
 * Every call must end before the channel goes.  Calls end by their
 * deadline; past it (and the slack) the stragglers are cancelled, which
 * ends them at once.  No slot starts a call this late (bench_done stops
 * at end_ns, seconds earlier), so cancel does not race a restart.
 */
static void bench_drain(struct bench *b)
{
	int64_t wait_ms =
	    BENCH_DRAIN_SLACK_MS + (b->timeout_ms > 0 ? b->timeout_ms : 0);
	int left = 0;

	if (bench_wait_idle(b, b->end_ns + wait_ms * CLOCK_NS_PER_MS))
		return;
	for (int i = 0; i < b->concurrency; i++) {
		if (__atomic_load_n(&b->slots[i].ended, __ATOMIC_ACQUIRE))
			continue;
		rpc_call_cancel(&b->slots[i].call);
		left++;
	}
	fprintf(stderr,
		WHO ": cancelled %d calls still out %lld ms after "
		    "the end\n",
		left, (long long)wait_ms);
	bench_wait_idle(b, -1);
}

static void bench_result(const struct bench *b, struct bench_result *res)
{
	const struct hist *h = &b->hist;
	int64_t ns = b->drained_ns - b->start_ns;

	res->calls = b->ok;
	res->errors = b->errors;
	res->mismatches = b->mismatches;
	res->elapsed_s = ns > 0 ? (double)ns / CLOCK_NS_PER_S : 1e-9;
	res->qps = (double)res->calls / res->elapsed_s;
	res->p50 = hist_quantile(h, 5000);
	res->p90 = hist_quantile(h, 9000);
	res->p99 = hist_quantile(h, 9900);
	res->p999 = hist_quantile(h, 9990);
	res->avg = h->count ? h->sum_us / h->count : 0;
	res->elimit = b->elimit;
	res->timeouts = b->timeouts;
	res->fail_p99 = hist_quantile(&b->fail_hist, 9900);
	res->offered = (double)(b->ok + b->errors) / res->elapsed_s;
}

static void bench_print_json(const struct bench *b,
			     const struct bench_result *res)
{
	printf("{\"qps\":%.1f,\"calls\":%llu,\"errors\":%llu,\"p50_us\":%llu,"
	       "\"p90_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,"
	       "\"avg_us\":%llu,\"concurrency\":%d,\"payload\":%d,"
	       "\"duration_s\":%d,\"connection_type\":\"%s\","
	       "\"transport\":\"%s\",\"rdma_handshakes\":%llu,"
	       "\"rdma_fallbacks\":%llu,\"rdma_failures\":%llu,"
	       "\"verify\":%s,\"mismatches\":%llu,\"oneway\":%s,"
	       "\"rate\":%lld,\"offered_qps\":%.1f,\"elimit\":%llu,"
	       "\"timeouts\":%llu,\"fail_p99_us\":%llu}\n",
	       res->qps, (unsigned long long)res->calls,
	       (unsigned long long)res->errors, (unsigned long long)res->p50,
	       (unsigned long long)res->p90, (unsigned long long)res->p99,
	       (unsigned long long)res->p999, (unsigned long long)res->avg,
	       b->concurrency, b->payload, b->duration_s, b->conn_type,
	       b->transport, (unsigned long long)res->hs_rdma,
	       (unsigned long long)res->hs_tcp,
	       (unsigned long long)res->hs_failed, b->verify ? "true" : "false",
	       (unsigned long long)res->mismatches,
	       b->oneway ? "true" : "false", (long long)b->rate, res->offered,
	       (unsigned long long)res->elimit,
	       (unsigned long long)res->timeouts,
	       (unsigned long long)res->fail_p99);
}

static void bench_print_text(const struct bench *b,
			     const struct bench_result *res)
{
	printf(WHO ": %s, concurrency %d, payload %d B, %s connection, "
		   "compress %s, %s, %d s\n",
	       b->server, b->concurrency, b->payload, b->conn_type,
	       compress_type_name(b->compress), b->transport, b->duration_s);
	if (!strcmp(b->transport, "rdma"))
		printf("  rdma handshakes: %llu on RDMA, %llu fell back to "
		       "TCP, %llu failed\n",
		       (unsigned long long)res->hs_rdma,
		       (unsigned long long)res->hs_tcp,
		       (unsigned long long)res->hs_failed);
	if (b->verify)
		printf("  verified: message and attachment of 0..%d B each, "
		       "%llu answers differed\n",
		       b->payload, (unsigned long long)res->mismatches);
	printf("  %llu calls, %llu errors in %.3f s: %.0f calls/s\n",
	       (unsigned long long)res->calls, (unsigned long long)res->errors,
	       res->elapsed_s, res->qps);
	printf("  latency us: avg %llu  p50 %llu  p90 %llu  p99 %llu  "
	       "p99.9 %llu\n",
	       (unsigned long long)res->avg, (unsigned long long)res->p50,
	       (unsigned long long)res->p90, (unsigned long long)res->p99,
	       (unsigned long long)res->p999);
}

/*
 * --wait_ms: one call, repeated while the server is not up yet, before
 * the load starts (a server started at the same time, in a VM).  0, or
 * -1 with the error printed.
 */
static int bench_wait_server(struct bench *b, const struct app_config *cfg)
{
	int64_t wait_ms = flags_int(&cfg->flags, "wait_ms");
	int64_t give_up = clock_mono_ns() + wait_ms * CLOCK_NS_PER_MS;
	struct rpc_call c;
	int code;

	if (wait_ms <= 0)
		return 0;
	for (;;) {
		rpc_call_init(&c, &b->r.pool);
		code =
		    channel_call(&b->ch, &example__echo_service__descriptor,
				 APP_ECHO_METHOD, &b->req.base, &c, NULL, NULL);
		if (!code || !app_not_up_yet(code) ||
		    clock_mono_ns() >= give_up)
			break;
		rpc_call_destroy(&c);
		usleep(100 * 1000);
	}
	if (code)
		fprintf(stderr,
			WHO ": the server did not answer within "
			    "--wait_ms=%lld: error %d (%s): %s\n",
			(long long)wait_ms, code, app_error_name(code),
			c.error_text ? c.error_text : "");
	rpc_call_destroy(&c);
	return code ? -1 : 0;
}

/* Runtime, channel, the load, teardown.  An exit status. */
static int bench_run(struct bench *b, const struct app_config *cfg)
{
	struct bench_result res = {0};

	if (app_runtime_start(&b->r, cfg, WHO))
		return APP_EXIT_FAILURE;
	iobuf_init(&b->attachment, &b->r.pool);
	if (b->oneway &&
	    iobuf_append(&b->attachment, b->message, (size_t)b->payload)) {
		fprintf(stderr, WHO ": no memory for a %d-byte attachment\n",
			b->payload);
		app_runtime_stop(&b->r);
		return APP_EXIT_FAILURE;
	}
	if (app_channel_open(&b->ch, &b->r, cfg, (unsigned)b->concurrency,
			     true)) {
		iobuf_destroy(&b->attachment);
		app_runtime_stop(&b->r);
		return APP_EXIT_FAILURE;
	}
	if (bench_wait_server(b, cfg)) {
		channel_destroy(&b->ch);
		iobuf_destroy(&b->attachment);
		app_runtime_stop(&b->r);
		return APP_EXIT_FAILURE;
	}
	bench_start(b);
	bench_progress(b);
	bench_drain(b);
	for (int i = 0; i < b->concurrency; i++)
		rpc_call_destroy(&b->slots[i].call);
	channel_destroy(&b->ch);
	bench_result(b, &res);
	if (b->r.rdma) {
		struct rdt_stats st;

		rdt_stats(b->r.rdma, &st);
		res.hs_rdma = st.hs_rdma;
		res.hs_tcp = st.hs_tcp;
		res.hs_failed = st.hs_failed;
	}
	iobuf_destroy(&b->attachment);
	app_runtime_stop(&b->r);

	if (b->json)
		bench_print_json(b, &res);
	else
		bench_print_text(b, &res);
	fflush(stdout);
	return res.calls > 0 ? APP_EXIT_OK : APP_EXIT_FAILURE;
}

int app_cmd_bench(struct app_config *cfg)
{
	struct bench b = {0}; /* some 13 KiB, the histogram most */
	int status, err;

	if (!app_require_server(cfg, WHO))
		return APP_EXIT_CONFIG;
	bench_from_flags(&b, cfg);
	if (b.oneway && b.verify) {
		fprintf(stderr,
			WHO ": --oneway and --verify do not go together "
			    "(--oneway expects an empty answer)\n");
		return APP_EXIT_CONFIG;
	}
	if (bench_alloc(&b)) {
		fprintf(stderr,
			WHO ": out of memory for %d calls of %d "
			    "bytes\n",
			b.concurrency, b.payload);
		return APP_EXIT_FAILURE;
	}
	err = bench_sync_init(&b);
	if (err) {
		fprintf(stderr, WHO ": %s\n", strerror(-err));
		bench_free(&b);
		return APP_EXIT_FAILURE;
	}
	status = bench_run(&b, cfg);
	bench_sync_destroy(&b);
	bench_free(&b);
	return status;
}
