/*
 * etcd tests: the HTTP answer codec the etcd client reads with (status
 * line, framing, chunked bodies whole and byte by byte), and etcd's v3
 * gateway JSON: the requests' bodies, and answers recorded from etcd
 * 3.4.23 (Debian's etcd-server) on this machine: a range, the messages
 * of a watch stream (created, a PUT, a DELETE, canceled by compaction),
 * a lease grant and keepalive, and an error.  Instance values in both
 * forms.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fbuf.h"
#include "cluster/consul.h"
#include "cluster/etcd.h"
#include "cluster/etcd_msg.h"
#include "codec/http1.h"

#define TEST_TIMEOUT_S 60
#include "testutil.h"

/* ---- answers as etcd's gateway sent them ---------------------------- */

static const char watch_head[] =
    "HTTP/1.1 200 OK\r\n"
    "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
    "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
    "Access-Control-Allow-Origin: *\r\n"
    "Content-Type: application/json\r\n"
    "Grpc-Metadata-Content-Type: application/grpc\r\n"
    "Date: Mon, 07 Dec 2026 15:53:03 GMT\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n";

static const char msg_created[] =
    "{\"result\":{\"header\":{\"cluster_id\":\"324952591200643719\","
    "\"member_id\":\"3319814642761637952\",\"revision\":\"2\","
    "\"raft_term\":\"2\"},\"created\":true}}\n";
static const char msg_put[] =
    "{\"result\":{\"header\":{\"cluster_id\":\"324952591200643719\","
    "\"member_id\":\"3319814642761637952\",\"revision\":\"3\","
    "\"raft_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L3N2Yy9i\","
    "\"create_revision\":\"3\",\"mod_revision\":\"3\",\"version\":\"1\","
    "\"value\":\"eA==\"}}]}}\n";
static const char msg_delete[] =
    "{\"result\":{\"header\":{\"cluster_id\":\"324952591200643719\","
    "\"member_id\":\"3319814642761637952\",\"revision\":\"4\","
    "\"raft_term\":\"2\"},\"events\":[{\"type\":\"DELETE\",\"kv\":{"
    "\"key\":\"L3N2Yy9i\",\"mod_revision\":\"4\"}}]}}\n";
static const char msg_compacted[] =
    "{\"result\":{\"header\":{\"cluster_id\":\"324952591200643719\","
    "\"member_id\":\"3319814642761637952\",\"raft_term\":\"2\"},"
    "\"canceled\":true,\"compact_revision\":\"4\"}}\n";
static const char ans_range[] =
    "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":"
    "\"3319814642761637952\",\"revision\":\"2\",\"raft_term\":\"2\"},"
    "\"kvs\":[{\"key\":\"L3N2Yy9h\",\"create_revision\":\"2\","
    "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":"
    "\"MTI3LjAuMC4xOjgwMDA=\"}],\"count\":\"1\"}";
static const char ans_grant[] =
    "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":"
    "\"3319814642761637952\",\"revision\":\"2\",\"raft_term\":\"2\"},"
    "\"ID\":\"2324035877394504199\",\"TTL\":\"5\"}";
static const char ans_keepalive_gone[] =
    "{\"result\":{\"header\":{\"cluster_id\":\"324952591200643719\","
    "\"member_id\":\"3319814642761637952\",\"revision\":\"4\","
    "\"raft_term\":\"2\"},\"ID\":\"2324035877394504204\"}}\n";
static const char ans_error[] =
    "{\"error\":\"illegal base64 data at input byte 0\",\"message\":"
    "\"illegal base64 data at input byte 0\",\"code\":3}";

/* A chunked body as Go's server frames the stream: one chunk each. */
static char *chunked_stream(size_t *len)
{
	const char *msgs[] = {msg_created, msg_put, msg_delete, msg_compacted};
	struct fbuf b;
	char *out;

	fbuf_init(&b, NULL, 0);
	for (size_t i = 0; i < 4; i++)
		fbuf_printf(&b, "%zx\r\n%s\r\n", strlen(msgs[i]), msgs[i]);
	fbuf_puts(&b, "0\r\n\r\n");
	*len = b.len;
	out = malloc(b.len);
	memcpy(out, b.p, b.len);
	fbuf_destroy(&b);
	return out;
}

