/*
 * naming tests: URL schemes, list:// and file:// entries with tags,
 * comments, blanks, duplicates and bad entries, the tag filter, set
 * comparison, file errors, the node index, and sources at the size
 * limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/un.h>

#include "base/uaddr.h"
#include "cluster/naming.h"

#define TEST_TIMEOUT_S 60
#include "testutil.h"

static void test_url_split(void **state)
{
	enum naming_scheme s;
	const char *rest;
	char why[256];

	(void)state;
	assert_int_equal(
	    naming_url_split("list://a:1,b:2", &s, &rest, why, sizeof(why)), 0);
	assert_int_equal(s, NAMING_LIST);
	assert_string_equal(rest, "a:1,b:2");
	assert_int_equal(
	    naming_url_split("file:///etc/x", &s, &rest, why, sizeof(why)), 0);
	assert_int_equal(s, NAMING_FILE);
	assert_string_equal(rest, "/etc/x");
	assert_int_equal(
	    naming_url_split("list://", &s, &rest, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "names nothing"));
	assert_int_equal(
	    naming_url_split("http://svc:80", &s, &rest, why, sizeof(why)), 0);
	assert_int_equal(s, NAMING_DNS);
	assert_string_equal(rest, "svc:80");
	assert_int_equal(
	    naming_url_split("zk://x", &s, &rest, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "expected list://"));
}

static void test_list_entries(void **state)
{
	struct naming_list l;
	unsigned skipped = 9;
	char why[256];

	(void)state;
	naming_list_init(&l, NULL);
	assert_int_equal(naming_parse(" 10.0.0.1:80 , 10.0.0.2:80 blue,"
				      "10.0.0.2:80 green,10.0.0.1:80,"
				      "[::1]:81,host.example:443",
				      ',', &l, &skipped, why, sizeof(why)),
			 0);
	assert_int_equal(skipped, 0);
	assert_int_equal(l.n, 5); /* the repeated one counts once */
	assert_string_equal(l.v[0].addr, "10.0.0.1:80");
	assert_string_equal(l.v[0].tag, "");
	assert_string_equal(l.v[1].tag, "blue");
	assert_string_equal(l.v[2].tag, "green");
	assert_string_equal(l.v[3].addr, "[::1]:81");
	assert_string_equal(l.v[4].addr, "host.example:443");

	assert_int_equal(naming_parse("10.0.0.1,10.0.0.1:0,:80,10.0.0.1:99999,"
				      "::1:80,10.0.0.3:80 a b,10.0.0.4:80",
				      ',', &l, &skipped, why, sizeof(why)),
			 0);
	assert_int_equal(skipped, 6);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].addr, "10.0.0.4:80");
	assert_non_null(strstr(why, "\"10.0.0.1\" is not HOST:PORT"));
	naming_list_free(&l);
}

static void test_file_entries_and_filter(void **state)
{
	char path[] = "/tmp/rpcgate-naming-XXXXXX";
	const char *text = "# upstreams\n"
			   "\n"
			   "10.0.0.1:8000 1   # weight 1\n"
			   "   10.0.0.2:8000 2\n"
			   "10.0.0.3:8000\t2\r\n"
			   "not-an-address\n"
			   "10.0.0.4:8000";
	struct naming_list l, m;
	unsigned skipped;
	char why[256];
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	naming_list_init(&l, NULL);
	naming_list_init(&m, NULL);
	assert_int_equal(naming_read_file(path, &l, &skipped, why, sizeof(why)),
			 0);
	assert_int_equal(skipped, 1);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.v[2].addr, "10.0.0.3:8000");
	assert_string_equal(l.v[2].tag, "2");
	assert_string_equal(l.v[3].tag, "");
	/* Same set in another order. */
	assert_int_equal(naming_parse("10.0.0.4:8000,10.0.0.3:8000 2,"
				      "10.0.0.2:8000 2,10.0.0.1:8000 1",
				      ',', &m, NULL, NULL, 0),
			 0);
	assert_true(naming_same(&l, &m));
	naming_filter_tag(&l, "2");
	assert_int_equal(l.n, 2);
	assert_false(naming_same(&l, &m));
	naming_filter_tag(&m, NULL);
	assert_int_equal(m.n, 4);
	unlink(path);
	assert_int_equal(naming_read_file(path, &l, &skipped, why, sizeof(why)),
			 -ENOENT);
	assert_non_null(strstr(why, "cannot open"));
	naming_list_free(&l);
	naming_list_free(&m);
}

