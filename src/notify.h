/* Talking to the service manager: readiness, status, watchdog and the
 * sockets it passes. With log, the only module that knows systemd's
 * protocols. Without NOTIFY_SOCKET (at notify_init) every call is a no-op
 * returning 0. */
#ifndef ECHOD_NOTIFY_H
#define ECHOD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

int notify_ready(void);
/* RELOADING=1 with MONOTONIC_USEC=now, as systemd >= 253 requires. */
int notify_reloading(void);
int notify_stopping(void);
int notify_extend_timeout(uint64_t usec);
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int notify_watchdog(void);

/* The watchdog interval asked for by WATCHDOG_USEC (for this pid), or 0. */
uint64_t notify_watchdog_usec(void);

/* Takes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment
 * and removes them from it, so that only the master ever talks to systemd
 * and no forked worker sees them. Call once, first thing. */
void notify_init(void);

/* Sockets passed by socket activation: returns how many (0 when none), the
 * first being fd 3. Unsets LISTEN_* so a re-exec or a child does not take
 * them again. */
int notify_listen_fds(void);

/* Whether systemd passed this process sockets (LISTEN_PID and LISTEN_FDS),
 * without taking them: notify_listen_fds does that. */
bool notify_listen_passed(void);

#endif