static void test_response_head(void **state)
{
	struct http1_resp r;
	ssize_t hl = http1_flat_head_end(watch_head, strlen(watch_head));

	(void)state;
	assert_int_equal(hl, (ssize_t)strlen(watch_head));
	assert_int_equal(http1_flat_head_end(watch_head, (size_t)hl - 1),
			 -EAGAIN);
	assert_int_equal(http1_parse_response(watch_head, (size_t)hl, &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.minor, 1);
	assert_true(r.chunked);
	assert_false(r.has_length);
	assert_true(r.keep_alive);

	static const char err_head[] = "HTTP/1.1 400 Bad Request\r\n"
				       "Content-Type: application/json\r\n"
				       "Content-Length: 104\r\n\r\n";
	assert_int_equal(http1_parse_response(err_head, strlen(err_head), &r),
			 0);
	assert_int_equal(r.status, 400);
	assert_true(r.has_length);
	assert_int_equal(r.content_length, 104);

	/* to the close, bare LFs, HTTP/1.0 */
	static const char close_head[] = "HTTP/1.0 200 OK\n\n";
	assert_int_equal(http1_flat_head_end(close_head, strlen(close_head)),
			 (ssize_t)strlen(close_head));
	assert_int_equal(
	    http1_parse_response(close_head, strlen(close_head), &r), 0);
	assert_false(r.keep_alive);

	/* refused, with a reason */
	static const char *const bad[] = {
	    "HTTP/2 200 OK\r\n\r\n",
	    "HTTP/1.1 20 OK\r\n\r\n",
	    "HTTP/1.1 200OK\r\n\r\n",
	    "HTTP/1.1 200 OK\r\n: x\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 3\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(http1_parse_response(bad[i], strlen(bad[i]), &r),
				 -EBADMSG);
		assert_non_null(r.why);
	}
}

static void test_unchunk(void **state)
{
	struct http1_chunked c;
	struct fbuf body;
	size_t len, used, at = 0;
	char *s = chunked_stream(&len);
	int r = 0;

	(void)state;
	/* whole */
	fbuf_init(&body, NULL, 0);
	http1_chunked_init(&c);
	assert_int_equal(http1_unchunk(&c, s, len, &used, &body), 1);
	assert_int_equal(used, len);
	assert_int_equal(body.len, strlen(msg_created) + strlen(msg_put) +
				       strlen(msg_delete) +
				       strlen(msg_compacted));
	assert_memory_equal(body.p, msg_created, strlen(msg_created));
	/* a byte at a time: what a line left unfinished comes again */
	fbuf_clear(&body);
	http1_chunked_init(&c);
	for (size_t end = 1; end <= len && r == 0; end++) {
		r = http1_unchunk(&c, s + at, end - at, &used, &body);
		at += used;
	}
	assert_int_equal(r, 1);
	assert_int_equal(at, len);
	assert_int_equal(body.len, strlen(msg_created) + strlen(msg_put) +
				       strlen(msg_delete) +
				       strlen(msg_compacted));
	/* bad framing; the limit */
	http1_chunked_init(&c);
	assert_int_equal(http1_unchunk(&c, "zz\r\n", 4, &used, &body),
			 -EBADMSG);
	http1_chunked_init(&c);
	assert_int_equal(http1_unchunk(&c, "2\r\nabc\r\n", 8, &used, &body),
			 -EBADMSG);
	fbuf_destroy(&body);
	fbuf_init(&body, NULL, 4);
	http1_chunked_init(&c);
	assert_int_equal(http1_unchunk(&c, "5\r\nabcde\r\n", 10, &used, &body),
			 -EMSGSIZE);
	fbuf_destroy(&body);
	free(s);
}

/* ---- etcd's JSON ----------------------------------------------------- */

struct seen {
	int n;
	char key[8][64], value[8][64];
	bool deleted[8];
	int64_t mod[8];
};

static int collect(void *arg, const struct etcd_kv *kv)
{
	struct seen *s = arg;

	assert_true(s->n < 8);
	snprintf(s->key[s->n], 64, "%.*s", (int)kv->key_n, kv->key);
	snprintf(s->value[s->n], 64, "%.*s", (int)kv->value_n, kv->value);
	s->deleted[s->n] = kv->deleted;
	s->mod[s->n] = kv->mod_revision;
	s->n++;
	return 0;
}

