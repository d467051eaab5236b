/*
 * uaddr: Unix domain socket addresses as brpc writes them:
 *
 *   unix:/path/to/sock   a socket file
 *   unix:@name           an abstract socket (Linux: no file; the name
 *                        lives as long as a socket is bound to it)
 *
 * Pure functions; any thread.
 */
#ifndef RPCGATE_NET_UADDR_H
#define RPCGATE_NET_UADDR_H

#include <stdbool.h>
#include <sys/socket.h>

/* Does `text` name a Unix socket ("unix:...")? */
bool uaddr_is_unix(const char *text);

/* Its sockaddr_un in *ss and *len.  0; -EINVAL (empty or not absolute),
 * -ENAMETOOLONG (past sun_path). */
int uaddr_parse(const char *text, struct sockaddr_storage *ss,
		socklen_t *len);

/* "unix:..." for a bound or peer address (len from getsockname); an
 * unnamed one (a client's end) is "unix:". */
void uaddr_format(const struct sockaddr_storage *ss, socklen_t len, char *buf,
		  size_t size);

#endif
