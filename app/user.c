/*
 * --user: the identity a server (echo, gateway) runs as.  The gateway is
 * the front door; it should not be root while it parses what strangers
 * send.
 *
 * The switch happens before anything starts, while the process has one
 * thread (capabilities are per thread), and before the RDMA device is
 * opened: the kernel refuses verbs on a device file opened under other
 * credentials ("changed security contexts after opening file
 * descriptor").  Of root's capabilities only CAP_NET_BIND_SERVICE is
 * kept, so ports below 1024 still bind.  CAP_IPC_LOCK goes: registered
 * memory must fit in the user's locked-memory limit (ulimit -l), which
 * the RDMA start checks (app/runtime.c).  A process that changed its
 * user is not dumpable: no core files, its /proc entries root's.
 */
#include "app.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A decimal id below 2^31, or -1. */
static long id_number(const char *s)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v > 0x7fffffffL)
		return -1;
	return v;
}

int app_user_resolve(const struct app_config *cfg, struct app_user *u,
		     const char *who)
{
	const char *flag = flags_str(&cfg->flags, "user");
	char name[APP_USER_NAME_MAX], *group;
	const struct passwd *pw = NULL;
	long id;

	memset(u, 0, sizeof(*u));
	if (!*flag)
		return 0;
	if (strlen(flag) >= sizeof(name)) {
		fprintf(stderr, "%s: --user=%s: longer than %zu bytes\n", who,
			flag, sizeof(name) - 1);
		return -EINVAL;
	}
	strcpy(name, flag);
	group = strchr(name, ':');
	if (group)
		*group++ = '\0';
	id = id_number(name);
	if (id < 0) {
		pw = getpwnam(name);
		if (!pw) {
			fprintf(stderr,
				"%s: --user=%s: no user \"%s\" in /etc/passwd "
				"(a number works without it)\n",
				who, flag, name);
			return -EINVAL;
		}
		u->uid = pw->pw_uid;
		u->gid = pw->pw_gid;
	} else {
		u->uid = (uid_t)id;
		pw = getpwuid(u->uid);
		/* A bare number with no entry: the group of the same
		 * number, as `setpriv --reuid N` users expect. */
		u->gid = pw ? pw->pw_gid : (gid_t)id;
	}
	if (group) {
		const struct group *gr;

		id = id_number(group);
		if (id >= 0) {
			u->gid = (gid_t)id;
		} else if ((gr = getgrnam(group))) {
			u->gid = gr->gr_gid;
		} else {
			fprintf(stderr,
				"%s: --user=%s: no group \"%s\" in /etc/group "
				"(a number works without it)\n",
				who, flag, group);
			return -EINVAL;
		}
	}
	u->set = true;
	return 0;
}

int app_user_become(struct app_user *u, const char *who)
{
	struct __user_cap_header_struct hdr = {.version =
						   _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct caps[2] = {{0}};
	const uint32_t bind = 1u << CAP_NET_BIND_SERVICE;
	pid_t parent = getppid();
	int pdeath = 0;

	if (!u->set)
		return 0;
	/* Started as that user already: nothing to give up. */
	if (u->uid != 0 && getuid() == u->uid && geteuid() == u->uid &&
	    getgid() == u->gid && getegid() == u->gid)
		goto out;
	/* What there is to keep: a container may have dropped it. */
	if (syscall(SYS_capget, &hdr, caps))
		memset(caps, 0, sizeof(caps));
	u->bind_kept = caps[0].permitted & bind;
	/* A credential change clears the parent-death signal; a
	 * supervisor that set one still wants it. */
	prctl(PR_GET_PDEATHSIG, &pdeath);
	/* Groups first: once the uid is gone, so is the right to change
	 * them.  Keep the capabilities over setuid, to cut them to one. */
	if (prctl(PR_SET_KEEPCAPS, 1L) || setgroups(0, NULL) ||
	    setgid(u->gid) || setuid(u->uid)) {
		fprintf(stderr,
			"%s: --user: cannot become uid %u gid %u: %s (only "
			"root can change its user)\n",
			who, (unsigned)u->uid, (unsigned)u->gid,
			strerror(errno));
		return -EPERM;
	}
	prctl(PR_SET_KEEPCAPS, 0L);
	u->changed = true;
	memset(caps, 0, sizeof(caps));
	if (u->bind_kept)
		caps[0].permitted = caps[0].effective = bind;
	if (u->uid != 0 && syscall(SYS_capset, &hdr, caps)) {
		fprintf(stderr, "%s: --user: cannot drop capabilities: %s\n",
			who, strerror(errno));
		return -EPERM;
	}
	if (u->uid != 0 && setuid(0) == 0) {
		fprintf(stderr,
			"%s: --user: uid 0 could be taken back after "
			"becoming uid %u: refusing to go on\n",
			who, (unsigned)u->uid);
		return -EPERM;
	}
	if (pdeath) {
		prctl(PR_SET_PDEATHSIG, pdeath);
		/* The parent went while the signal was off. */
		if (getppid() != parent)
			raise(pdeath);
	}
out:
	/* Nothing this process could exec would gain privileges. */
	prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L);
	return 0;
}

void app_user_log(const struct app_user *u, struct log *log, const char *who)
{
	if (!u->set)
		return;
	if (!u->changed)
		log_info(log, "%s: --user: running as uid %u gid %u already",
			 who, (unsigned)u->uid, (unsigned)u->gid);
	else if (u->uid == 0)
		log_info(log, "%s: running as uid 0 gid %u", who,
			 (unsigned)u->gid);
	else
		log_info(log,
			 "%s: running as uid %u gid %u, of root's "
			 "capabilities with %s (the process is not dumpable: "
			 "no core files)",
			 who, (unsigned)u->uid, (unsigned)u->gid,
			 u->bind_kept ? "CAP_NET_BIND_SERVICE only"
				      : "none (CAP_NET_BIND_SERVICE was not "
					"there to keep: ports below 1024 do "
					"not bind)");
}
