/* The master: one event loop over a signalfd, the listeners and, while
 * draining, a timerfd. Accepts, checks limits, forks workers, reaps them,
 * reloads and drains. */
#ifndef ECHOD_MASTER_H
#define ECHOD_MASTER_H

#include <stdbool.h>

#include "config.h"
#include "listen.h"

struct master_opts {
	const char *config_path;
	bool debug; /* -d: log level debug whatever the config says, across reloads */
};

/* Blocks the signals the loop handles and sets up the workers' (see
 * worker_signals_init); call before any fd is created, so that no signal is
 * lost between start-up and the first wait. */
int master_block_signals(void);

/* Runs the loop until drained or stopped. Takes ownership of *cfg and *ls.
 * Returns the process exit status (0 after a clean drain). */
int master_run(const struct master_opts *o, struct config *cfg, struct listen_set *ls);

#endif
