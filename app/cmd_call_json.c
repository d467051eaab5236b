/*
 * call --json: one call of any method of any server, the request and the
 * answer in JSON, the types from the descriptor sets:
 *
 *   rpcgate call --server=HOST:PORT --descriptor_set=F --service=S
 *                --method=M --json='{...}' [--protocol=baidu_std|http]
 *                [--log_id=N] [--timeout_ms=N] [--compress=...] ...
 *
 *   baidu_std  the JSON as wire bytes (json_pb), sent raw on a channel;
 *              the answer's bytes (decompressed) back to JSON
 *   http       POST /S/M with the JSON, brpc's HTTP mapping: the body of
 *              the answer as it came
 *
 * Success: the answer's JSON on stdout, exit 0.  A failed call: "rpcgate
 * call: error CODE (NAME): TEXT" on stderr, exit 1.  A service or method
 * the sets do not hold, or JSON that does not fit the request type: exit
 * 2 with the reason.
 */
#define _GNU_SOURCE /* strcasestr */
#include "app.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fbuf.h"
#include "codec/compress.h"
#include "codec/json_pb.h"
#include "codec/pbd.h"
#include "codec/rpc_errno.h"
#include "rpc/channel.h"

#define WHO "rpcgate call"
/* --wait_ms: how often a refused connection is tried again. */
#define WAIT_RETRY_MS 200
/* The largest HTTP answer read (the server's default max_body_size). */
#define CALL_HTTP_ANSWER_MAX (64u << 20)

static void print_error(int code, const char *text)
{
	fprintf(stderr, WHO ": error %d (%s): %s\n", code, app_error_name(code),
		text ? text : "");
}

/* ---- baidu_std ------------------------------------------------------------ */

static int call_baidu(struct app_config *cfg, const struct pbd_method *pm,
		      const char *service, const char *method,
		      const struct fbuf *pb)
{
	int64_t give_up =
	    clock_mono_ns() + flags_int(&cfg->flags, "wait_ms") * 1000000;
	int status = APP_EXIT_FAILURE, code, err;
	char why[JPB_WHY_MAX];
	struct app_runtime r;
	struct channel ch;
	struct rpc_call c;
	struct iobuf plain;
	struct fbuf js;
	uint8_t *flat;
	size_t n;

	if (app_runtime_start(&r, cfg, WHO))
		return APP_EXIT_FAILURE;
	if (app_channel_open(&ch, &r, cfg, 1, false))
		goto out_runtime;
	for (;;) {
		rpc_call_init(&c, &r.pool);
		app_call_inputs(cfg, &c);
		iobuf_init(&plain, &r.pool);
		err = iobuf_append(&plain, pb->p, pb->len);
		if (!err)
			err = compress_encode(c.compress_type, &plain, &c.body);
		iobuf_destroy(&plain);
		if (err) {
			fprintf(stderr, WHO ": cannot encode the request: %s\n",
				strerror(-err));
			break;
		}
		code = channel_call_raw(&ch, service, method, &c, NULL, NULL);
		if (code && app_not_up_yet(code) && clock_mono_ns() < give_up) {
			rpc_call_destroy(&c);
			usleep(WAIT_RETRY_MS * 1000);
			continue;
		}
		if (code) {
			print_error(code, c.error_text);
			break;
		}
		iobuf_init(&plain, &r.pool);
		err =
		    compress_decode(c.response_compress_type, &c.response_body,
				    &plain, CALL_HTTP_ANSWER_MAX);
		n = iobuf_len(&plain);
		flat = malloc(n + 1);
		fbuf_init(&js, NULL, 0);
		if (!err && flat) {
			iobuf_copy_out(&plain, 0, flat, n);
			err = jpb_to_json(pm->output, flat, n, &js, why);
			if (err == -EBADMSG)
				fprintf(stderr, WHO ": the answer: %s\n", why);
			else if (!err)
				status = printf("%.*s\n", (int)js.len,
						(const char *)js.p) < 0
					     ? APP_EXIT_FAILURE
					     : APP_EXIT_OK;
		} else {
			fprintf(stderr, WHO ": the answer: %s\n",
				strerror(err ? -err : ENOMEM));
		}
		free(flat);
		fbuf_destroy(&js);
		iobuf_destroy(&plain);
		break;
	}
	fflush(stdout);
	rpc_call_destroy(&c);
	channel_destroy(&ch);
out_runtime:
	app_runtime_stop(&r);
	return status;
}

/* ---- HTTP ----------------------------------------------------------------- */

/* A blocking connection to --server, within the time left. */
static int http_connect(const char *server, int64_t deadline_ns)
{
	char host[256], *colon;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai, *a;
	int fd = -1;

	snprintf(host, sizeof(host), "%s", server);
	colon = strrchr(host, ':');
	if (!colon)
		return -EINVAL;
	*colon = '\0';
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (getaddrinfo(host, colon + 1, &hints, &ai))
		return -EHOSTUNREACH;
	for (a = ai; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen)) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	(void)deadline_ns;
	return fd >= 0 ? fd : -ECONNREFUSED;
}

