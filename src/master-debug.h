/* The master's debug entries (level = debug, or -d): what someone finding
 * out why a client was refused or a worker ended needs to see, one entry
 * per step of a connection's admission and of its worker's life. Each
 * caller asks log_enabled(LOG_DEBUG) first, so that with debugging off
 * the accept path pays one comparison and builds nothing. Part of the
 * master (see master-int.h). */
#ifndef ECHOD_MASTER_DEBUG_H
#define ECHOD_MASTER_DEBUG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "access.h"
#include "addr.h"

struct master;
struct listener;
struct child;

/* A peer as the master's entries write it: the message's "host:port" and
 * the REMOTE_ADDR and REMOTE_PORT fields. */
struct master_peer {
	char name[ADDR_STRLEN];
	char host[ADDR_STRLEN];
	char port[8];
};
void master_peer_text(const struct sockaddr *sa, struct master_peer *p);

/* A wait status as the entries write it: "SIGKILL" (returns "SIGNAL", the
 * field's name) or the exit status, "1" (returns "EXIT_STATUS"). */
const char *master_wait_text(int st, char *buf, size_t len);

/* accept returned a connection from peer on l. */
void master_debug_accepted(const struct addr *peer, const struct listener *l);
/* The verdict of the rules r and the rule that made it (NULL: none did). */
void master_debug_access(const struct addr *peer, const struct access_rules *r,
			 enum access_verdict v, const struct cidr *rule);
/* The peer's source after the rate rule took its share: open connections
 * against max_connections_per_source, what is left of the rate allowance. */
void master_debug_source(const struct master *m, const struct addr *peer, uint64_t now);
void master_debug_forked(pid_t pid, const struct addr *peer);
/* waitpid returned status st for c's worker, now. */
void master_debug_reaped(const struct child *c, int st, uint64_t now);
/* l is closing (reload, drain): what its backlog held was taken. */
void master_debug_retired(const struct listener *l, uint64_t taken);
/* A step of reload n, when debugging (this one asks log_enabled itself:
 * reloads are rare). */
void master_debug_reload(unsigned n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
