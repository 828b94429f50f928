/* The service manager's protocols, spoken directly: readiness and status
 * datagrams to $NOTIFY_SOCKET, the watchdog interval from $WATCHDOG_USEC and
 * sockets passed as $LISTEN_FDS. systemd documents all three as stable
 * interfaces that may be reimplemented (sd_notify(3), sd_listen_fds(3)).
 * Speaking them here keeps libsystemd, and the compression and crypto
 * libraries it pulls in, out of the master: every mapping makes each fork
 * slower, and none of that code belongs in a network-facing process. */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"

/* Taken from the environment once by notify_init, which also removes it
 * there: workers are forked from the master and must not talk to systemd,
 * and a worker that had to unset variables itself would pay copy-on-write
 * faults on the environment for every connection. */
static struct {
	char socket[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	uint64_t watchdog_usec;
} notify_state;

static int notify_send(const char *msg)
{
	const char *path = notify_state.socket;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	int fd, r = 0;

	if (!*path)
		return 0;
	len = strlen(path);
	/* "@name" is an abstract socket: a leading NUL instead of the '@'. */
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -EAFNOSUPPORT;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_last();
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		r = err_last();
	close(fd);
	return r;
}

static int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int notify_sendf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return notify_send(buf);
}

int notify_ready(void)
{
	return notify_send("READY=1");
}

int notify_reloading(void)
{
	return notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)clock_usec());
}

int notify_stopping(void)
{
	return notify_send("STOPPING=1");
}

int notify_extend_timeout(uint64_t usec)
{
	return notify_sendf("EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
}

int notify_status(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* STATUS= is one line: a newline would start a new assignment */
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return notify_sendf("STATUS=%s", buf);
}

int notify_watchdog(void)
{
	return notify_send("WATCHDOG=1");
}

/* An environment variable as a positive number, or 0. */
static unsigned long long notify_env_number(const char *name)
{
	const char *v = getenv(name);
	unsigned long long n;
	char *end;

	if (!v || *v < '0' || *v > '9')
		return 0;
	errno = 0;
	n = strtoull(v, &end, 10);
	return errno || *end ? 0 : n;
}

/* Meant for this process, not inherited from the one they were set for? */
static bool notify_for_us(const char *pid_var)
{
	return notify_env_number(pid_var) == (unsigned long long)getpid();
}

void notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");

	if (path && strlen(path) < sizeof(notify_state.socket))
		snprintf(notify_state.socket, sizeof(notify_state.socket), "%s", path);
	/* WATCHDOG_PID is optional; when present it must be us. */
	if (!getenv("WATCHDOG_PID") || notify_for_us("WATCHDOG_PID"))
		notify_state.watchdog_usec = notify_env_number("WATCHDOG_USEC");
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

uint64_t notify_watchdog_usec(void)
{
	return notify_state.watchdog_usec;
}

bool notify_listen_passed(void)
{
	return notify_for_us("LISTEN_PID") && notify_env_number("LISTEN_FDS") > 0;
}

int notify_listen_fds(void)
{
	int n = 0;

	if (notify_for_us("LISTEN_PID")) {
		unsigned long long fds = notify_env_number("LISTEN_FDS");
		if (fds > 1024)
			n = -EINVAL;
		else
			n = (int)fds;
	}
	/* Whatever the answer, a child must not take them again. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return n;
}
