/* rpc_errno: brpc.Errno names and texts (see rpc_errno.h). */
#include "rpc_errno.h"

#include <errno.h>
#include <stddef.h>

#include "base/util.h"

struct rpc_errno_entry {
	int code;
	const char *name;
	const char *text; /* brpc's registered berror() text, or NULL */
};

/* Texts verbatim from brpc's BAIDU_REGISTER_ERRNO lines. */
static const struct rpc_errno_entry rpc_errno_table[] = {
    {RPC_ENOSERVICE, "ENOSERVICE", "No such service"},
    {RPC_ENOMETHOD, "ENOMETHOD", "No such method"},
    {RPC_EREQUEST, "EREQUEST", "Bad request"},
    {RPC_ERPCAUTH, "ERPCAUTH", "Authentication failed"},
    {RPC_ETOOMANYFAILS, "ETOOMANYFAILS", "Too many sub channels failed"},
    {RPC_EPCHANFINISH, "EPCHANFINISH", "ParallelChannel finished"},
    {RPC_EBACKUPREQUEST, "EBACKUPREQUEST", "Sending backup request"},
    {RPC_ERPCTIMEDOUT, "ERPCTIMEDOUT", "RPC call is timed out"},
    {RPC_EFAILEDSOCKET, "EFAILEDSOCKET", "Broken socket"},
    {RPC_EHTTP, "EHTTP", "Bad http call"},
    {RPC_EOVERCROWDED, "EOVERCROWDED", "The server is overcrowded"},
    {RPC_ERTMPPUBLISHABLE, "ERTMPPUBLISHABLE",
     "RtmpRetryingClientStream is publishable"},
    {RPC_ERTMPCREATESTREAM, "ERTMPCREATESTREAM",
     "createStream was rejected by the RTMP server"},
    {RPC_EEOF, "EEOF", "Got EOF"},
    {RPC_EUNUSED, "EUNUSED", "The socket was not needed"},
    {RPC_ESSL, "ESSL", "SSL related operation failed"},
    {RPC_EH2RUNOUTSTREAMS, "EH2RUNOUTSTREAMS",
     "The H2 socket was run out of streams"},
    {RPC_EREJECT, "EREJECT", NULL},
    {RPC_EPROGREADTIMEOUT, "EPROGREADTIMEOUT", NULL},
    {RPC_EINTERNAL, "EINTERNAL", "General internal error"},
    {RPC_ERESPONSE, "ERESPONSE", "Bad response"},
    {RPC_ELOGOFF, "ELOGOFF", "Server is stopping"},
    {RPC_ELIMIT, "ELIMIT", "Reached server's max_concurrency"},
    {RPC_ECLOSE, "ECLOSE", "Close socket initiatively"},
    {RPC_EITP, "EITP", "Bad Itp response"},
    {RPC_ESHUTDOWNWRITE, "ESHUTDOWNWRITE", NULL},
    {RPC_ERDMA, "ERDMA", "RDMA verbs error"},
    {RPC_ERDMAMEM, "ERDMAMEM", "Memory not registered for RDMA"},
};

static const struct rpc_errno_entry *rpc_errno_find(int code)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(rpc_errno_table); i++)
		if (rpc_errno_table[i].code == code)
			return &rpc_errno_table[i];
	return NULL;
}

const char *rpc_errno_name(int code)
{
	const struct rpc_errno_entry *e = rpc_errno_find(code);

	return e ? e->name : NULL;
}

const char *rpc_errno_text(int code)
{
	const struct rpc_errno_entry *e = rpc_errno_find(code);

	return e ? e->text : NULL;
}

int rpc_errno_http_status(int code)
{
	switch (code) {
	case 0:
		return 200;
	case RPC_ENOSERVICE:
	case RPC_ENOMETHOD:
		return 404;
	case RPC_ERPCAUTH:
		return 401;
	case RPC_EREQUEST:
	case EINVAL: /* brpc uses the errno values too */
		return 400;
	case RPC_ELIMIT:
	case RPC_ELOGOFF:
		return 503;
	case EPERM:
		return 403;
	case RPC_ERPCTIMEDOUT:
	case ETIMEDOUT:
		return 504;
	default:
		return 500;
	}
}
