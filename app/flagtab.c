/*
 * flagtab: every flag of rpcgate, in one table.  Modules keep their
 * options in their own structs; app/ maps these flags onto them.
 * Names follow brpc's where brpc has the same knob.
 */
#include "base/budget.h"
#include "base/uaddr.h"
#include "app.h"
#include "netcfg.h"
#include "rpc/climit.h"

#include <ctype.h>
#include <unistd.h>
#include <string.h>

static const char *const budget_modes[] = {"strict", "auto", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error",
					 NULL};
/* channel_protocol_name()'s names (net/rpc/channel.h), and http (call
 * --json only). */
static const char *const call_protocols[] = {"baidu_std", "http", "grpc",
					     NULL};

/* --json: a bool word (bench) or a JSON object (call). */
static bool json_flag_valid(const char *v)
{
	bool b;

	while (*v == ' ' || *v == '\t' || *v == '\n')
		v++;
	return *v == '{' || flags_parse_bool(v, &b);
}

/* --descriptor_set: each of the files can be read (checked again, with
 * its contents, when it is loaded). */
static bool descriptor_set_valid(const char *v)
{
	return !*v || access(v, R_OK) == 0;
}

/* compress_type_name()'s names of the types with a codec
 * (net/codec/compress.h). */
static const char *const compress_types[] = {"none", "snappy", "gzip", "zlib",
					     NULL};
/* channel_conn_type_name()'s names (net/rpc/channel.h). */
static const char *const conn_types[] = {"single", "pooled", "short", NULL};
static const char *const transports[] = {"tcp", "rdma", NULL};
/* rdma_recv_block_type: brpc's names (its "huge", 2 MiB, is not offered). */
static const char *const recv_block_types[] = {"default", "large", NULL};
/* lb_kind_name()'s names (net/cluster/lb.h). */
static const char *const lb_kinds[] = {"rr", "wrr",	     "wr",    "random",
				       "la", "c_murmurhash", "c_md5", NULL};

/* Empty, or USER or USER:GROUP with both parts non-empty and without
 * space or a second colon (names are looked up at the start). */
static bool concurrency_valid(const char *v)
{
	enum climit_mode mode;
	char why[128];
	int n;

	return !climit_parse(v, &mode, &n, why, sizeof(why));
}

/* SERVICE.METHOD=LIMIT: the method's own max_concurrency. */
static bool method_concurrency_valid(const char *v)
{
	const char *eq = strchr(v, '='), *dot = NULL;

	if (!*v)
		return true;
	for (const char *p = v; eq && p < eq; p++)
		if (*p == '.')
			dot = p;
	return dot && dot > v && dot + 1 < eq && concurrency_valid(eq + 1);
}

static bool user_valid(const char *v)
{
	const char *colon = strchr(v, ':');

	if (!*v)
		return true;
	if (colon == v || (colon && (!colon[1] || strchr(colon + 1, ':'))))
		return false;
	for (const char *p = v; *p; p++)
		if (isspace((unsigned char)*p) || !isprint((unsigned char)*p))
			return false;
	return strlen(v) < APP_USER_NAME_MAX;
}

/* Empty (not given), or HOST:PORT with a non-empty host and a port of
 * 1..65535 after the last colon ("[::1]:8000" works too). */
static bool server_addr_valid(const char *v)
{
	const char *colon = strrchr(v, ':');
	long port = 0;

	if (!*v)
		return true;
	if (uaddr_is_unix(v)) {
		struct sockaddr_storage ss;
		socklen_t len;

		return uaddr_parse(v, &ss, &len) == 0;
	}
	if (!colon || colon == v || !colon[1] || strlen(colon + 1) > 5)
		return false;
	for (const char *p = colon + 1; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		port = port * 10 + (*p - '0');
	}
	return port >= 1 && port <= 65535;
}

