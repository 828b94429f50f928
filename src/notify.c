/* sd_notify and socket activation through libsystemd. */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

#include "clock.h"

int notify_ready(void)
{
	return sd_notify(0, "READY=1");
}

int notify_reloading(void)
{
	return sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)clock_usec());
}

int notify_stopping(void)
{
	return sd_notify(0, "STOPPING=1");
}

int notify_extend_timeout(uint64_t usec)
{
	return sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
}

int notify_status(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return sd_notifyf(0, "STATUS=%s", buf);
}

int notify_watchdog(void)
{
	return sd_notify(0, "WATCHDOG=1");
}

uint64_t notify_watchdog_usec(void)
{
	uint64_t usec = 0;

	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

void notify_forget(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

int notify_listen_fds(void)
{
	return sd_listen_fds(1);
}
