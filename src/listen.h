/* Listening sockets: bound from the config or passed by socket activation,
 * and reconciled with a new config on reload without losing the backlog of
 * an address that stays. */
#ifndef ECHOD_LISTEN_H
#define ECHOD_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

struct config;

struct listener {
	int fd;		  /* non-blocking, close-on-exec */
	struct addr addr; /* the address bound (or getsockname of a passed socket) */
};

struct listen_set {
	struct listener *v;
	size_t n;
	bool activated; /* passed by systemd: the config's listen is ignored */
};

/* At start: takes the sockets passed by systemd if any, else binds every
 * listen address of cfg with cfg->backlog. An address whose family the kernel
 * lacks (EAFNOSUPPORT) is skipped with a warning as long as another binds.
 * Any other failure closes what was opened and returns -errno with the
 * address in err. */
int listen_open(const struct config *cfg, struct listen_set *out, char *err, size_t errlen);

/* On reload: builds in *out the set that cfg asks for, moving the sockets of
 * addresses present in both into it (their fd is shared with *old until
 * listen_commit) and binding the new ones. On failure everything newly bound
 * is closed, *old is untouched and err names the address. A socket-activated
 * set is copied as it is. */
int listen_reconcile(const struct listen_set *old, const struct config *cfg, struct listen_set *out,
		     char *err, size_t errlen);

/* After a successful reconcile: stops and closes the sockets of *old that
 * *new no longer has and frees *old. "Stops": no copy of a socket that
 * echod bound listens afterwards, not even one a worker still holds. */
void listen_commit(struct listen_set *old, const struct listen_set *new);

/* After a failed transaction elsewhere: closes what *new bound that *old does
 * not have, and frees *new. */
void listen_abort(struct listen_set *new, const struct listen_set *old);

/* Makes a listener about to be closed take no new handshake: a filter
 * drops every SYN that would start one (the client sends it again a second
 * later, to whoever listens then, or is refused), while handshakes under
 * way complete into the backlog, to be accepted before the close. Not for
 * sockets passed by systemd, which outlive us (returns 0 and does
 * nothing). 0 or -errno. */
int listen_retire(const struct listener *l, bool activated);

/* Stops (as listen_commit does) and closes every socket, and frees the set. */
void listen_close(struct listen_set *s);

#endif