/* Empty, or an IPv4 address with an optional /PREFIX. */
static bool cidr_valid(const char *v)
{
	unsigned int addr;
	int prefix;

	return !*v || netcfg_parse_cidr(v, &addr, &prefix) == 0;
}

/* Empty, or an IPv4 address. */
static bool ipv4_valid(const char *v)
{
	return !*v || (!strchr(v, '/') && cidr_valid(v));
}

/* Empty, or an interface name the kernel would take. */
static bool ifname_valid(const char *v)
{
	return strlen(v) < 16 && !strchr(v, '/') && !strchr(v, ' ');
}

const struct flag_def app_flag_defs[] = {
    /* thread budget (DESIGN.md, "Threads: the budget") */
    {
	.name = "worker_num",
	.type = FLAG_INT,
	.def = "4", /* replaced at start by cores + 1, at least 4 */
	.min = 2,
	.max = BUDGET_MAX_WORKERS,
	.help = "every runtime thread the process may run "
		"(default: cores + 1, at least 4)",
    },
    {
	.name = "event_dispatcher_num",
	.type = FLAG_INT,
	.def = "1",
	.min = 1,
	.max = BUDGET_MAX_DISPATCHERS,
	.help = "epoll event loops, each a thread taken from worker_num",
    },
    {
	.name = "event_dispatcher_spin_us",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = 10000,
	.help = "an idle event loop polls this long before it sleeps: "
		"answers that come meanwhile cost no wake-up (lower latency "
		"at low load), for a CPU busy while it polls (0: sleep at "
		"once)",
    },
    {
	.name = "rdma_poller_num",
	.type = FLAG_INT,
	.def = "1",
	.min = 1,
	.max = BUDGET_MAX_POLLERS,
	.help = "busy-polling CQ threads, taken from worker_num when "
		"rdma_use_polling is true",
    },
    {
	.name = "rdma_use_polling",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "poll RDMA completion queues with busy threads instead "
		"of completion events",
    },
    {
	.name = "rdma_poller_yield",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "an RDMA poller that found nothing yields its CPU "
		"(sched_yield) before the next pass",
    },
    {
	.name = "thread_budget",
	.type = FLAG_ENUM,
	.def = "strict",
	.choices = budget_modes,
	.help = "strict: refuse event_dispatcher_num + rdma_poller_num "
		">= worker_num; auto: raise worker_num to fit",
    },
    /* the RDMA transport (rdma/rdt.h; names and defaults as brpc's) */
    {
	.name = "rdma",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "echo: accept RDMA hellos on the port (plain TCP clients "
		"are still served)",
    },
    {
	.name = "transport",
	.type = FLAG_ENUM,
	.def = "tcp",
	.choices = transports,
	.help = "call, bench: rdma runs baidu_std over a QP after the "
		"hello (plain TCP when there is no device or the server "
		"refuses)",
    },
    {
	.name = "rdma_device",
	.type = FLAG_STRING,
	.def = "",
	.expect = "a device name such as rxe0",
	.help = "RDMA device (empty: the first with an active port)",
    },
    {
	.name = "rdma_port",
	.type = FLAG_INT,
	.def = "1",
	.min = 1,
	.max = 255,
	.help = "RDMA device port",
    },
    {
	.name = "rdma_gid_index",
	.type = FLAG_INT,
	.def = "-1",
	.min = -1,
	.max = 65535,
	.help = "GID index (-1: the highest with a non-zero interface id)",
    },
    {
	.name = "rdma_sq_size",
	.type = FLAG_INT,
	.def = "128",
	.min = 16,
	.max = 4096,
	.help = "send queue depth of each QP",
    },
    {
	.name = "rdma_rq_size",
	.type = FLAG_INT,
	.def = "128",
	.min = 16,
	.max = 4096,
	.help = "receive queue depth of each QP (receive buffers posted)",
    },
    {
	.name = "rdma_withhold_credits",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "testing: never return RDMA credits to the peer (plays a "
		"broken peer: the peer's sends stall once its window is "
		"used)",
    },
    {
	.name = "rdma_recv_block_type",
	.type = FLAG_ENUM,
	.def = "default",
	.choices = recv_block_types,
	.help = "RDMA receive buffer per work request, as brpc's flag: "
		"default (8 KiB) or large (64 KiB: fewer sends per big "
		"message, rdma_rq_size x 64 KiB posted per connection)",
    },
    {
	.name = "rdma_credit_timeout_ms",
	.type = FLAG_INT,
	.def = "10000",
	.min = 0,
	.max = 3600000,
	.help = "an RDMA connection whose send window stays used up this "
		"long without a credit back from the peer is closed, with "
		"the reason logged (a stuck or broken peer; 0: never)",
    },
    {
	.name = "rdma_handshake_timeout_ms",
	.type = FLAG_INT,
	.def = "3000",
	.min = 1,
	.max = 600000,
	.help = "a hello that has not finished by then closes the "
		"connection, logged on both sides",
    },
    {
	.name = "rdma_max_handshakes",
	.type = FLAG_INT,
	.def = "16",
	.min = 0,
	.max = 65536,
	.help = "RDMA connections a client opens to one server at once "
		"(connect and hello); more wait their turn in order, so a "
		"burst of new connections never starves the handshakes under "
		"way past rdma_handshake_timeout_ms (0: no limit)",
    },
    {
	.name = "rdma_memory_pool_region_mb",
	.type = FLAG_INT,
	.def = "64",
	.min = 1,
	.max = 512,
	.help = "registered memory is added in regions of this size",
    },
    {
	.name = "rdma_memory_pool_initial_size_mb",
	.type = FLAG_INT,
	.def = "64",
	.min = 1,
	.max = 65536,
	.help = "registered memory set up at start, in whole regions "
		"(registering more later stalls the threads that need "
		"blocks meanwhile: size it for the connections expected, "
		"about 2 MiB each)",
    },
    {
	.name = "rdma_memory_pool_max_regions",
	.type = FLAG_INT,
	.def = "16",
	.min = 1,
	.max = 1024,
	.help = "at most this many registered regions; past them "
		"connections fail with a pool-exhausted error",
    },
    /* logging */
    {
	.name = "log_level",
	.type = FLAG_ENUM,
	.def = "info",
	.choices = log_levels,
	.runtime = true,
	.help = "lowest level of log lines written",
    },
    /* flag sources */
    {
	.name = "cmdline_file",
	.type = FLAG_STRING,
	.def = APP_KERNEL_CMDLINE,
	.expect = "a file path",
	.help = "where rpcgate.NAME=VALUE kernel arguments are read "
		"from",
    },
    /* echo: the example.EchoService server */
    {
	.name = "port",
	.type = FLAG_INT,
	.def = "8000",
	.min = 0,
	.max = 65535,
	.help = "echo: TCP port to serve on (0: any free port, printed "
		"at start)",
    },
    {
	.name = "listen",
	.type = FLAG_STRING,
	.def = "0.0.0.0",
	.expect = "an address or host name, or unix:/PATH or unix:@NAME",
	.help = "echo: address to serve on (0.0.0.0: every IPv4 "
		"address; unix:/PATH a Unix socket, unix:@NAME an abstract "
		"one)",
    },
    {
	.name = "sleep_ms",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = APP_SLEEP_MS_MAX,
	.help = "echo: delay every answer by this long, to play a slow "
		"server",
    },
    {
	.name = "discard",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "echo: answer every call with an empty message and no "
		"attachment (the bytes go one way: bench --oneway)",
    },
    {
	.name = "serve_us",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = 60000000,
	.help = "echo: each call holds one of --serve_slots slots this "
		"long, and calls that find none free wait in order (a "
		"backend of fixed capacity; 0: answer at once)",
    },
    {
	.name = "serve_slots",
	.type = FLAG_INT,
	.def = "1",
	.min = 1,
	.max = 1000000,
	.help = "echo: the slots of --serve_us (calls served at once)",
    },
    {
	.name = "fail_percent",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = 100,
	.help = "echo: fail this share of calls with 4242, spread "
		"evenly (plays a sick upstream)",
    },
    {
	.name = "user",
	.type = FLAG_STRING,
	.def = "",
	.valid = user_valid,
	.expect = "USER or USER:GROUP, names or numbers",
	.help = "echo, gateway: run as this user (and its group, or "
		"GROUP) from the start, keeping of root's rights only the "
		"binding of ports below 1024; registered RDMA memory must "
		"then fit in its locked-memory limit (ulimit -l) (empty: "
		"stay as started)",
    },
    {
	.name = "crash_after_ms",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = APP_SLEEP_MS_MAX,
	.help = "echo: die by SIGKILL this long after the start (plays a "
		"crashed upstream where no one can kill -9 it, e.g. in a VM; "
		"0: never)",
    },
    {
	.name = "echo_on_workers",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "echo: run the handler on task workers instead of the "
		"event loop that read the request",
    },
    {
	.name = "auth_token",
	.type = FLAG_STRING,
	.def = "",
	.help = "echo: the credential a client must send (empty: any); "
		"call, bench: the credential sent (empty: none)",
    },
    /* TLS (net/rpc/tls.h) */
    {
	.name = "tls_cert",
	.type = FLAG_STRING,
	.def = "",
	.help = "echo, gateway: serve TLS with this certificate chain "
		"(PEM, leaf first) beside plain on the same port; with "
		"--tls_key.  Re-read on SIGHUP and when the file changes "
		"(empty: no TLS)",
    },
    {
	.name = "tls_key",
	.type = FLAG_STRING,
	.def = "",
	.help = "echo, gateway: the private key of --tls_cert (PEM), "
		"read before --user drops privileges",
    },
    {
	.name = "tls_client_ca",
	.type = FLAG_STRING,
	.def = "",
	.help = "echo, gateway: mutual TLS: clients must present a "
		"certificate this CA (PEM) signed; its subject reaches "
		"the auth hook and the access log (empty: none asked)",
    },
    {
	.name = "tls_required",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "echo, gateway: refuse plain connections on a TLS port "
		"(an HTTP client is answered 400)",
    },
    {
	.name = "tls_handshake_timeout_ms",
	.type = FLAG_INT,
	.def = "10000",
	.min = 100,
	.max = 600000,
	.help = "a TLS handshake, server's or client's, must end within "
		"this, else it fails (logged with the step it waited for)",
    },
    {
	.name = "tls",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "call, bench: connect to --server with TLS (a gateway "
		"route: ;tls=true)",
    },
    {
	.name = "tls_ca",
	.type = FLAG_STRING,
	.def = "",
	.help = "call, bench, gateway routes: the CA (PEM) TLS servers "
		"are verified against (empty: the system store)",
    },
    {
	.name = "tls_verify",
	.type = FLAG_BOOL,
	.def = "true",
	.help = "call, bench, gateway routes: verify the TLS server's "
		"certificate (false: accept any, for tests only)",
    },
    {
	.name = "tls_server_name",
	.type = FLAG_STRING,
	.def = "",
	.help = "call, bench: the name sent as SNI and checked in the "
		"server's certificate (empty: --server's host when it is "
		"a name)",
    },
    {
	.name = "tls_client_cert",
	.type = FLAG_STRING,
	.def = "",
	.help = "call, bench, gateway routes: the certificate (PEM) "
		"presented to TLS servers that ask; with --tls_client_key",
    },
    {
	.name = "tls_client_key",
	.type = FLAG_STRING,
	.def = "",
	.help = "the key of --tls_client_cert (PEM)",
    },
    /* call and bench: example.EchoService clients */
    {
	.name = "server",
	.type = FLAG_STRING,
	.def = "",
	.valid = server_addr_valid,
	.expect = "HOST:PORT",
	.help = "call, bench: the server to call, HOST:PORT "
		"(required)",
    },
    {
	.name = "message",
	.type = FLAG_STRING,
	.def = "",
	.help = "call: the request's message",
    },
    {
	.name = "attachment",
	.type = FLAG_STRING,
	.def = "",
	.help = "call: the request's attachment (empty: none)",
    },
    {
	.name = "log_id",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = INT64_MAX,
	.help = "call: the request's log_id (sent only when given)",
    },
    {
	.name = "compress",
	.type = FLAG_ENUM,
	.def = "none",
	.choices = compress_types,
	.help = "call, bench: compression of the request body (the "
		"echo server answers in kind)",
    },
    {
	.name = "timeout_ms",
	.type = FLAG_INT,
	.def = "500",
	.min = -1,
	.max = APP_TIMEOUT_MS_MAX,
	.help = "call, bench: deadline of each call over all its "
		"attempts (-1: none)",
    },
    {
	.name = "max_retry",
	.type = FLAG_INT,
	.def = "3",
	.min = 0,
	.max = APP_MAX_RETRY_MAX,
	.help = "call, bench: extra attempts after connection failures",
    },
    {
	.name = "connection_type",
	.type = FLAG_ENUM,
	.def = "single",
	.choices = conn_types,
	.help = "call, bench: single (calls share one connection), "
		"pooled (one call per connection at a time) or short "
		"(a connection per call)",
    },
    {
	.name = "checksum",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "call, bench: send a CRC32C of each request",
    },
    {
	.name = "concurrency",
	.type = FLAG_INT,
	.def = "1",
	.min = 1,
	.max = APP_BENCH_CONCURRENCY_MAX,
	.help = "bench: calls kept in flight",
    },
    {
	.name = "payload",
	.type = FLAG_INT,
	.def = "16",
	.min = 0,
	.max = APP_BENCH_PAYLOAD_MAX,
	.help = "bench: bytes of each request's message",
    },
    {
	.name = "duration",
	.type = FLAG_INT,
	.def = "5",
	.min = 1,
	.max = APP_BENCH_DURATION_MAX,
	.help = "bench: seconds to run",
    },
    {
	.name = "json",
	.type = FLAG_STRING,
	.def = "false",
	.bare = "true",
	.valid = json_flag_valid,
	.expect = "true or false (bench), or a JSON object (call)",
	.help = "bench: true prints the result as one JSON line, and no "
		"progress; call: the request, a JSON object, for --service "
		"and --method (their types from --descriptor_set)",
    },
    {
	.name = "service",
	.type = FLAG_STRING,
	.def = "example.EchoService",
	.help = "call: the service to call (with --json: any service of "
		"--descriptor_set)",
    },
    {
	.name = "method",
	.type = FLAG_STRING,
	.def = "Echo",
	.help = "call: the method of --service to call",
    },
    {
	.name = "protocol",
	.type = FLAG_ENUM,
	.def = "baidu_std",
	.choices = call_protocols,
	.help = "call, bench: baidu_std, or grpc (gRPC over HTTP/2: h2c "
		"with prior knowledge, or over TLS with --tls); call --json "
		"also http (POST /SERVICE/METHOD with the JSON, brpc's "
		"HTTP mapping)",
    },
    {
	.name = "oneway",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "bench: send --payload bytes as the attachment of an empty "
		"message, and expect an empty answer (echo --discard): "
		"throughput one way",
    },
    {
	.name = "verify",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "bench: messages and attachments of random sizes up to "
		"--payload, every answer checked byte for byte",
    },
    {
	.name = "rate",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = 10000000,
	.help = "bench: start this many calls a second whatever the "
		"answers' latency (open loop, spread over --concurrency "
		"slots; 0: each slot calls again as soon as answered)",
    },
    {
	.name = "wait_ms",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = APP_TIMEOUT_MS_MAX,
	.help = "call, bench: while the server cannot be reached (refused, "
		"unreachable, no answer: still starting), try again "
		"for up to this long",
    },
    {
	.name = "delete",
	.type = FLAG_STRING,
	.def = "",
	.valid = ifname_valid,
	.expect = "an RDMA device name",
	.help = "rdma-link: the RDMA device to delete (rxe0)",
    },
    {
	.name = "after_ms",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = APP_SLEEP_MS_MAX,
	.help = "rdma-link: wait this long first (to pull the device "
		"during traffic)",
    },
    {
	.name = "readd",
	.type = FLAG_STRING,
	.def = "",
	.valid = ifname_valid,
	.expect = "a network interface name",
	.help = "rdma-link: once deleted, add the device back as an rxe "
		"device over this network interface (eth0), as `rdma link "
		"add NAME type rxe netdev IF` does",
    },
    {
	.name = "readd_after_ms",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = APP_SLEEP_MS_MAX,
	.help = "rdma-link: wait this long between the delete and --readd",
    },
    {
	.name = "memlock_kb",
	.type = FLAG_INT,
	.def = "-1",
	.min = -1,
	.max = 1 << 30,
	.help = "rdma-link: once deleted, set the locked-memory limit of "
		"every process not running as root to this many KiB (plays "
		"an operator tightening ulimit -l while the device is away; "
		"-1: leave them)",
    },
    {
	.name = "status",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = 255,
	.help = "exit: the exit status to end with",
    },
    /* the appliance: PID 1 of a VM (app/pid1.c) */
    {
	.name = "run",
	.type = FLAG_STRING,
	.def = "",
	.help = "PID 1: the foreground role, a subcommand line (e.g. "
		"\"call --server=10.0.2.16:8000\"); its exit status "
		"becomes the VM's; empty: the roles run until "
		"shutdown",
    },
    {
	.name = "spawn",
	.type = FLAG_STRING,
	.def = "",
	.repeat = true,
	.help = "PID 1: a background role, a subcommand line (e.g. "
		"\"echo --port=8000\"); give it once per role",
    },
    {
	.name = "ip",
	.type = FLAG_STRING,
	.def = "",
	.valid = cidr_valid,
	.expect = "an IPv4 address/prefix such as 10.0.2.15/24",
	.help = "PID 1: the address of --nic; empty: only lo is set "
		"up",
    },
    {
	.name = "gateway",
	.type = FLAG_STRING,
	.def = "",
	.valid = ipv4_valid,
	.expect = "an IPv4 address such as 10.0.2.2",
	.help = "PID 1: the default route's gateway; empty: none",
    },
    {
	.name = "nic",
	.type = FLAG_STRING,
	.def = "eth0",
	.valid = ifname_valid,
	.expect = "an interface name",
	.help = "PID 1: the network interface --ip applies to",
    },
    {
	.name = "rxe",
	.type = FLAG_STRING,
	.def = "",
	.valid = ifname_valid,
	.expect = "an interface name",
	.help = "PID 1: create soft-RoCE device rxe0 over this "
		"interface and wait until its port is active; empty: "
		"no RDMA device",
    },
    {
	.name = "rxe_wait_ms",
	.type = FLAG_INT,
	.def = "15000",
	.min = 100,
	.max = 600000,
	.help = "PID 1: how long the rxe port may take to become "
		"active",
    },
    {
	.name = "shutdown_grace_ms",
	.type = FLAG_INT,
	.def = "10000",
	.min = 0,
	.max = 600000,
	.help = "PID 1: how long roles get to stop after SIGTERM "
		"before SIGKILL",
    },
    /* HTTP/JSON on every server port */
    {
	.name = "descriptor_set",
	.type = FLAG_STRING,
	.def = "",
	.repeat = true,
	.valid = descriptor_set_valid,
	.expect = "the path of a readable file",
	.help = "echo, gateway, call: a FileDescriptorSet file (protoc "
		"--include_imports -o FILE) whose types HTTP/JSON bodies are "
		"read and written with (echo mirrors its services); give it "
		"once per file",
    },
    {
	.name = "max_body_size",
	.type = FLAG_INT,
	.def = "67108864",
	.min = 1024,
	.max = 1073741824,
	.help = "echo, gateway: the largest request body taken, baidu_std "
		"or HTTP (HTTP: 413 before any byte of it is kept)",
    },
    {
	.name = "http_header_timeout_ms",
	.type = FLAG_INT,
	.def = "10000",
	.min = 1,
	.max = 600000,
	.help = "echo, gateway: an HTTP request's head must come within "
		"this long of its first byte (else 408 and close)",
    },
    {
	.name = "http_idle_timeout_ms",
	.type = FLAG_INT,
	.def = "60000",
	.min = 1,
	.max = 86400000,
	.help = "echo, gateway: an idle HTTP keep-alive connection is "
		"closed after this long",
    },
    /* echo and gateway: overload */
    {
	.name = "max_concurrency",
	.type = FLAG_STRING,
	.def = "0",
	.valid = concurrency_valid,
	.expect = "auto, 0 (no limit) or a count",
	.help = "echo, gateway: calls in flight before new ones are "
		"answered ELIMIT at once: a count, auto (found from the "
		"latency, brpc's auto limiter) or 0 (no limit)",
    },
    {
	.name = "method_max_concurrency",
	.type = FLAG_STRING,
	.def = "",
	.repeat = true,
	.valid = method_concurrency_valid,
	.expect = "SERVICE.METHOD=auto|N",
	.help = "echo: one method's own max_concurrency, as "
		"SERVICE.METHOD=LIMIT (give it once per method)",
    },
    {
	.name = "max_connections",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = 10000000,
	.help = "echo, gateway: connections open at once; more are "
		"closed as they are accepted (0: as many as descriptors "
		"allow)",
    },
    {
	.name = "max_inflight_bytes",
	.type = FLAG_INT,
	.def = "0",
	.min = 0,
	.max = INT64_MAX,
	.help = "echo, gateway: bytes of requests read and answers queued, "
		"all calls together, before new calls are answered ELIMIT "
		"(0: a quarter of the memory)",
    },
    {
	.name = "write_timeout_ms",
	.type = FLAG_INT,
	.def = "30000",
	.min = 0,
	.max = 86400000,
	.help = "echo, gateway: a connection whose answers make no "
		"progress this long (the client does not read) is closed "
		"(0: never)",
    },
    /* gateway: routes to upstream clusters */
    {
	.name = "route",
	.type = FLAG_STRING,
	.def = "",
	.repeat = true,
	.help = "gateway: SERVICE=NAMING_URL[;lb=NAME][;transport=tcp|"
		"rdma][;timeout_ms=N][;max_retry=N][;backup_request_ms=N]"
		"[;connection_type=T][;protocol=baidu_std|grpc]"
		"[;retry_budget_percent=N]"
		"[;circuit_breaker=BOOL][;health_check_path=/P][;tag=T]; "
		"SERVICE a full name, a "
		"package.* prefix or *; give it once per route",
    },
    {
	.name = "lb",
	.type = FLAG_ENUM,
	.def = "rr",
	.choices = lb_kinds,
	.help = "gateway: the load balancer of routes that name none",
    },
    {
	.name = "backup_request_ms",
	.type = FLAG_INT,
	.def = "-1",
	.min = -1,
	.max = APP_TIMEOUT_MS_MAX,
	.help = "gateway: send a backup request to another instance "
		"after this long without an answer (-1: never)",
    },
    {
	.name = "health_check_interval_s",
	.type = FLAG_INT,
	.def = "3",
	.min = 1,
	.max = 3600,
	.help = "gateway: how often an isolated instance is tried "
		"again",
    },
    {
	.name = "retry_budget_percent",
	.type = FLAG_INT,
	.def = "10",
	.min = 0,
	.max = 100,
	.help = "gateway: retries allowed as a share of calls (100: no "
		"cap)",
    },
    {
	.name = "dns_servers",
	.type = FLAG_STRING,
	.def = "",
	.expect = "IP[:PORT],...",
	.help = "gateway: DNS servers for http:// naming (empty: "
		"/etc/resolv.conf's)",
    },
    {
	.name = "ns_access_interval",
	.type = FLAG_INT,
	.def = "5",
	.min = 1,
	.max = 3600,
	.help = "gateway: seconds between two resolutions of an "
		"http:// naming URL",
    },
    {
	.name = "circuit_breaker",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "gateway: isolate for a while an instance whose recent "
		"calls fail too often (as brpc's enable_circuit_breaker)",
    },
    {
	.name = "access_log",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "gateway: log one line per call (info level)",
    },
    {
	.name = "routes_from",
	.type = FLAG_STRING,
	.def = "",
	.expect = "file://PATH or etcd://HOST:PORT[,...]/PREFIX",
	.help = "gateway: more routes, in --route's syntax, applied live: a "
		"file's lines (read again on SIGHUP and when it changes) or "
		"the keys under an etcd prefix (watched); /routes lists them",
    },
    /* consul:// naming, brpc's flags (net/cluster/consul) */
    {
	.name = "consul_agent_addr",
	.type = FLAG_STRING,
	.def = "http://127.0.0.1:8500",
	.expect = "http://HOST:PORT",
	.help = "gateway: the consul agent consul:// naming asks",
    },
    {
	.name = "consul_url_parameter",
	.type = FLAG_STRING,
	.def = "?stale&passing",
	.help = "gateway: the query of consul:// requests (stale: any "
		"server answers; passing: healthy instances only)",
    },
    {
	.name = "consul_blocking_query_wait_secs",
	.type = FLAG_INT,
	.def = "60",
	.min = 1,
	.max = 600,
	.help = "gateway: how long a consul blocking query waits for a "
		"change",
    },
    {
	.name = "consul_enable_degrade_to_file_naming_service",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "gateway: when the consul agent cannot be reached before "
		"any answer, read consul_file_naming_service_dir/SERVICE "
		"(file:// syntax) instead",
    },
    {
	.name = "consul_file_naming_service_dir",
	.type = FLAG_STRING,
	.def = "",
	.help = "gateway: the folder of the degrade files, one per service",
    },

    {
	.name = "register",
	.type = FLAG_STRING,
	.def = "",
	.expect = "etcd://HOST:PORT[,...]/PREFIX",
	.help = "echo, gateway: put this server's address under PREFIX in "
		"etcd, under a lease kept alive and revoked at a graceful "
		"stop (empty: no registration)",
    },
    {
	.name = "register_addr",
	.type = FLAG_STRING,
	.def = "",
	.expect = "HOST:PORT",
	.help = "echo, gateway: the address registered (empty: the listen "
		"address; a wildcard host becomes the address etcd is "
		"reached from)",
    },
    {
	.name = "register_tag",
	.type = FLAG_STRING,
	.def = "",
	.help = "echo, gateway: the tag registered with the address (wrr "
		"reads it as a weight)",
    },
    {
	.name = "register_ttl_s",
	.type = FLAG_INT,
	.def = "10",
	.min = 2,
	.max = 3600,
	.help = "echo, gateway: the lease's TTL: a killed server leaves "
		"the registry within it",
    },
    /* informational */
    {
	.name = "help",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "list subcommands and flags, then exit",
    },
    {
	.name = "version",
	.type = FLAG_BOOL,
	.def = "false",
	.help = "print the version, then exit",
    },
};

const size_t app_flag_count = sizeof(app_flag_defs) / sizeof(app_flag_defs[0]);

bool app_flag_true(const struct flags *fl, const char *name)
{
	bool b;

	return flags_parse_bool(flags_str(fl, name), &b) && b;
}
