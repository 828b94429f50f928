/* The one error rule of echod.
 *
 * Every function returns 0 (or a non-negative count) on success and -errno on
 * failure. Nothing but startup code in main.c exits; a worker leaves with
 * _exit() from worker_run(). Callers propagate the negative value unchanged
 * so that the first failure, not a later side effect, reaches the log. */
#ifndef ECHOD_ERR_H
#define ECHOD_ERR_H

#include <errno.h>

/* sysexits.h values used as exit codes, written here so the numbers that the
 * man page documents have one source. */
#define EXIT_USAGE  64 /* EX_USAGE: bad command line */
#define EXIT_CONFIG 78 /* EX_CONFIG: bad configuration */
#define EXIT_OSERR  71 /* EX_OSERR: the system refused (bind, fork, ...) */

/* -errno of the last failed call; never 0, so a caller that forgot to set
 * errno still sees a failure. */
static inline int err_last(void)
{
	return errno > 0 ? -errno : -EIO;
}

#endif
