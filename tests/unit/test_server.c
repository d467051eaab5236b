/*
 * test_server: the server (net/rpc/server.h) on the wire, serving the echo
 * service over real loopback TCP to plain blocking sockets:
 *
 *   - every recorded brpc exchange in ../shared/vectors/baidu_std, written
 *     whole and one byte at a time, answered as brpc answered it (meta
 *     fields, exact error texts, decoded messages, attachments);
 *   - bytes of no known protocol, bodies over max_body_size: closed, no
 *     answer, no wait for the body;
 *   - brpc's other request checks (attachment_size, EREQUEST sizes) and
 *     many pipelining connections.
 *
 * The server's controls (limits, authentication, stop, checksums,
 * lookup) are in test_server_control.c; the fixture in server_test.h.
 */
#include "server_test.h"

/* ---- 1, 2: brpc's recorded exchanges -------------------------------- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Every NAME of NAME.c2s in the vectors folder, each with its NAME.s2c. */
static int vec_names(char names[][VEC_NAME_MAX], int max)
{
	char dir[4096], path[4200];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/baidu_std", test_vectors_dir());
	d = opendir(dir);
	if (!d)
		fail_msg("cannot list %s: %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (len <= 4 || strcmp(e->d_name + len - 4, ".c2s"))
			continue;
		assert_true(len - 4 < VEC_NAME_MAX);
		assert_true(n < max);
		memcpy(names[n], e->d_name, len - 4);
		names[n][len - 4] = '\0';
		snprintf(path, sizeof(path), "%s/%s.s2c", dir, names[n]);
		if (access(path, R_OK))
			fail_msg("%s.c2s has no readable .s2c: %s", names[n],
				 strerror(errno));
		n++;
	}
	closedir(d);
	qsort(names, (size_t)n, VEC_NAME_MAX, name_cmp);
	return n;
}

/* One answer against brpc's: meta, text, attachment, decoded message. */
static void frame_compare(struct fx *fx, const char *name,
			  const struct baidu_frame *w,
			  const struct baidu_frame *g)
{
	const struct baidu_meta *wm = &w->meta, *gm = &g->meta;
	uint64_t cid = wm->correlation_id;
	char what[128];

	if (!gm->has_response)
		fail_msg("%s: cid %" PRIu64 ": no response meta", name, cid);
	if (gm->error_code != wm->error_code)
		fail_msg("%s: cid %" PRIu64 ": error_code %d \"%s\", want %d "
			 "\"%s\"",
			 name, cid, gm->error_code, gm->error_text,
			 wm->error_code, wm->error_text);
	if (strcmp(gm->error_text, wm->error_text))
		fail_msg("%s: cid %" PRIu64 ": error_text\n  \"%s\", want\n  "
			 "\"%s\"",
			 name, cid, gm->error_text, wm->error_text);
	if (gm->compress_type != wm->compress_type)
		fail_msg("%s: cid %" PRIu64 ": compress_type %d, want %d", name,
			 cid, gm->compress_type, wm->compress_type);
	if (iobuf_len(&g->attachment) != iobuf_len(&w->attachment))
		fail_msg("%s: cid %" PRIu64 ": attachment of %zu bytes, want "
			 "%zu",
			 name, cid, iobuf_len(&g->attachment),
			 iobuf_len(&w->attachment));
	if (iobuf_len(&w->attachment)) {
		uint8_t *tmp = malloc(iobuf_len(&w->attachment));

		assert_non_null(tmp);
		iobuf_copy_out(&w->attachment, 0, tmp,
			       iobuf_len(&w->attachment));
		snprintf(what, sizeof(what), "%s: attachment", name);
		iobuf_equal_bytes(&g->attachment, tmp,
				  iobuf_len(&w->attachment), what);
		free(tmp);
	}
	if (iobuf_len(&w->data) == 0) {
		if (iobuf_len(&g->data))
			fail_msg("%s: cid %" PRIu64 ": %zu message bytes, want "
				 "none",
				 name, cid, iobuf_len(&g->data));
	} else {
		char *want = answer_message(fx, w, name);
		char *got = answer_message(fx, g, name);

		if (strcmp(got, want))
			fail_msg("%s: cid %" PRIu64 ": message \"%s\", want "
				 "\"%s\"",
				 name, cid, got, want);
		free(want);
		free(got);
	}
}

/*
 * Writes NAME.c2s on a new connection (whole, or one byte at a time with
 * TCP_NODELAY and pauses) and checks the answers against NAME.s2c: the
 * same frames, matched by correlation_id, then nothing more (the client
 * half-closes and the server must close without another byte).  An empty
 * .s2c: the server closes without a byte.
 */
