/* The configuration: /etc/echod.conf, then PATH.d/ *.conf in lexical order.
 * The only module that includes ini.h. */
#ifndef ECHOD_CONFIG_H
#define ECHOD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "access.h"
#include "addr.h"
#include "log.h"

struct config {
	/* [server] */
	struct addr *listen; /* "*:7" already expanded to two entries */
	size_t n_listen;
	unsigned backlog;
	char *user; /* NULL: do not change user */
	uid_t uid;  /* resolved from user when user != NULL */
	gid_t gid;
	uint64_t drain_timeout_usec;
	/* [limits] */
	unsigned max_connections;
	unsigned max_connections_per_source; /* 0 = no per-source limit */
	unsigned rate_per_source; /* new connections per rate_period_usec; 0 = no limit */
	uint64_t rate_period_usec;
	unsigned burst_per_source;  /* at once; 0 = rate_per_source */
	unsigned source_prefix_v4;  /* a source is a /N: 1..32 */
	unsigned source_prefix_v6;  /* 1..128 */
	uint64_t idle_timeout_usec; /* 0 = never */
	uint64_t max_lifetime_usec; /* 0 = unlimited */
	/* [access] */
	struct access_rules access;
	/* [log] */
	int log_level; /* LOG_DEBUG .. LOG_ERR from syslog.h */
	bool log_connections;
	enum log_target log_target;
	/* The files read, in order, comma-separated: for the debug log. */
	char *files;
};

/* Largest config file read: the shipped one is under 4 KiB. A file of
 * gigabytes (a log or an image written there by mistake) is refused, not
 * read into memory line by line. */
#define CONFIG_FILE_MAX (1024 * 1024)

/* The longest duration any key takes (drain_timeout, idle_timeout,
 * max_lifetime): 365 days. */
#define CONFIG_DURATION_MAX_USEC (UINT64_C(365) * 24 * 3600 * 1000000)
#define CONFIG_DURATION_MAX_TEXT "365d"

/* Room for "path:line: message". */
#define CONFIG_ERR_MAX 512

/* Fills *c with the built-in defaults (no listen address, backlog 511, no user, drain_timeout 30s,
 * max_connections 1024, max_connections_per_source 64, rate_per_source 0, burst_per_source 0,
 * source_prefix_v4 32, source_prefix_v6 64, idle_timeout 5min,
 * max_lifetime 0, no access rules, level info, connections yes, target
 * auto). Returns 0 or -ENOMEM. */
int config_defaults(struct config *c);

/* Loads path, then every path.d/ *.conf in lexical order, into a fresh *c
 * (defaults first). A missing path.d/ is fine; a missing path is an error.
 * On failure *c holds nothing to free, err holds "file:line: message" (or
 * "file: message" where no line applies) and the return is -EINVAL (bad
 * content) or -errno (could not read). Checks everything that can be known
 * without binding: values, address syntax, that user exists. */
int config_load(const char *path, struct config *c, char *err, size_t errlen);

/* A config without any listen address is only usable under socket
 * activation: otherwise this fails (-EINVAL) with "path: [server] listen:
 * no listen address is set" in err. Loading alone accepts it, since only
 * the caller knows whether systemd passed sockets. */
int config_need_listen(const struct config *c, const char *path, char *err, size_t errlen);

void config_free(struct config *c);

/* Writes the effective configuration as a config file that config_load
 * reads back to the same values. */
void config_dump(const struct config *c, FILE *f);

#endif
