/*
 * rpc_errno: brpc's error codes (brpc.Errno, src/brpc/errno.proto), the
 * values that travel in RpcResponseMeta.error_code.  See
 * ../shared/spec/brpc-wire.md section 1.10.
 *
 * These are positive wire values, never returned by our own functions
 * (which return 0 or -errno): a frame carries them, and the protocol code
 * maps its local failures onto them where brpc does (a bad request body is
 * EREQUEST on the wire, a local -EBADMSG in the parser).  Plain POSIX errno
 * values (EPERM 1, EINVAL 22, ...) may appear in error_code as well when a
 * handler uses them; they are not listed here.
 *
 * Pure functions; any thread.
 */
#ifndef RPCGATE_NET_RPC_ERRNO_H
#define RPCGATE_NET_RPC_ERRNO_H

enum rpc_errno {
	/* Caused by the client. */
	RPC_ENOSERVICE = 1001,	      /* service not found */
	RPC_ENOMETHOD = 1002,	      /* method not found */
	RPC_EREQUEST = 1003,	      /* bad request (decode/validation) */
	RPC_ERPCAUTH = 1004,	      /* authentication failed */
	RPC_ETOOMANYFAILS = 1005,     /* ParallelChannel: sub-calls failed */
	RPC_EPCHANFINISH = 1006,      /* internal: ParallelChannel finished */
	RPC_EBACKUPREQUEST = 1007,    /* internal: backup request sent */
	RPC_ERPCTIMEDOUT = 1008,      /* RPC timed out (client-local) */
	RPC_EFAILEDSOCKET = 1009,     /* broken connection */
	RPC_EHTTP = 1010,	      /* bad HTTP call (non-2xx) */
	RPC_EOVERCROWDED = 1011,      /* too much pending output */
	RPC_ERTMPPUBLISHABLE = 1012,  /* RTMP */
	RPC_ERTMPCREATESTREAM = 1013, /* RTMP */
	RPC_EEOF = 1014,	      /* got EOF */
	RPC_EUNUSED = 1015,	      /* socket not needed */
	RPC_ESSL = 1016,	      /* SSL error */
	RPC_EH2RUNOUTSTREAMS = 1017,  /* h2 stream ids exhausted */
	RPC_EREJECT = 1018,	      /* request rejected */
	RPC_EPROGREADTIMEOUT = 1019,  /* progressive read timed out */
	/* Caused by the server. */
	RPC_EINTERNAL = 2001,	   /* internal server error */
	RPC_ERESPONSE = 2002,	   /* bad response */
	RPC_ELOGOFF = 2003,	   /* server stopping */
	RPC_ELIMIT = 2004,	   /* server resource limit reached */
	RPC_ECLOSE = 2005,	   /* close socket initiatively */
	RPC_EITP = 2006,	   /* failed ITP response */
	RPC_ESHUTDOWNWRITE = 2007, /* write side shut down */
	/* RDMA, either side. */
	RPC_ERDMA = 3001,    /* RDMA verbs error */
	RPC_ERDMAMEM = 3002, /* memory not registered for RDMA */
};

/* "ENOSERVICE" for RPC_ENOSERVICE, ...; NULL for a code not listed above. */
const char *rpc_errno_name(int code);

/*
 * brpc's berror() text for the code, as brpc registers it
 * (BAIDU_REGISTER_ERRNO in controller.cpp): "No such service", "Got EOF",
 * ...  NULL for a code without one: codes not listed above, and EREJECT,
 * EPROGREADTIMEOUT and ESHUTDOWNWRITE, whose texts we could not check
 * against brpc's source.
 */
const char *rpc_errno_text(int code);

/*
 * The HTTP status brpc answers a failed call with (its
 * ErrorCodeToStatusCode): 404 ENOSERVICE and ENOMETHOD, 401 ERPCAUTH,
 * 400 EREQUEST and EINVAL, 503 ELIMIT and ELOGOFF, 403 EPERM, 504
 * ERPCTIMEDOUT and ETIMEDOUT, 500 any other code; 200 for 0.
 */
int rpc_errno_http_status(int code);

#endif
