/*
 * echo_client: example.EchoService.Echo calls on a net/rpc/channel, for the
 * integration tests that call an `rpcgate echo` (or a gateway in front
 * of one).  Header only.
 *
 *   echo_call(ch, c, msg, done, arg)  channel_call() of Echo{msg}
 *   echo_resp_msg(c)                  the answer's message, or NULL
 */
#ifndef RPCGATE_TESTS_ECHO_CLIENT_H
#define RPCGATE_TESTS_ECHO_CLIENT_H

#include "rpc/channel.h"
#include "echo.pb-c.h"

static inline int echo_call(struct channel *ch, struct rpc_call *c,
			    const char *msg, rpc_done_fn *done, void *arg)
{
	Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;

	req.message = (char *)msg;
	return channel_call(ch, &example__echo_service__descriptor, 0,
			    &req.base, c, done, arg);
}

static inline const char *echo_resp_msg(const struct rpc_call *c)
{
	const Example__EchoResponse *r = (const void *)c->response;

	return r ? r->message : NULL;
}

#endif
