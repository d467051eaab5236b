/*
 * test_tls: the TLS sides without a network: ClientHello detection and
 * ALPN lists (net/codec/tls_wire), loading a certificate and key with
 * every way it can be wrong saying which file and what, the reload's
 * verdicts (unchanged, changed, broken: the old one kept), and the host
 * name a client sends (app_tls_name_of).  The handshakes themselves, with
 * real peers, are tests/tls/test-tls's.  The certificates are made with
 * openssl in a temporary folder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEST_TIMEOUT_S 60
#include "testutil.h"

#include "app.h"
#include "codec/tls_wire.h"
#include "rpc/tls.h"

static char dir[] = "/tmp/rpcgate-test-tls-XXXXXX";

static const char *path(const char *name)
{
	static char buf[4][256];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

static void run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

static int make_certs(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	run("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
	    "-keyout ca.key -out ca.pem -subj /CN=ca >/dev/null 2>&1",
	    dir);
	for (int i = 0; i < 2; i++)
		run("cd %s && openssl req -newkey rsa:2048 -nodes -keyout "
		    "s%d.key -out s%d.csr -subj /CN=localhost%d >/dev/null "
		    "2>&1 "
		    "&& openssl x509 -req -in s%d.csr -CA ca.pem -CAkey ca.key "
		    "-CAcreateserial -days 2 -out s%d.pem >/dev/null 2>&1",
		    dir, i, i, i, i, i);
	return 0;
}

static int remove_certs(void **state)
{
	(void)state;
	run("rm -rf %s", dir);
	return 0;
}

static void copy(const char *from, const char *to)
{
	run("cp %s %s", path(from), path(to));
}

/* ---- wire ------------------------------------------------------------ */

static void test_detect(void **state)
{
	static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00};
	static const uint8_t v13[] = {0x16, 0x03, 0x04};
	static const uint8_t prpc[] = {'P', 'R', 'P', 'C'};
	static const uint8_t get[] = {'G', 'E', 'T', ' '};
	static const uint8_t ssl2[] = {0x16, 0x02, 0x00};
	static const uint8_t v00[] = {0x16, 0x03, 0x00};
	static const uint8_t v05[] = {0x16, 0x03, 0x05};

	(void)state;
	assert_int_equal(tls_wire_detect(hello, 0), 0);
	assert_int_equal(tls_wire_detect(hello, 1), 0);
	assert_int_equal(tls_wire_detect(hello, 2), 0);
	assert_int_equal(tls_wire_detect(hello, sizeof(hello)), 1);
	assert_int_equal(tls_wire_detect(v13, 3), 1);
	assert_int_equal(tls_wire_detect(prpc, 4), -1);
	assert_int_equal(tls_wire_detect(get, 1), -1);
	assert_int_equal(tls_wire_detect(ssl2, 2), -1);
	assert_int_equal(tls_wire_detect(v00, 3), -1); /* SSL 3.0 */
	assert_int_equal(tls_wire_detect(v05, 3), -1);
}

static void test_alpn(void **state)
{
	static const uint8_t curl[] = "\x02h2\x08http/1.1";
	static const uint8_t h2[] = "\x02h2";
	static const uint8_t cut[] = "\x02h2\x09http/1.1";
	static const uint8_t empty[] = "\x00\x08http/1.1";

	(void)state;
	assert_int_equal(tls_wire_alpn_find(curl, sizeof(curl) - 1, "http/1.1"),
			 4);
	assert_int_equal(tls_wire_alpn_find(curl, sizeof(curl) - 1, "h2"), 1);
	assert_int_equal(tls_wire_alpn_find(h2, sizeof(h2) - 1, "http/1.1"),
			 -1);
	/* a length past the end, an empty name: malformed, nothing found */
	assert_int_equal(tls_wire_alpn_find(cut, sizeof(cut) - 1, "http/1.1"),
			 -1);
	assert_int_equal(
	    tls_wire_alpn_find(empty, sizeof(empty) - 1, "http/1.1"), -1);
	assert_int_equal(tls_wire_alpn_find(curl, 0, "h2"), -1);
}

/* ---- loading --------------------------------------------------------- */

static int server_new(struct tls_side **s, const char *cert, const char *key,
		      const char *ca, char *why, size_t n)
{
	struct tls_server_options o;

	tls_server_options_default(&o);
	o.cert_file = cert;
	o.key_file = key;
	o.client_ca_file = ca;
	why[0] = 0;
	return tls_server_new(s, &o, why, n);
}

