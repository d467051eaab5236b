/*
 * call: one synchronous example.EchoService.Echo call, the smallest brpc
 * client there is (brpc's example/echo_c++ client, once).
 *
 *   rpcgate call --server=HOST:PORT --message=TEXT [--attachment=TEXT]
 *                [--compress=none|snappy|gzip|zlib] [--log_id=N]
 *                [--timeout_ms=N] [--max_retry=N] [--checksum=BOOL]
 *                [--connection_type=single|pooled|short] [--auth_token=S]
 *
 *   rpcgate call --server=HOST:PORT --service=S --method=M --json='{...}'
 *                [--descriptor_set=F] [--protocol=baidu_std|http|grpc]
 *                (any method, JSON both ways: app/cmd_call_json.c)
 *
 * Success: "message: TEXT" and, when the answer has an attachment,
 * "attachment: TEXT" on stdout; exit 0.  Failure: "rpcgate call: error
 * CODE (NAME): TEXT" on stderr; exit 1.  No --server: exit 2.
 */
#include "app.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/rpc_errno.h"
#include "rpc/channel.h"
#include "echo.pb-c.h"

/* ---- call --------------------------------------------------------------- */

#define WHO "rpcgate call"
/* --wait_ms: how often a refused connection is tried again. */
#define WAIT_RETRY_MS 200

/* Inputs of the call beyond the message: attachment, compression,
 * log_id (deadline and retries are the channel's, from the flags).
 * 0 or -ENOMEM. */
void app_call_inputs(const struct app_config *cfg, struct rpc_call *c)
{
	const struct flag *log_id = flags_find(&cfg->flags, "log_id");

	c->compress_type = app_compress_type(cfg);
	/* brpc sends log_id only when set; so do we. */
	if (log_id->src != FLAG_SRC_DEFAULT) {
		c->has_log_id = true;
		c->log_id = (uint64_t)log_id->i;
	}
}

static int call_prepare(const struct app_config *cfg, struct rpc_call *c)
{
	const char *att = flags_str(&cfg->flags, "attachment");

	app_call_inputs(cfg, c);
	return iobuf_append(&c->request_attachment, att, strlen(att));
}

/* Writes a buffer's bytes as they are, block by block. */
static void print_iobuf(const struct iobuf *buf, FILE *out)
{
	const void *ptr;
	size_t len;

	for (size_t i = 0; i < iobuf_ref_count(buf); i++)
		if (!iobuf_ref_at(buf, i, &ptr, &len))
			fwrite(ptr, 1, len, out);
}

static int call_print_answer(const struct rpc_call *c)
{
	const Example__EchoResponse *resp =
	    (const Example__EchoResponse *)c->response;

	if (!resp || !resp->message) {
		fprintf(stderr, WHO ": the answer has no message\n");
		return APP_EXIT_FAILURE;
	}
	printf("message: %s\n", resp->message);
	if (!iobuf_empty(&c->response_attachment)) {
		fputs("attachment: ", stdout);
		print_iobuf(&c->response_attachment, stdout);
		fputc('\n', stdout);
	}
	return APP_EXIT_OK;
}

/* One call; the channel's code (0: answered). */
static int call_once(const struct app_config *cfg, struct channel *ch,
		     struct rpc_call *c)
{
	Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;

	/* protobuf-c's string fields are not const; it only reads it. */
	req.message = (char *)flags_str(&cfg->flags, "message");
	return channel_call(ch, &example__echo_service__descriptor,
			    APP_ECHO_METHOD, &req.base, c, NULL, NULL);
}

int app_cmd_call(struct app_config *cfg)
{
	int64_t wait_ns = flags_int(&cfg->flags, "wait_ms") * 1000000;
	int64_t give_up = clock_mono_ns() + wait_ns;
	struct app_runtime r;
	struct channel ch;
	struct rpc_call c;
	int status = APP_EXIT_FAILURE, code;

	if (!app_flag_true(&cfg->flags, "json") &&
	    strcmp(flags_str(&cfg->flags, "json"), "false"))
		return app_call_json(cfg); /* --json='{...}' */
	if (!app_require_server(cfg, WHO))
		return APP_EXIT_CONFIG;
	if (app_runtime_start(&r, cfg, WHO))
		return APP_EXIT_FAILURE;
	if (app_channel_open(&ch, &r, cfg, 1, false))
		goto out_runtime;
	for (;;) {
		rpc_call_init(&c, &r.pool);
		if (call_prepare(cfg, &c)) {
			fprintf(stderr, WHO ": out of memory\n");
			break;
		}
		code = call_once(cfg, &ch, &c);
		if (code && app_not_up_yet(code) && clock_mono_ns() < give_up) {
			/* A server still starting (--wait_ms): again. */
			rpc_call_destroy(&c);
			usleep(WAIT_RETRY_MS * 1000);
			continue;
		}
		if (code)
			fprintf(stderr, WHO ": error %d (%s): %s\n", code,
				app_error_name(code),
				c.error_text ? c.error_text : "");
		else
			status = call_print_answer(&c);
		break;
	}
	fflush(stdout);
	rpc_call_destroy(&c);
	channel_destroy(&ch);
out_runtime:
	app_runtime_stop(&r);
	return status;
}
