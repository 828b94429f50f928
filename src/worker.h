/* The worker: one process per connection that echoes every byte back. */
#ifndef ECHOD_WORKER_H
#define ECHOD_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"

enum worker_end {
	WORKER_EOF = 0, /* the client closed its side and got everything back */
	WORKER_IDLE,	/* no byte moved for idle_timeout */
	WORKER_RESET,	/* the client reset the connection or vanished */
	WORKER_DRAINED, /* told to stop (SIGTERM) by a draining master */
	WORKER_ERROR,	/* a local failure */
};

struct worker_stats {
	uint64_t bytes_in;  /* read from the client */
	uint64_t bytes_out; /* written back */
	enum worker_end end;
	int error; /* -errno behind WORKER_ERROR / WORKER_RESET, else 0 */
};

/* Totals that every worker adds to as it ends, kept in a shared mapping the
 * master created before forking (for SIGUSR1 statistics). */
struct worker_totals {
	uint64_t bytes_in;
	uint64_t bytes_out;
};

/* Set by the SIGTERM handler that worker_run installs; worker_echo checks it
 * after each wait. Exposed for the unit tests. */
extern volatile int worker_stop_requested;

/* The echo loop on a connected socket (made non-blocking here): copies what
 * arrives back to the sender until EOF (then sends what is owed and shuts
 * down the write side), an error, idle_usec without progress (0 = never), or
 * worker_stop_requested (then flushes what it owes, for at most a couple of
 * seconds, and shuts down the write side). Waits only in ppoll() with SIGTERM
 * unblocked, so a SIGTERM interrupts a wait and nothing else. Uses splice
 * through a pipe when the socket allows it, else read/write. Always returns 0
 * and fills *st (failures are st->end WORKER_ERROR with st->error); the
 * socket is left open. */
int worker_echo(int fd, uint64_t idle_usec, struct worker_stats *st);

struct worker_conn {
	int fd;
	struct addr peer;
	unsigned local_port;
	uint64_t idle_usec;
	bool log_connections;
	struct worker_totals *totals; /* may be NULL */
	int report_fd;		      /* datagram socket to the master, or -1: log directly */
};

/* What a worker tells the master as it ends, so that the long-lived master
 * writes the entry: journald attributes an entry to its unit by reading the
 * sender's /proc, which a worker that has just exited no longer has. */
struct worker_report {
	pid_t pid;
	struct addr peer;
	unsigned local_port;
	uint64_t duration_usec;
	struct worker_stats st;
};

/* Logs the connection-closed entry of a report: at info level if
 * log_connections, at warning level for a local failure in any case. */
void worker_report_log(const struct worker_report *r, bool log_connections);

/* In the child right after fork, once the master's descriptors are closed
 * (systemd's variables are already gone: notify_init): installs the SIGTERM flag handler, restores
 * every other disposition, echoes, after a drain keeps reading (and discarding) until the client
 * has everything, reports to the master (or logs itself) one entry (peer, bytes, duration, reason)
 * and leaves with _exit(0). Never returns. */
_Noreturn void worker_run(const struct worker_conn *c);

const char *worker_end_name(enum worker_end e);

#endif