static void run_vector(struct fx *fx, const char *name, bool bytewise)
{
	struct baidu_frame want[VEC_FRAMES_MAX], got[VEC_FRAMES_MAX];
	bool used[VEC_FRAMES_MAX] = {false};
	uint8_t *c2s, *s2c;
	size_t c2s_len, s2c_len;
	char file[VEC_NAME_MAX + 8], what[VEC_NAME_MAX + 32];
	struct iobuf exp;
	struct cli c;
	int nwant = 0, r, err;

	snprintf(what, sizeof(what), "%s%s", name,
		 bytewise ? " (bytewise)" : "");
	snprintf(file, sizeof(file), "%s.c2s", name);
	c2s = test_vector_read(file, &c2s_len);
	snprintf(file, sizeof(file), "%s.s2c", name);
	s2c = test_vector_read(file, &s2c_len);
	iobuf_init(&exp, &fx->pool);
	assert_int_equal(iobuf_append(&exp, s2c, s2c_len), 0);
	while (iobuf_len(&exp)) {
		assert_true(nwant < VEC_FRAMES_MAX);
		r = baidu_parse(&exp, &want[nwant], NULL);
		if (r <= 0)
			fail_msg("%s.s2c: frame %d does not parse: %d", name,
				 nwant, r);
		nwant++;
	}

	cli_open(&c, fx);
	if (!bytewise) {
		err = cli_send(&c, c2s, c2s_len);
		/* The server may close before all of a bad stream is in. */
		if (err &&
		    !(nwant == 0 && (err == -EPIPE || err == -ECONNRESET)))
			fail_msg("%s: send: %s", what, strerror(-err));
	} else {
		for (size_t i = 0; i < c2s_len; i++) {
			err = cli_send(&c, c2s + i, 1);
			if (err && nwant == 0 &&
			    (err == -EPIPE || err == -ECONNRESET))
				break;
			if (err)
				fail_msg("%s: send byte %zu: %s", what, i,
					 strerror(-err));
			usleep(i % 8 == 7 ? 2000 : 100);
		}
	}

	if (nwant == 0) {
		cli_expect_closed(&c, what);
	} else {
		for (int i = 0; i < nwant; i++)
			cli_frame(&c, &got[i], what);
		/* Answers may come in any order: match by correlation_id. */
		for (int i = 0; i < nwant; i++) {
			int j;

			for (j = 0; j < nwant; j++)
				if (!used[j] && got[j].meta.correlation_id ==
						    want[i].meta.correlation_id)
					break;
			if (j == nwant)
				fail_msg("%s: no answer to cid %" PRIu64, what,
					 want[i].meta.correlation_id);
			used[j] = true;
			frame_compare(fx, what, &want[i], &got[j]);
		}
		assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
		cli_expect_closed(&c, what);
		release_all(got, nwant);
	}
	release_all(want, nwant);
	cli_close(&c);
	iobuf_destroy(&exp);
	free(c2s);
	free(s2c);
}

static void vectors_all(bool on_workers, bool bytewise)
{
	static char names[VEC_MAX][VEC_NAME_MAX];
	struct fx_cfg cfg = {.on_workers = on_workers};
	struct fx *fx = fx_up(&cfg);
	int n = vec_names(names, VEC_MAX);

	/* The README lists 15 cases; fewer means a broken folder. */
	if (n < 15)
		fail_msg("only %d vector pairs found", n);
	for (int i = 0; i < n; i++)
		run_vector(fx, names[i], bytewise);
	fx_down(fx);
}

/* 1. Every recorded exchange, inline handler. */
static void test_vectors(void **state)
{
	vectors_all(false, false);
}

/* 1b. The same with the handler on task workers. */
static void test_vectors_on_workers(void **state)
{
	vectors_all(true, false);
}

/* 2. Every recorded exchange delivered one byte at a time. */
static void test_vectors_bytewise(void **state)
{
	vectors_all(false, true);
}

/* ---- 3: protocol detection ------------------------------------------ */

/* Bytes of no protocol: closed, no answer, counted in closed_bad. */
static void test_unknown_protocol(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct server_stats before, after;
	struct cli c;

	server_stats(&fx->srv, &before);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, "QQQQ1234", 8), 0);
	cli_expect_closed(&c, "QQQQ1234");
	cli_close(&c);
	server_stats(&fx->srv, &after);
	assert_int_equal(after.closed_bad, before.closed_bad + 1);
	assert_int_equal(after.calls, before.calls);
	assert_true(log_has(fx, "unknown protocol"));
	fx_down(fx);
}

