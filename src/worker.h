/* The worker: one process per connection that echoes every byte back. */
#ifndef ECHOD_WORKER_H
#define ECHOD_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"

enum worker_end {
	WORKER_EOF = 0,	 /* the client closed its side and got everything back */
	WORKER_IDLE,	 /* no byte moved for idle_timeout */
	WORKER_RESET,	 /* the client reset the connection or vanished */
	WORKER_DRAINED,	 /* told to stop (SIGTERM) by a draining master */
	WORKER_ERROR,	 /* a local failure */
	WORKER_LIFETIME, /* max_lifetime reached: handed back what it owed, as a drain */
	WORKER_KILLED,	 /* the master's record of a worker killed before it could report
			  * (SIGQUIT, the kill after a drain, a crash): counts lost */
};

struct worker_stats {
	uint64_t bytes_in;  /* read from the client */
	uint64_t bytes_out; /* written back */
	enum worker_end end;
	int error; /* -errno behind WORKER_ERROR / WORKER_RESET, else 0 */
};

/* Set by the SIGTERM handler (worker_signals_init); worker_echo checks it
 * after each wait. Exposed for the unit tests. */
extern volatile int worker_stop_requested;

/* The echo loop on a connected, non-blocking socket (the master accepts with
 * SOCK_NONBLOCK): copies what arrives back to the sender until EOF (after
 * sending everything owed), an error, idle_usec without progress (0 =
 * never), or worker_stop_requested or CLOCK_MONOTONIC reaching end_usec (0 =
 * never; both then flush what is owed, for at most a couple of seconds). Ending the connection (FIN
 * or close) is the caller's. Waits only in ppoll(), which lets SIGTERM in and nothing else the
 * master blocks, so a SIGTERM interrupts a wait. Small exchanges go through read and write; once a
 * read fills the small buffer, splice through a pipe takes over where the socket allows it. Always
 * returns 0 and fills *st (failures are st->end WORKER_ERROR with st->error); the socket is left
 * open. */
int worker_echo(int fd, uint64_t idle_usec, uint64_t end_usec, struct worker_stats *st);

struct worker_conn {
	int fd;
	struct addr peer;
	unsigned local_port;
	uint64_t start_usec; /* CLOCK_MONOTONIC at accept, for the duration */
	uint64_t idle_usec;
	uint64_t end_usec; /* the connection's end (max_lifetime), 0 = none */
	bool log_connections;
	int report_fd; /* the master's report pipe, or -1: log directly */
};

/* What every worker tells the master as it ends: the master sums the byte
 * counts, and writes the entry, because journald attributes an entry to its
 * unit by reading the sender's /proc, which a worker that has just exited no
 * longer has. */
struct worker_report {
	pid_t pid;
	struct addr peer;
	/* The peer's interface, for a link-local one: looked up by the worker
	 * before its sandbox, which forbids the ioctl that asks. */
	char ifname[ADDR_IFNAMESIZE];
	unsigned local_port;
	uint64_t start_usec; /* the duration is taken when the entry is written */
	struct worker_stats st;
};

/* Logs the connection-closed entry of a report: at info level if
 * log_connections, at warning level for a local failure in any case. */
void worker_report_log(const struct worker_report *r, bool log_connections);

/* Called by the master once, with the signals it blocks (and reads from a
 * signalfd) already blocked, before it forks any worker. Installs the SIGTERM
 * flag handler: the master never runs it, since SIGTERM stays blocked there,
 * but every worker inherits it and need not make a system call for its
 * signals. A worker keeps the master's mask too, so the signals meant for the
 * master (SIGHUP, SIGINT, SIGUSR1, SIGQUIT, which Ctrl-C or a unit-wide kill
 * deliver to the whole group) stay pending in it and cannot cut a live
 * connection; its ppoll lets only SIGTERM in. Returns 0 or -errno. */
int worker_signals_init(const sigset_t *blocked);

/* In the child right after fork, once the master's descriptors are closed
 * (systemd's variables are already gone: notify_init; the signals are set:
 * worker_signals_init): makes urgent data inline (worker-io.h), enters the
 * sandbox (sandbox.h; if either fails, ends with an error without serving),
 * echoes, after a drain keeps reading (and discarding)
 * until the client has everything, reports to the master (or logs itself)
 * one entry (peer, bytes, duration, reason) and leaves with _exit(0). Never
 * returns. */
_Noreturn void worker_run(const struct worker_conn *c);

const char *worker_end_name(enum worker_end e);

#endif