static void test_dns_target(void **state)
{
	char host[64];
	int port;

	(void)state;
	assert_int_equal(
	    naming_dns_target("svc.example", host, sizeof(host), &port, 80), 0);
	assert_string_equal(host, "svc.example");
	assert_int_equal(port, 80);
	assert_int_equal(naming_dns_target("svc.example:8000/path", host,
					   sizeof(host), &port, 80),
			 0);
	assert_string_equal(host, "svc.example");
	assert_int_equal(port, 8000);
	assert_int_equal(
	    naming_dns_target("[fe80::1]:81", host, sizeof(host), &port, 80), 0);
	assert_string_equal(host, "fe80::1");
	assert_int_equal(port, 81);
	assert_int_equal(
	    naming_dns_target("svc.example", host, sizeof(host), &port, 443), 0);
	assert_int_equal(port, 443);
	assert_true(naming_url_tls("https://svc.example"));
	assert_false(naming_url_tls("http://svc.example"));
	assert_int_equal(naming_dns_target("", host, sizeof(host), &port, 80),
			 -EINVAL);
	assert_int_equal(naming_dns_target("a:", host, sizeof(host), &port, 80),
			 -EINVAL);
	assert_int_equal(naming_dns_target("a:0", host, sizeof(host), &port, 80),
			 -EINVAL);
	assert_int_equal(
	    naming_dns_target("a:70000", host, sizeof(host), &port, 80), -EINVAL);
	assert_int_equal(naming_dns_target("[::1", host, sizeof(host), &port, 80),
			 -EINVAL);
	assert_int_equal(naming_dns_target("[::1]x", host, sizeof(host), &port, 80),
			 -EINVAL);
	assert_int_equal(naming_dns_target("a:8x", host, sizeof(host), &port, 80),
			 -EINVAL);
}

/* The index: found by address and tag, a repeat refused, its size kept. */
static void test_index(void **state)
{
	struct naming_node a = {"10.0.0.1:80", ""}, b = {"10.0.0.1:80", "x"},
			   c = {"10.0.0.2:80", ""}, a2 = {"10.0.0.1:80", ""};
	struct naming_index ix;

	(void)state;
	assert_int_equal(naming_index_init(&ix, NULL, 2), 0);
	assert_null(naming_index_find(&ix, &a));
	assert_int_equal(naming_index_add(&ix, &a), 0);
	assert_int_equal(naming_index_add(&ix, &a2), -EEXIST);
	assert_int_equal(naming_index_add(&ix, &b), 0);
	assert_int_equal(naming_index_add(&ix, &c), -ENOSPC);
	assert_ptr_equal(naming_index_find(&ix, &a2), &a);
	assert_ptr_equal(naming_index_find(&ix, &b), &b);
	assert_null(naming_index_find(&ix, &c));
	naming_index_destroy(&ix);
	assert_null(naming_index_find(&ix, &a));
}

/* Writes "10.I.J.K:PORT[ tag]" for n distinct instances, each one
 * `times` times, into a new string. */
static char *many_text(size_t n, int times, char sep)
{
	char *text = malloc(n * (size_t)times * 32 + 1), *p = text;

	assert_non_null(text);
	for (int t = 0; t < times; t++)
		for (size_t i = 0; i < n; i++)
			p += sprintf(p, "10.%zu.%zu.1:%zu%s%c", i / 256 % 256,
				     i % 256, 8000 + i / 65536,
				     i % 3 ? "" : " blue", sep);
	*p = '\0';
	return text;
}

/* A source at the limit, every entry twice: each counts once, in order;
 * one more is too many; the same set reversed is the same; every
 * allocation failing on the way is -ENOMEM, nothing leaked. */
