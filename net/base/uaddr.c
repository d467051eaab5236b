/* uaddr: Unix socket addresses (see uaddr.h). */
#include "uaddr.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

bool uaddr_is_unix(const char *text)
{
	return !strncmp(text, "unix:", 5);
}

int uaddr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;
	const char *p = text + 5;
	size_t n = strlen(p);

	if (!uaddr_is_unix(text) || !n || (p[0] != '/' && p[0] != '@') ||
	    (p[0] == '@' && n == 1))
		return -EINVAL;
	if (n >= sizeof(un->sun_path))
		return -ENAMETOOLONG;
	memset(ss, 0, sizeof(*ss));
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, p, n);
	if (p[0] == '@') { /* abstract: a NUL first, the length exact */
		un->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*len = (socklen_t)sizeof(*un);
	}
	return 0;
}

void uaddr_format(const struct sockaddr_storage *ss, socklen_t len, char *buf,
		  size_t size)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
	size_t off = offsetof(struct sockaddr_un, sun_path);
	size_t n = len > off ? len - off : 0;

	if (n > sizeof(un->sun_path))
		n = sizeof(un->sun_path);

	if (!n) {
		snprintf(buf, size, "unix:");
		return;
	}
	if (un->sun_path[0] == '\0') /* abstract */
		snprintf(buf, size, "unix:@%.*s", (int)(n - 1),
			 un->sun_path + 1);
	else
		snprintf(buf, size, "unix:%.*s", (int)strnlen(un->sun_path, n),
			 un->sun_path);
}
