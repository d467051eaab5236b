/*
 * musl_ucontext: getcontext, makecontext and setcontext for OpenSSL.
 *
 * Linked into build/rpcgate only.  Debian's libcrypto.a calls them in
 * its async jobs (fibres for asynchronous engines, SSL_MODE_ASYNC),
 * which rpcgate never starts; musl has no ucontext functions.  Each
 * here fails as a platform without them does, so an async job, were one
 * ever started, fails to start instead of running on a broken stack.
 */
#include <errno.h>
#include <ucontext.h>

int getcontext(ucontext_t *ucp)
{
	(void)ucp;
	errno = ENOSYS;
	return -1;
}

int setcontext(const ucontext_t *ucp)
{
	(void)ucp;
	errno = ENOSYS;
	return -1;
}

void makecontext(ucontext_t *ucp, void (*fn)(void), int argc, ...)
{
	(void)ucp;
	(void)fn;
	(void)argc;
}