static void test_many_nodes(void **state)
{
	char *text = many_text(NAMING_NODES_MAX, 2, '\n');
	char *over = many_text(NAMING_NODES_MAX + 1, 1, ',');
	struct naming_list l, r;
	struct mem_failing mf;
	unsigned skipped;
	int err;

	(void)state;
	naming_list_init(&l, NULL);
	naming_list_init(&r, NULL);
	assert_int_equal(naming_parse(text, '\n', &l, &skipped, NULL, 0), 0);
	assert_int_equal(skipped, 0);
	assert_int_equal(l.n, NAMING_NODES_MAX);
	assert_string_equal(l.v[0].addr, "10.0.0.1:8000");
	assert_string_equal(l.v[0].tag, "blue");
	assert_string_equal(l.v[257].addr, "10.1.1.1:8000");
	assert_string_equal(l.v[257].tag, "");
	assert_int_equal(naming_parse(over, ',', &r, NULL, NULL, 0), -E2BIG);

	/* r = l reversed: the same set; then one tag differs. */
	naming_list_free(&r);
	r.v = malloc(l.n * sizeof(*r.v));
	assert_non_null(r.v);
	r.cap = r.n = l.n;
	r.mem = NULL;
	for (size_t i = 0; i < l.n; i++)
		r.v[i] = l.v[l.n - 1 - i];
	assert_true(naming_same(&l, &r));
	assert_true(naming_same(&r, &l));
	strcpy(r.v[100].tag, "green");
	assert_false(naming_same(&l, &r));
	free(r.v);

	for (long at = 0;; at++) {
		struct naming_list f;

		mem_failing_init(&mf, at);
		naming_list_init(&f, &mf.mem);
		err = naming_parse(text, '\n', &f, NULL, NULL, 0);
		if (!err) {
			assert_int_equal(f.n, NAMING_NODES_MAX);
			naming_list_free(&f);
			assert_int_equal(mf.live, 0);
			break;
		}
		assert_int_equal(err, -ENOMEM);
		naming_list_free(&f);
		assert_int_equal(mf.live, 0);
	}
	naming_list_free(&l);
	free(text);
	free(over);
}

static void test_addr_valid(void **state)
{
	(void)state;
	assert_true(naming_addr_valid("a:1"));
	assert_true(naming_addr_valid("[fe80::1]:65535"));
	assert_false(naming_addr_valid("a:65536"));
	assert_false(naming_addr_valid("a:"));
	assert_false(naming_addr_valid("a:1x"));
	assert_false(naming_addr_valid("fe80::1:80"));
	assert_false(naming_addr_valid("[fe80::1:80"));
	assert_true(naming_addr_valid("unix:/run/echo.sock"));
	assert_true(naming_addr_valid("unix:@echo"));
	assert_false(naming_addr_valid("unix:"));
	assert_false(naming_addr_valid("unix:@"));
	assert_false(naming_addr_valid("unix:relative.sock"));
}

static bool keep_blue(void *arg, const struct naming_node *n)
{
	(void)arg;
	return !strcmp(n->tag, "blue");
}

/* Unix socket addresses: file and abstract, round trip, limits. */
static void test_unix_addrs(void **state)
{
	struct sockaddr_storage ss;
	struct naming_list l;
	socklen_t len;
	char buf[256], lng[200];

	(void)state;
	assert_int_equal(uaddr_parse("unix:/tmp/a.sock", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_UNIX);
	uaddr_format(&ss, len, buf, sizeof(buf));
	assert_string_equal(buf, "unix:/tmp/a.sock");
	assert_int_equal(uaddr_parse("unix:@gw", &ss, &len), 0);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 3);
	uaddr_format(&ss, len, buf, sizeof(buf));
	assert_string_equal(buf, "unix:@gw");
	uaddr_format(&ss, sizeof(sa_family_t), buf, sizeof(buf));
	assert_string_equal(buf, "unix:");
	memset(lng, 'x', sizeof(lng) - 1);
	lng[0] = '/';
	lng[sizeof(lng) - 1] = 0;
	snprintf(buf, sizeof(buf), "unix:%s", lng);
	assert_int_equal(uaddr_parse(buf, &ss, &len), -ENAMETOOLONG);
	assert_int_equal(uaddr_parse("tcp:/x", &ss, &len), -EINVAL);
	/* in naming lists, with tags */
	naming_list_init(&l, NULL);
	assert_int_equal(naming_parse("unix:/a.sock blue,unix:@b,10.0.0.1:80",
				      ',', &l, NULL, NULL, 0),
			 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].addr, "unix:/a.sock");
	assert_string_equal(l.v[0].tag, "blue");
	assert_string_equal(l.v[1].addr, "unix:@b");
	/* a filter keeps what it says; none keeps all */
	naming_filter(&l, NULL, NULL);
	assert_int_equal(l.n, 3);
	naming_filter(&l, keep_blue, NULL);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].addr, "unix:/a.sock");
	naming_list_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_url_split),
	    TEST_BOUNDED(test_list_entries),
	    TEST_BOUNDED(test_file_entries_and_filter),
	    TEST_BOUNDED(test_dns_target),
	    TEST_BOUNDED(test_addr_valid),
	    TEST_BOUNDED(test_unix_addrs),
	    TEST_BOUNDED(test_index),
	    TEST_BOUNDED(test_many_nodes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
