/*
 * tlsconf: TLS from the flags.  A serving subcommand loads its
 * certificate and key before --user drops privileges
 * (app_tls_server_load), hands them to its runtime, and re-reads them
 * on SIGHUP and when the files change (app_wait_stop); a calling one or
 * a gateway route makes a client side (app_tls_client_new).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "base/clock.h"
#include "rpc/tls.h"

int app_tls_server_load(struct tls_side **out, const struct app_config *cfg,
			const char *who)
{
	const struct flags *fl = &cfg->flags;
	struct tls_server_options o;
	char why[256];
	int err;

	*out = NULL;
	tls_server_options_default(&o);
	o.cert_file = flags_str(fl, "tls_cert");
	o.key_file = flags_str(fl, "tls_key");
	o.client_ca_file = flags_str(fl, "tls_client_ca");
	o.handshake_timeout_ms = (int)flags_int(fl, "tls_handshake_timeout_ms");
	if (!*o.cert_file && !*o.key_file) {
		if (flags_bool(fl, "tls_required") || *o.client_ca_file) {
			fprintf(stderr,
				"%s: --tls_required and --tls_client_ca need "
				"--tls_cert and --tls_key\n",
				who);
			return -EINVAL;
		}
		return 0;
	}
	err = tls_server_new(out, &o, why, sizeof(why));
	if (err == -EINVAL)
		fprintf(stderr, "%s: TLS: %s\n", who, why);
	else if (err)
		fprintf(stderr, "%s: TLS: %s\n", who, strerror(-err));
	return err;
}

void app_runtime_adopt_tls(struct app_runtime *r, struct tls_side *tls)
{
	r->tls = tls;
	if (tls)
		tls_set_log(tls, &r->log);
}

int app_tls_client_new(struct tls_side **out, const struct app_config *cfg,
		       const char *server_name, const char *alpn,
		       struct log *log, char *why, size_t why_size)
{
	const struct flags *fl = &cfg->flags;
	struct tls_client_options o;

	tls_client_options_default(&o);
	o.ca_file = *flags_str(fl, "tls_ca") ? flags_str(fl, "tls_ca") : NULL;
	o.verify = flags_bool(fl, "tls_verify");
	o.server_name = server_name;
	o.cert_file = *flags_str(fl, "tls_client_cert")
			  ? flags_str(fl, "tls_client_cert")
			  : NULL;
	o.key_file = *flags_str(fl, "tls_client_key")
			 ? flags_str(fl, "tls_client_key")
			 : NULL;
	o.handshake_timeout_ms = (int)flags_int(fl, "tls_handshake_timeout_ms");
	o.log = log;
	o.alpn = alpn;
	return tls_client_new(out, &o, why, why_size);
}

/* SIGHUP: reload now; otherwise every APP_TLS_CHECK_MS, if a file
 * changed (cert-manager and Vault rewrite them in place). */
static void tls_check(struct app_runtime *r, bool force)
{
	char why[256];

	if (!r->tls) {
		if (force)
			log_info(&r->log,
				 "%s: SIGHUP: nothing to reload "
				 "(no --tls_cert)",
				 r->who);
		return;
	}
	/* Reloads and failures are logged by tls.c. */
	(void)tls_server_reload(r->tls, force, why, sizeof(why));
}

int app_wait_stop(struct app_runtime *r, const sigset_t *stop, int timeout_ms)
{
	int64_t end =
	    timeout_ms > 0 ? clock_mono_ns() + timeout_ms * CLOCK_NS_PER_MS : 0;
	siginfo_t info;
	int sig;

	for (;;) {
		int64_t slice = APP_TLS_CHECK_MS * CLOCK_NS_PER_MS;
		struct timespec ts;

		if (end) {
			int64_t left = end - clock_mono_ns();

			if (left <= 0)
				return 0;
			if (left < slice)
				slice = left;
		}
		ts.tv_sec = (time_t)(slice / 1000000000);
		ts.tv_nsec = (long)(slice % 1000000000);
		sig = sigtimedwait(stop, &info, &ts);
		if (sig == SIGHUP) {
			tls_check(r, true);
			if (r->on_check)
				r->on_check(r->on_check_arg, true);
			continue;
		}
		if (sig > 0)
			return sig;
		if (errno == EAGAIN) {
			tls_check(r, false);
			if (r->on_check)
				r->on_check(r->on_check_arg, false);
		}
	}
}

void app_tls_name_of(const char *target, char *out, size_t size)
{
	static const char *const schemes[] = {"list://", "http://", "https://"};
	struct in_addr a4;
	size_t n;

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (!strncmp(target, schemes[i], strlen(schemes[i])))
			target += strlen(schemes[i]);
	n = strcspn(target, ":,/ ");
	if (target[0] == '[' || n == 0 || n >= size) {
		*out = 0; /* an IPv6 literal, or nothing */
		return;
	}
	memcpy(out, target, n);
	out[n] = 0;
	if (inet_pton(AF_INET, out, &a4) == 1)
		*out = 0;
}