static void test_load(void **state)
{
	struct tls_side *s = NULL;
	char why[256];

	(void)state;
	assert_int_equal(server_new(&s, path("s0.pem"), path("s0.key"), NULL,
				    why, sizeof(why)),
			 0);
	assert_non_null(tls_upgrade(s));
	assert_string_equal(tls_upgrade(s)->name, "tls");
	tls_side_free(s);
	assert_int_equal(server_new(&s, path("s0.pem"), path("s0.key"),
				    path("ca.pem"), why, sizeof(why)),
			 0);
	tls_side_free(s);

	/* each way to be wrong names the file and the fault */
	assert_int_equal(
	    server_new(&s, "", path("s0.key"), NULL, why, sizeof(why)),
	    -EINVAL);
	assert_non_null(strstr(why, "needs a certificate and a key"));
	assert_int_equal(server_new(&s, path("none.pem"), path("s0.key"), NULL,
				    why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "none.pem"));
	assert_non_null(strstr(why, "No such file"));
	assert_int_equal(server_new(&s, path("s0.key"), path("s0.key"), NULL,
				    why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "certificate"));
	assert_int_equal(server_new(&s, path("s0.pem"), path("s1.key"), NULL,
				    why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "does not match"));
	assert_int_equal(server_new(&s, path("s0.pem"), path("s0.key"),
				    path("s0.key"), why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "CA"));
	/* the key's bytes are never in a reason */
	assert_null(strstr(why, "PRIVATE"));
}

static void test_client(void **state)
{
	struct tls_client_options o;
	struct tls_side *s = NULL;
	char why[256];

	(void)state;
	tls_client_options_default(&o);
	assert_true(o.verify);
	o.ca_file = path("ca.pem");
	o.server_name = "localhost";
	o.alpn = "h2,http/1.1";
	assert_int_equal(tls_client_new(&s, &o, why, sizeof(why)), 0);
	assert_non_null(tls_upgrade(s)->connect_start);
	assert_non_null(tls_upgrade(s)->why);
	tls_side_free(s);
	o.cert_file = path("s0.pem");
	assert_int_equal(tls_client_new(&s, &o, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "needs its key"));
	o.key_file = path("s0.key");
	assert_int_equal(tls_client_new(&s, &o, why, sizeof(why)), 0);
	tls_side_free(s);
}

/* ---- reload ---------------------------------------------------------- */

static void bump_mtime(const char *name)
{
	/* the same size: only the time (and inode, for a copy) tell */
	run("touch -d '+2 seconds' %s", path(name));
}

static void test_reload(void **state)
{
	struct tls_side *s = NULL;
	struct tls_stats st;
	char why[256];

	(void)state;
	copy("s0.pem", "live.pem");
	copy("s0.key", "live.key");
	assert_int_equal(server_new(&s, path("live.pem"), path("live.key"),
				    NULL, why, sizeof(why)),
			 0);
	assert_int_equal(tls_server_reload(s, false, why, sizeof(why)), 0);
	/* new files in place: loaded */
	copy("s1.pem", "live.pem");
	copy("s1.key", "live.key");
	bump_mtime("live.pem");
	assert_int_equal(tls_server_reload(s, false, why, sizeof(why)), 1);
	assert_int_equal(tls_server_reload(s, false, why, sizeof(why)), 0);
	/* a certificate without its key (cert-manager writes one, then the
	 * other): refused, the loaded pair stays, said once */
	copy("s0.pem", "live.pem");
	bump_mtime("live.pem");
	assert_int_equal(tls_server_reload(s, false, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "does not match"));
	assert_int_equal(tls_server_reload(s, false, why, sizeof(why)), 0);
	/* the key follows: loaded */
	copy("s0.key", "live.key");
	bump_mtime("live.key");
	assert_int_equal(tls_server_reload(s, false, why, sizeof(why)), 1);
	/* a file gone: refused once; forced (SIGHUP) tries again */
	run("rm %s", path("live.key"));
	assert_int_equal(tls_server_reload(s, false, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(tls_server_reload(s, false, why, sizeof(why)), 0);
	assert_int_equal(tls_server_reload(s, true, why, sizeof(why)), -EINVAL);
	copy("s0.key", "live.key");
	assert_int_equal(tls_server_reload(s, true, why, sizeof(why)), 1);
	tls_stats(s, &st);
	assert_int_equal(st.reloads, 3);
	assert_int_equal(st.reload_failures, 3);
	assert_int_equal(st.handshakes, 0);
	tls_side_free(s);
}

/* ---- client names ---------------------------------------------------- */

static void test_name_of(void **state)
{
	char n[64];

	(void)state;
	app_tls_name_of("localhost:8443", n, sizeof(n));
	assert_string_equal(n, "localhost");
	app_tls_name_of("https://svc.example", n, sizeof(n));
	assert_string_equal(n, "svc.example");
	app_tls_name_of("list://a.example:1,b.example:2", n, sizeof(n));
	assert_string_equal(n, "a.example");
	app_tls_name_of("127.0.0.1:8443", n, sizeof(n));
	assert_string_equal(n, "");
	app_tls_name_of("[::1]:8443", n, sizeof(n));
	assert_string_equal(n, "");
	app_tls_name_of("", n, sizeof(n));
	assert_string_equal(n, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_detect), TEST_BOUNDED(test_alpn),
	    TEST_BOUNDED(test_load),   TEST_BOUNDED(test_client),
	    TEST_BOUNDED(test_reload), TEST_BOUNDED(test_name_of),
	};

	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