/* Reads the whole answer (the request said Connection: close). */
static int http_read(int fd, struct fbuf *in, int64_t deadline_ns)
{
	for (;;) {
		int64_t left = (deadline_ns - clock_mono_ns()) / 1000000;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint8_t *room;
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			return -ETIMEDOUT;
		room = fbuf_room(in, 16384);
		if (!room)
			return in->err;
		n = read(fd, room, 16384);
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		in->len += (size_t)n;
	}
}

static int call_http(struct app_config *cfg, const char *service,
		     const char *method, const char *json)
{
	int timeout = (int)flags_int(&cfg->flags, "timeout_ms");
	int64_t deadline = clock_mono_ns() +
			   (int64_t)(timeout < 0 ? 3600000 : timeout) * 1000000;
	const struct flag *log_id = flags_find(&cfg->flags, "log_id");
	const char *token = flags_str(&cfg->flags, "auth_token");
	struct fbuf req, in;
	const char *body, *text;
	char extra[160] = "";
	int fd, err, status = APP_EXIT_FAILURE, http_status;
	size_t off;

	fd = http_connect(flags_str(&cfg->flags, "server"), deadline);
	if (fd < 0) {
		print_error(-fd == ECONNREFUSED ? ECONNREFUSED : EHOSTUNREACH,
			    strerror(-fd));
		return APP_EXIT_FAILURE;
	}
	if (log_id->src != FLAG_SRC_DEFAULT)
		snprintf(extra, sizeof(extra), "log-id: %llu\r\n",
			 (unsigned long long)log_id->i);
	fbuf_init(&req, NULL, CALL_HTTP_ANSWER_MAX);
	fbuf_init(&in, NULL, CALL_HTTP_ANSWER_MAX);
	fbuf_printf(&req,
		    "POST /%s/%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rpcgate "
		    "call\r\nContent-Type: application/json\r\n"
		    "Content-Length: %zu\r\nConnection: close\r\n%s",
		    service, method, flags_str(&cfg->flags, "server"),
		    strlen(json), extra);
	if (timeout > 0)
		fbuf_printf(&req, "x-bd-timeout-ms: %d\r\n", timeout);
	if (*token)
		fbuf_printf(&req, "Authorization: %s\r\n", token);
	fbuf_puts(&req, "\r\n");
	fbuf_puts(&req, json);
	err = req.err;
	for (off = 0; !err && off < req.len;) {
		ssize_t n = write(fd, req.p + off, req.len - off);

		if (n < 0)
			err = -errno;
		else
			off += (size_t)n;
	}
	if (!err)
		err = http_read(fd, &in, deadline);
	close(fd);
	text = fbuf_cstr(&in);
	if (err || !text) {
		print_error(err == -ETIMEDOUT ? RPC_ERPCTIMEDOUT : RPC_EEOF,
			    strerror(err ? -err : ENOMEM));
		goto out;
	}
	body = strstr(text, "\r\n\r\n");
	if (strncmp(text, "HTTP/1.", 7) || !body) {
		print_error(RPC_ERESPONSE, "not an HTTP answer");
		goto out;
	}
	body += 4;
	http_status = atoi(text + 9);
	if (http_status == 200) {
		printf("%s\n", body);
		status = APP_EXIT_OK;
	} else {
		const char *code = strcasestr(text, "\r\nx-bd-error-code: ");
		int c = code && code < body ? atoi(code + 19) : RPC_EHTTP;

		fprintf(stderr, WHO ": error %d (%s): HTTP %d: %s\n", c,
			app_error_name(c), http_status, body);
	}
out:
	fflush(stdout);
	fbuf_destroy(&req);
	fbuf_destroy(&in);
	return status;
}

int app_call_json(struct app_config *cfg)
{
	const char *sname = flags_str(&cfg->flags, "service");
	const char *mname = flags_str(&cfg->flags, "method");
	const char *json = flags_str(&cfg->flags, "json");
	const struct pbd_service *ps;
	const struct pbd_method *pm;
	struct pbd_pool pool;
	char why[JPB_WHY_MAX];
	struct fbuf pb;
	int status = APP_EXIT_CONFIG, err;

	if (!app_require_server(cfg, WHO))
		return APP_EXIT_CONFIG;
	if (app_descriptors_load(&pool, cfg, WHO))
		return APP_EXIT_CONFIG;
	ps = pbd_find_service(&pool, sname, strlen(sname));
	pm = ps ? pbd_find_method(ps, mname, strlen(mname)) : NULL;
	if (!pm) {
		fprintf(stderr,
			WHO ": no %s %s in the descriptor sets (give the "
			    "--descriptor_set that holds it)\n",
			ps ? "method" : "service", ps ? mname : sname);
		goto out;
	}
	fbuf_init(&pb, NULL, 0);
	err = jpb_from_json(pm->input, json, strlen(json), &pb, why);
	if (err) {
		fprintf(stderr, WHO ": --json does not fit %s: %s\n",
			pm->input->full_name,
			err == -ENODATA	  ? "it is empty and the type has "
					    "required fields"
			: err == -EBADMSG ? why
					  : strerror(-err));
		fbuf_destroy(&pb);
		goto out;
	}
	if (!strcmp(flags_str(&cfg->flags, "protocol"), "http"))
		status = call_http(cfg, ps->full_name, pm->name, json);
	else
		status = call_baidu(cfg, pm, ps->full_name, pm->name, &pb);
	fbuf_destroy(&pb);
out:
	pbd_pool_destroy(&pool);
	return status;
}