static void parse(const char *p, struct etcd_answer *a, struct seen *s)
{
	struct fbuf scratch;
	const char *why;

	memset(s, 0, sizeof(*s));
	fbuf_init(&scratch, NULL, 0);
	assert_int_equal(etcd_parse(p, strlen(p), a, collect, s, &scratch, &why),
			 0);
	fbuf_destroy(&scratch);
}

static void test_answers(void **state)
{
	struct etcd_answer a;
	struct seen s;

	(void)state;
	parse(ans_range, &a, &s);
	assert_int_equal(a.revision, 2);
	assert_int_equal(a.count, 1);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.key[0], "/svc/a");
	assert_string_equal(s.value[0], "127.0.0.1:8000");
	assert_int_equal(s.mod[0], 2);
	assert_false(a.error);

	parse(msg_created, &a, &s);
	assert_true(a.created);
	assert_int_equal(a.revision, 2);
	assert_int_equal(s.n, 0);

	parse(msg_put, &a, &s);
	assert_int_equal(a.revision, 3);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.key[0], "/svc/b");
	assert_string_equal(s.value[0], "x");
	assert_false(s.deleted[0]);

	parse(msg_delete, &a, &s);
	assert_int_equal(s.n, 1);
	assert_true(s.deleted[0]);
	assert_string_equal(s.key[0], "/svc/b");
	assert_int_equal(s.mod[0], 4);

	parse(msg_compacted, &a, &s);
	assert_true(a.canceled);
	assert_int_equal(a.compact_revision, 4);
	assert_int_equal(a.revision, 0);

	parse(ans_grant, &a, &s);
	assert_int_equal(a.id, 2324035877394504199LL);
	assert_int_equal(a.ttl, 5);

	parse(ans_keepalive_gone, &a, &s);
	assert_int_equal(a.id, 2324035877394504204LL);
	assert_int_equal(a.ttl, 0); /* left out: the lease is gone */

	parse(ans_error, &a, &s);
	assert_true(a.error);
	assert_int_equal(a.code, 3);
	assert_string_equal(a.message, "illegal base64 data at input byte 0");

	/* a stream error, as the gateway frames it */
	parse("{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
	      "\"etcdserver: no leader\",\"http_status\":\"Service "
	      "Unavailable\"}}",
	      &a, &s);
	assert_true(a.error);
	assert_int_equal(a.code, 14);
	assert_string_equal(a.message, "etcdserver: no leader");

	/* the type after the kv; an event without a kv */
	parse("{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\"},\"type\":"
	      "\"DELETE\"},{\"type\":\"PUT\"}]}}",
	      &a, &s);
	assert_int_equal(s.n, 1);
	assert_true(s.deleted[0]);
	assert_string_equal(s.key[0], "a");
}

static void test_bad_answers(void **state)
{
	static const char *const bad[] = {
	    "",
	    "[]",
	    "{\"kvs\":[{\"value\":\"eA==\"}]}",	  /* no key */
	    "{\"kvs\":[{\"key\":\"!!\"}]}",	  /* not base64 */
	    "{\"header\":{\"revision\":\"x\"}}", /* not a number */
	    "{\"created\":1}",
	    "{\"kvs\":[{\"key\":\"YQ==\"}]} x",
	    "{\"kvs\":[{\"key\":\"YQ==\"}",
	};
	struct fbuf scratch;
	struct etcd_answer a;
	struct seen s;
	const char *why;

	(void)state;
	fbuf_init(&scratch, NULL, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&s, 0, sizeof(s));
		assert_int_equal(etcd_parse(bad[i], strlen(bad[i]), &a, collect,
					    &s, &scratch, &why),
				 -EBADMSG);
		assert_non_null(why);
	}
	fbuf_destroy(&scratch);
}