/* Fewer than 4 bytes, all of the magic: wait; the rest decides. */
static void test_partial_magic_waits(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct req r = {.cid = 7, .message = "late"};
	struct server_stats st;
	struct baidu_frame f;
	struct iobuf out;
	uint8_t *flat;
	size_t n;
	struct cli c;

	/* "PRP" then the rest of a valid request: answered. */
	iobuf_init(&out, &fx->pool);
	req_pack(fx, &out, &r);
	n = iobuf_len(&out);
	flat = malloc(n);
	assert_non_null(flat);
	iobuf_copy_out(&out, 0, flat, n);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, flat, 3), 0);
	cli_expect_quiet(&c, 200, "PRP");
	assert_int_equal(cli_send(&c, flat + 3, n - 3), 0);
	cli_frame(&c, &f, "PRP + rest");
	expect_ok(fx, &f, 7, "late", NULL);
	baidu_frame_release(&f);
	cli_close(&c);

	/* "PR" then "X": closed. */
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, "PR", 2), 0);
	cli_expect_quiet(&c, 200, "PR");
	assert_int_equal(cli_send(&c, "X", 1), 0);
	cli_expect_closed(&c, "PRX");
	cli_close(&c);
	server_stats(&fx->srv, &st);
	assert_int_equal(st.closed_bad, 1);

	free(flat);
	iobuf_destroy(&out);
	fx_down(fx);
}

/* ---- 4: max_body_size ------------------------------------------------ */

#define SMALL_BODY 1024

/* body_size == max_body_size is allowed (brpc closes only above it). */
static void test_body_at_limit_served(void **state)
{
	struct fx_cfg cfg = {.max_body_size = SMALL_BODY};
	struct fx *fx = fx_up(&cfg);
	char *msg = malloc(SMALL_BODY + 1);
	struct baidu_frame f;
	struct iobuf out;
	struct cli c;
	size_t len;

	assert_non_null(msg);
	/* Find the message length that makes body_size exactly the limit. */
	iobuf_init(&out, &fx->pool);
	for (len = SMALL_BODY - 64; len < SMALL_BODY; len++) {
		struct req r = {.cid = 1, .message = msg};

		memset(msg, 'a', len);
		msg[len] = '\0';
		iobuf_reset(&out);
		req_pack(fx, &out, &r);
		if (iobuf_len(&out) - BAIDU_HEADER_LEN == SMALL_BODY)
			break;
	}
	assert_int_equal(iobuf_len(&out) - BAIDU_HEADER_LEN, SMALL_BODY);
	cli_open(&c, fx);
	cli_send_buf(&c, &out);
	cli_frame(&c, &f, "body at the limit");
	expect_ok(fx, &f, 1, msg, NULL);
	baidu_frame_release(&f);
	cli_close(&c);
	iobuf_destroy(&out);
	free(msg);
	fx_down(fx);
}

/* body_size over the limit: closed on the header alone, no answer. */
static void test_oversize_closed_without_body(void **state)
{
	struct fx_cfg cfg = {.max_body_size = SMALL_BODY};
	struct fx *fx = fx_up(&cfg);
	uint8_t hdr[BAIDU_HEADER_LEN] = {'P', 'R', 'P', 'C'};
	struct server_stats before, after;
	struct cli c;
	int64_t t0;

	put32(hdr + 4, SMALL_BODY + 1);
	put32(hdr + 8, 20);
	server_stats(&fx->srv, &before);
	cli_open(&c, fx);
	t0 = now_ms();
	/* Only the header: a server waiting for the body would time out. */
	assert_int_equal(cli_send(&c, hdr, sizeof(hdr)), 0);
	cli_expect_closed(&c, "body_size over max_body_size");
	assert_true(now_ms() - t0 < RECV_TIMEOUT_S * 1000);
	cli_close(&c);
	server_stats(&fx->srv, &after);
	assert_int_equal(after.closed_bad, before.closed_bad + 1);
	assert_int_equal(after.calls, before.calls);

	/* A huge one on a fresh connection: the same. */
	put32(hdr + 4, 0xfffffff0u);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, hdr, sizeof(hdr)), 0);
	cli_expect_closed(&c, "body_size 0xfffffff0");
	cli_close(&c);
	fx_down(fx);
}

/* ---- brpc's other request checks ------------------------------------- */

/*
 * attachment_size larger than the data: EREQUEST, and the connection
 * stays in sync (the next request is served).
 */
