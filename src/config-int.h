/* State shared by the configuration's files (config.c: reading the files
 * through inih, the checks made once all are read; config-keys.c: the keys,
 * their values, defaults and dump). Not a public interface: config.h is. */
#ifndef ECHOD_CONFIG_INT_H
#define ECHOD_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* The length of the key table in config-keys.c, which checks it: the loader
 * needs it to size its per-key state. */
#define CONFIG_N_KEYS 17

enum config_kind {
	CONFIG_KIND_LISTEN,
	CONFIG_KIND_UINT,
	CONFIG_KIND_DURATION,
	CONFIG_KIND_USER,
	CONFIG_KIND_ALLOW,
	CONFIG_KIND_DENY,
	CONFIG_KIND_LEVEL,
	CONFIG_KIND_BOOL,
	CONFIG_KIND_TARGET,
	CONFIG_KIND_RATE,
};

struct config_key {
	const char *section;
	const char *name;
	enum config_kind kind;
	size_t off;	   /* of the field, for kinds shared by several keys */
	unsigned min, max; /* for CONFIG_KIND_UINT */
};

struct config_loader {
	struct config *c;
	char *err;
	size_t errlen;
	int rc; /* the first failure; later ones are not reported */
	unsigned err_line;
	const char *file; /* being read */
	FILE *f;
	unsigned line;
	int read_errno;		      /* of the read that failed */
	long bytes;		      /* read so far from this file */
	unsigned seen[CONFIG_N_KEYS]; /* line of each single-value key in this file */
	char *listen_cleared_at;      /* "file:line" of the last "listen =" */
	char *user_at;		      /* "file:line" of the user setting in force */
};

/* Records an error (-EINVAL) at the line being read, naming the key k if
 * there is one. Only the first error of a load is kept, and it is what
 * these return. */
__attribute__((format(printf, 3, 4))) int
config_fail(struct config_loader *ld, const struct config_key *k, const char *fmt, ...);

/* Records rc (a -errno) as "path: reason". */
int config_fail_sys(struct config_loader *ld, int rc, const char *path);

/* Applies "name = value" read in [section] at the current line. Returns 0
 * or the error recorded in ld. */
int config_key_set(struct config_loader *ld, const char *section, const char *name,
		   const char *value);

/* Whether some key lives in the section named by the len bytes at name. */
bool config_section_known(const char *name, size_t len);

#endif