static void test_msg_len(void **state)
{
	size_t n1 = strlen(msg_created), n2 = strlen(msg_put);
	char both[1024];

	(void)state;
	snprintf(both, sizeof(both), "%s%s", msg_created, msg_put);
	/* the trailing LF is white space before the next one */
	assert_int_equal(etcd_msg_len(both, strlen(both)), (long)n1 - 1);
	assert_int_equal(etcd_msg_len(both + n1 - 1, strlen(both) - n1 + 1),
			 (long)n2);
	for (size_t k = 0; k < n1 - 1; k++)
		assert_int_equal(etcd_msg_len(both, k), 0);
	/* brackets inside strings, escapes */
	assert_int_equal(etcd_msg_len("{\"a\":\"}\\\"{\"}", 12), 12);
	assert_int_equal(etcd_msg_len("  \n", 3), 0);
	assert_int_equal(etcd_msg_len("x{}", 3), -EBADMSG);
	assert_int_equal(etcd_msg_len("}{", 2), -EBADMSG);
}

static void test_requests(void **state)
{
	struct fbuf b;
	char end[8];
	size_t n;

	(void)state;
	etcd_prefix_end("/svc/", 5, end, &n);
	assert_int_equal(n, 5);
	assert_memory_equal(end, "/svc0", 5);
	etcd_prefix_end("a\xff", 2, end, &n);
	assert_int_equal(n, 1);
	assert_memory_equal(end, "b", 1);
	etcd_prefix_end("\xff", 1, end, &n);
	assert_int_equal(n, 1);
	assert_int_equal(end[0], 0);

	fbuf_init(&b, NULL, 0);
	etcd_put_range(&b, "/svc/");
	assert_string_equal(fbuf_cstr(&b),
			    "{\"key\":\"L3N2Yy8=\",\"range_end\":\"L3N2YzA=\"}");
	fbuf_clear(&b);
	etcd_put_watch(&b, "/svc/", 7);
	assert_string_equal(fbuf_cstr(&b),
			    "{\"create_request\":{\"key\":\"L3N2Yy8=\","
			    "\"range_end\":\"L3N2YzA=\",\"start_revision\":"
			    "\"7\"}}");
	fbuf_clear(&b);
	etcd_put_put(&b, "/svc/a", "127.0.0.1:8000", 42);
	assert_string_equal(fbuf_cstr(&b),
			    "{\"key\":\"L3N2Yy9h\",\"value\":"
			    "\"MTI3LjAuMC4xOjgwMDA=\",\"lease\":\"42\"}");
	fbuf_clear(&b);
	etcd_put_grant(&b, 10);
	assert_string_equal(fbuf_cstr(&b), "{\"TTL\":\"10\"}");
	fbuf_clear(&b);
	etcd_put_lease_id(&b, 2324035877394504199LL);
	assert_string_equal(fbuf_cstr(&b), "{\"ID\":\"2324035877394504199\"}");
	fbuf_destroy(&b);
}

static void test_values(void **state)
{
	struct naming_node n;
	struct fbuf scratch;
	static const char *const bad[] = {
	    "",
	    "nohost",
	    "a:1 b c",
	    "{\"tag\":\"x\"}",
	    "{\"addr\":\"a:99999\"}",
	    "{\"addr\":\"a b:1\"}",
	    "{\"addr\":\"a:1\",\"weight\":\"x\"}",
	    "{\"addr\":",
	};

	(void)state;
	fbuf_init(&scratch, NULL, 0);
	assert_int_equal(etcd_node_from_value("10.0.0.1:80", 11, &n, &scratch),
			 0);
	assert_string_equal(n.addr, "10.0.0.1:80");
	assert_string_equal(n.tag, "");
	assert_int_equal(
	    etcd_node_from_value(" 10.0.0.1:80  blue\n", 19, &n, &scratch), 0);
	assert_string_equal(n.tag, "blue");
	const char *j = "{\"addr\":\"[::1]:8000\",\"weight\":3,\"x\":[1]}";
	assert_int_equal(etcd_node_from_value(j, strlen(j), &n, &scratch), 0);
	assert_string_equal(n.addr, "[::1]:8000");
	assert_string_equal(n.tag, "3");
	j = "{\"addr\":\"h:1\",\"tag\":\"canary\",\"weight\":3}";
	assert_int_equal(etcd_node_from_value(j, strlen(j), &n, &scratch), 0);
	assert_string_equal(n.tag, "canary");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(
		    etcd_node_from_value(bad[i], strlen(bad[i]), &n, &scratch),
		    -EINVAL);
	fbuf_destroy(&scratch);
}