static void test_bad_attachment_size(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	/* Hand-made: meta {request{service, method}, correlation_id 5,
	 * attachment_size 9} and 3 data bytes. */
	static const uint8_t meta[] = {
	    0x0a, 0x1b, 0x0a, 0x13, 'e', 'x', 'a', 'm',	 'p',  'l',  'e',
	    '.',  'E',	'c',  'h',  'o', 'S', 'e', 'r',	 'v',  'i',  'c',
	    'e',  0x12, 0x04, 'E',  'c', 'h', 'o', 0x20, 0x05, 0x28, 0x09,
	};
	uint8_t frame[BAIDU_HEADER_LEN + sizeof(meta) + 3] = {'P', 'R', 'P',
							      'C'};
	struct req next = {.cid = 6, .message = "still in sync"};
	struct baidu_frame f;
	struct cli c;

	put32(frame + 4, sizeof(meta) + 3);
	put32(frame + 8, sizeof(meta));
	memcpy(frame + BAIDU_HEADER_LEN, meta, sizeof(meta));
	memcpy(frame + BAIDU_HEADER_LEN + sizeof(meta), "abc", 3);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, frame, sizeof(frame)), 0);
	cli_frame(&c, &f, "attachment_size > data");
	expect_err(&f, 5, RPC_EREQUEST,
		   SRV "[E1003]attachment_size=9 is larger than "
		       "request_size=3");
	baidu_frame_release(&f);
	cli_call(&c, fx, &next, &f, "after a bad attachment_size");
	expect_ok(fx, &f, 6, "still in sync", NULL);
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/*
 * EREQUEST's request_size is the whole payload, attachment included:
 * brpc takes msg->payload.size() before cutting the attachment off.
 */
static void test_erequest_size_counts_attachment(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	static const uint8_t junk[] = {0xff, 0xff, 0xff};
	struct req r = {.cid = 8,
			.raw = junk,
			.raw_len = sizeof(junk),
			.attachment = "xyz"};
	struct baidu_frame f;
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &r, &f, "bad body with an attachment");
	expect_err(&f, 8, RPC_EREQUEST,
		   SRV "[E1003]Fail to parse request=example.EchoRequest, "
		       "ContentType=pb, CompressType=none, "
		       "ChecksumType=none, request_size=6");
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/*
 * A key padded to two bytes that reads as field 0 (0x81 0x00): protobuf-c
 * alone would take it as an unknown field; protobuf's C++ parser, brpc's,
 * refuses the message, and so do we: EREQUEST.
 */
static void test_erequest_field_zero(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	/* field 0 as a fixed64, then message = "hi" */
	static const uint8_t body[] = {0x81, 0x00, 1, 2,    3,	  4,   5,
				       6,    7,	   8, 0x0a, 0x02, 'h', 'i'};
	struct req r = {.cid = 9, .raw = body, .raw_len = sizeof(body)};
	struct baidu_frame f;
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &r, &f, "a body holding field 0");
	expect_err(&f, 9, RPC_EREQUEST,
		   SRV "[E1003]Fail to parse request=example.EchoRequest, "
		       "ContentType=pb, CompressType=none, "
		       "ChecksumType=none, request_size=14");
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/* Many connections, many pipelined calls, answers all accounted. */
static void test_many_connections(void **state)
{
	enum { NCONN = 8, PER = 20 };
	struct fx_cfg cfg = {.on_workers = true};
	struct fx *fx = fx_up(&cfg);
	struct cli c[NCONN];
	struct req r[PER];
	char msgs[PER][32];
	struct baidu_frame f[PER];
	struct server_stats st;

	for (int k = 0; k < NCONN; k++)
		cli_open(&c[k], fx);
	for (int k = 0; k < NCONN; k++) {
		for (int i = 0; i < PER; i++) {
			snprintf(msgs[i], sizeof(msgs[i]), "c%d-m%d", k, i);
			r[i] = (struct req){.cid = (uint64_t)k << 32 | i,
					    .message = msgs[i],
					    .compress = i % 4};
		}
		cli_send_reqs(&c[k], fx, r, PER);
	}
	for (int k = 0; k < NCONN; k++) {
		for (int i = 0; i < PER; i++)
			cli_frame(&c[k], &f[i], "many connections");
		for (int i = 0; i < PER; i++) {
			char want[32];
			uint64_t cid = (uint64_t)k << 32 | i;
			const struct baidu_frame *g = by_cid(f, PER, cid);

			snprintf(want, sizeof(want), "c%d-m%d", k, i);
			expect_ok(fx, g, cid, want, NULL);
			assert_int_equal(g->meta.compress_type, i % 4);
		}
		release_all(f, PER);
	}
	for (int k = 0; k < NCONN; k++)
		cli_close(&c[k]);
	settled_stats(fx, &st);
	assert_int_equal(st.calls, NCONN * PER);
	assert_int_equal(st.errors, 0);
	fx_down(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_SERVER(test_vectors),
	    TEST_SERVER(test_vectors_on_workers),
	    TEST_SERVER(test_vectors_bytewise),
	    TEST_SERVER(test_unknown_protocol),
	    TEST_SERVER(test_partial_magic_waits),
	    TEST_SERVER(test_body_at_limit_served),
	    TEST_SERVER(test_oversize_closed_without_body),
	    TEST_SERVER(test_bad_attachment_size),
	    TEST_SERVER(test_erequest_size_counts_attachment),
	    TEST_SERVER(test_erequest_field_zero),
	    TEST_SERVER(test_many_connections),
	};

	/* TEST_FILTER=test_auth* runs only the tests matching the pattern. */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests_name("server", tests, NULL, NULL);
}