static void test_target(void **state)
{
	struct etcd_target t;
	char why[256];

	(void)state;
	assert_int_equal(etcd_target_parse("127.0.0.1:2379,127.0.0.1:22379,"
					   "[::1]:32379/svc/echo/",
					   &t, why, sizeof(why)),
			 0);
	assert_int_equal(t.n, 3);
	assert_string_equal(t.name[1], "127.0.0.1:22379");
	assert_string_equal(t.prefix, "/svc/echo/");
	assert_int_equal(t.addr[2].ss_family, AF_INET6);
	/* the port defaults to etcd's */
	assert_int_equal(etcd_target_parse("127.0.0.1/p", &t, why, sizeof(why)),
			 0);
	assert_int_equal(
	    ntohs(((struct sockaddr_in *)&t.addr[0])->sin_port), 2379);
	assert_int_equal(etcd_target_parse("127.0.0.1:1", &t, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "PREFIX"));
	assert_int_equal(etcd_target_parse("/p", &t, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(etcd_target_parse("a:1,,b:2/p", &t, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(etcd_target_parse("127.0.0.1:99999/p", &t, why,
					   sizeof(why)),
			 -EINVAL);
}

/* consul's answers: Service.Address, else Node.Address; the first tag;
 * bad elements skipped; duplicates once; not an array refused. */
static void test_consul_answers(void **state)
{
	static const char two[] =
	    "[{\"Node\":{\"Node\":\"a\",\"Address\":\"10.0.0.9\"},"
	    "\"Service\":{\"ID\":\"e1\",\"Service\":\"echo\",\"Tags\":[],"
	    "\"Address\":\"10.0.0.1\",\"Port\":8000},\"Checks\":[]},"
	    "{\"Node\":{\"Node\":\"b\",\"Address\":\"10.0.0.2\"},"
	    "\"Service\":{\"Service\":\"echo\",\"Tags\":[\"blue\",\"v2\"],"
	    "\"Address\":\"\",\"Port\":8001,\"Weights\":{\"Passing\":1}}},"
	    "{\"Node\":{\"Address\":\"fe80::1\"},\"Service\":{\"Port\":9}},"
	    "{\"Node\":{\"Address\":\"10.0.0.2\"},\"Service\":{\"Address\":"
	    "\"\",\"Port\":8001,\"Tags\":[\"blue\"]}},"
	    "{\"Service\":{\"Address\":\"10.0.0.3\",\"Port\":0}},"
	    "{\"Service\":{\"Address\":\"10.0.0.3\",\"Port\":1,"
	    "\"Tags\":[7]}},{\"Node\":{}}]";
	static const char *const bad[] = {"", "{}", "[1]", "[{}", "[]x",
					  "[{\"Service\":{\"Port\":\"x\"}}]"};
	struct naming_list l;
	struct fbuf scratch;
	unsigned skipped;
	char why[256];

	(void)state;
	naming_list_init(&l, NULL);
	fbuf_init(&scratch, NULL, 0);
	assert_int_equal(consul_parse(two, strlen(two), &l, &skipped, &scratch,
				      why, sizeof(why)),
			 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].addr, "10.0.0.1:8000");
	assert_string_equal(l.v[0].tag, "");
	assert_string_equal(l.v[1].addr, "10.0.0.2:8001");
	assert_string_equal(l.v[1].tag, "blue");
	assert_string_equal(l.v[2].addr, "[fe80::1]:9");
	assert_int_equal(skipped, 3); /* Port 0, a tag not a string, none */
	assert_non_null(strstr(why, "Service.Port"));
	assert_int_equal(
	    consul_parse("[]", 2, &l, &skipped, &scratch, why, sizeof(why)), 0);
	assert_int_equal(l.n, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(consul_parse(bad[i], strlen(bad[i]), &l,
					      &skipped, &scratch, why,
					      sizeof(why)),
				 -EBADMSG);
	naming_list_free(&l);
	fbuf_destroy(&scratch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_response_head), TEST_BOUNDED(test_unchunk),
	    TEST_BOUNDED(test_answers),	      TEST_BOUNDED(test_bad_answers),
	    TEST_BOUNDED(test_msg_len),	      TEST_BOUNDED(test_requests),
	    TEST_BOUNDED(test_values),	      TEST_BOUNDED(test_target),
	    TEST_BOUNDED(test_consul_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
