/* The worker: one process per connection, echoing every byte back. This
 * file holds the loop (when to read, write and wait, and when to stop) and
 * the worker's life around it; worker-io.c moves the bytes. */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/sockios.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "sandbox.h"
#include "worker-io.h"

/* How long a stopping worker keeps trying to hand back what it owes; the
 * master SIGKILLs a few seconds after its SIGTERM anyway. */
#define WORKER_FLUSH_USEC (2 * 1000000ull)
/* How long a worker waits for room in a full report queue. */
#define WORKER_REPORT_WAIT_MS 1000
/* Rounds of I/O without a wait before a zero-timeout ppoll, the only place a
 * pending SIGTERM gets in, so a client streaming nonstop still sees a drain. */
#define WORKER_BUSY_MAX 64

volatile int worker_stop_requested;
/* What ppoll blocks while it waits: everything the master blocks except
 * SIGTERM (worker_signals_init). Empty until then, as in the unit tests. */
static sigset_t worker_wait_mask;

/* A report must reach the master's pipe in one atomic write. */
_Static_assert(sizeof(struct worker_report) <= PIPE_BUF, "worker_report exceeds PIPE_BUF");

struct echo {
	struct worker_io io;
	bool eof;
	bool stopping;
	bool expired;	      /* stopping because the lifetime is over */
	uint64_t idle_usec;   /* 0 = no idle rule */
	uint64_t idle_since;  /* 0 = the idle period began with the current wait */
	uint64_t end_usec;    /* end of the lifetime, 0 = none */
	uint64_t flush_until; /* when stopping */
	struct worker_stats *st;
};

/* Waits in the only place where SIGTERM is let in. Returns 1 when the socket
 * is ready, 0 when the time ran out, or -errno (-EINTR when a signal
 * arrived). */
static int echo_wait(struct echo *e, int64_t timeout_usec)
{
	struct pollfd p = {
	    .fd = e->io.fd,
	    .events = worker_io_events(&e->io, !e->eof && !e->stopping),
	};
	struct timespec ts, *tsp = NULL;
	int r;

	if (timeout_usec >= 0) {
		ts.tv_sec = (time_t)(timeout_usec / 1000000);
		ts.tv_nsec = (long)(timeout_usec % 1000000) * 1000;
		tsp = &ts;
	}
	r = ppoll(&p, 1, tsp, &worker_wait_mask);
	if (r < 0)
		return err_last();
	worker_io_ready(&e->io, p.revents);
	return r > 0;
}

/* How long the next wait may last (*timeout, -1 for ever); *idle_bound tells
 * whether the idle rule bounds it. Returns 0 to wait, or how the connection
 * ends when a limit has passed already. The clock is read only for a
 * lifetime, when stopping, or after a wake-up that moved nothing (which
 * readiness-driven I/O does not expect): a wait after progress simply lasts
 * idle_usec, so an ordinary exchange never reads the clock. */
static int echo_timeout(struct echo *e, bool progress, int64_t *timeout, bool *idle_bound)
{
	uint64_t left = UINT64_MAX, now = 0;

	*idle_bound = false;
	if (e->end_usec || e->stopping)
		now = clock_usec();
	if (e->idle_usec && progress) {
		e->idle_since = 0;
		left = e->idle_usec;
	} else if (e->idle_usec) {
		/* At worst this starts the idle period one wait late. */
		if (!now)
			now = clock_usec();
		if (!e->idle_since)
			e->idle_since = now;
		if (now - e->idle_since >= e->idle_usec)
			return WORKER_IDLE;
		left = e->idle_usec - (now - e->idle_since);
	}
	*idle_bound = left != UINT64_MAX;
	if (e->stopping) {
		if (now >= e->flush_until)
			return e->expired ? WORKER_LIFETIME : WORKER_DRAINED;
		if (e->flush_until - now <= left) {
			left = e->flush_until - now;
			*idle_bound = false;
		}
	} else if (e->end_usec && e->end_usec - now <= left) {
		/* now < end_usec: echo_check_stop has just looked */
		left = e->end_usec - now;
		*idle_bound = false;
	}
	/* A timeout of centuries is no timeout. */
	*timeout = left >= (uint64_t)INT64_MAX ? -1 : (int64_t)left;
	if (*timeout < 0)
		*idle_bound = false;
	return 0;
}

/* A SIGTERM, or the end of the connection's lifetime (looked at before
 * every wait), turns the loop to handing back what is owed, for a while. */
static void echo_check_stop(struct echo *e, bool before_wait)
{
	uint64_t now;

	if (e->stopping || (!worker_stop_requested && !(before_wait && e->end_usec)))
		return;
	now = clock_usec();
	if (!worker_stop_requested && now < e->end_usec)
		return;
	e->expired = !worker_stop_requested;
	e->stopping = true;
	e->flush_until = now + WORKER_FLUSH_USEC;
}

/* Moves data until the connection ends; returns how it ended (the -errno
 * behind a failure goes to e->st->error). */
static enum worker_end echo_loop(struct echo *e)
{
	unsigned busy = 0;
	bool progress = true; /* since the last wait: the connection just began */

	for (;;) {
		bool moved = false, idle_bound = false;
		int64_t timeout = 0;
		ssize_t n;
		int r;

		echo_check_stop(e, busy == 0);
		if (!e->eof && !e->stopping && e->io.in_ready && e->io.owed < e->io.cap) {
			n = worker_io_in(&e->io);
			if (n == 0)
				e->eof = true;
			else if (n < 0 && n != -EAGAIN) {
				e->st->error = (int)n;
				return WORKER_ERROR;
			}
			moved = n > 0;
		}
		if (e->io.owed > 0 && e->io.out_ready) {
			n = worker_io_out(&e->io);
			if (n < 0 && n != -EAGAIN) {
				e->st->error = (int)n;
				return WORKER_ERROR;
			}
			moved = moved || n > 0;
		}
		if ((e->eof || e->stopping) && e->io.owed == 0)
			return !e->stopping ? WORKER_EOF
			       : e->expired ? WORKER_LIFETIME
					    : WORKER_DRAINED;
		progress = progress || moved;
		if (moved && ++busy < WORKER_BUSY_MAX)
			continue;
		busy = 0;
		/* After a busy run the wait only looks for a pending SIGTERM. */
		if (!moved) {
			r = echo_timeout(e, progress, &timeout, &idle_bound);
			if (r)
				return (enum worker_end)r;
		}
		progress = moved;
		r = echo_wait(e, timeout);
		if (r == 0 && idle_bound)
			return WORKER_IDLE;
		if (r < 0 && r != -EINTR) {
			e->st->error = r;
			return WORKER_ERROR;
		}
	}
}

int worker_echo(int fd, uint64_t idle_usec, uint64_t end_usec, struct worker_stats *st)
{
	/* Not zeroed, and not part of an initialized struct: clearing it would
	 * only cost time. */
	char small[WORKER_IO_SMALL_SIZE];
	struct echo e = {
	    .idle_usec = idle_usec,
	    .end_usec = end_usec,
	    .st = st,
	};

	worker_io_init(&e.io, fd, small);
	*st = (struct worker_stats){0};
	st->end = echo_loop(&e);
	st->bytes_in = e.io.bytes_in;
	st->bytes_out = e.io.bytes_out;
	if (st->error == -ECONNRESET || st->error == -EPIPE || st->error == -ETIMEDOUT)
		st->end = WORKER_RESET;
	worker_io_done(&e.io);
	return 0;
}

const char *worker_end_name(enum worker_end e)
{
	switch (e) {
	case WORKER_EOF:
		return "eof";
	case WORKER_IDLE:
		return "idle";
	case WORKER_RESET:
		return "reset";
	case WORKER_DRAINED:
		return "drained";
	case WORKER_LIFETIME:
		return "lifetime";
	case WORKER_ERROR:
		return "error";
	case WORKER_KILLED:
		return "killed";
	}
	return "unknown";
}

static void worker_on_term(int sig)
{
	(void)sig;
	worker_stop_requested = 1;
}

int worker_signals_init(const sigset_t *blocked)
{
	struct sigaction term = {.sa_handler = worker_on_term};

	if (sigaction(SIGTERM, &term, NULL) < 0)
		return err_last();
	worker_wait_mask = *blocked;
	sigdelset(&worker_wait_mask, SIGTERM);
	return 0;
}

/* Also called by a worker, in its sandbox, when the report could not be
 * sent: nothing here may open a file or make an ioctl. The interface name
 * was looked up before the sandbox; strerror reads no catalog (echod never
 * calls setlocale, so messages are the C locale's, built in); the stderr
 * form's gmtime_r finds the time zone loaded (tzset in log_setup); the
 * journal's socket is AF_UNIX, which the filter lets through. The unit test
 * of the sandbox makes these calls under the filter. */
void worker_report_log(const struct worker_report *r, bool log_connections)
{
	const struct worker_stats *st = &r->st;
	/* Taken here, not by the worker: an ordinary worker never reads the
	 * clock (see echo_timeout), and the master's view includes the fork. */
	uint64_t now = clock_usec(), usec = now > r->start_usec ? now - r->start_usec : 0;
	int prio = st->end == WORKER_ERROR || st->end == WORKER_KILLED ? LOG_WARNING : LOG_INFO;
	char peer[ADDR_STRLEN], host[ADDR_STRLEN], ifname[ADDR_IFNAMESIZE], rport[8], lport[8],
	    in[24], out[24], dur[24], pid[16], err[16];
	unsigned port = 0;
	const char *why = worker_end_name(st->end);

	/* A local failure is worth a warning even when connections are not
	 * logged one by one. */
	if ((prio == LOG_INFO && !log_connections) || !log_enabled(prio))
		return;
	/* A report from the pipe is only trusted to be a report. */
	memcpy(ifname, r->ifname, sizeof(ifname));
	ifname[sizeof(ifname) - 1] = '\0';
	/* Never addr_format here: a worker that logs itself is sandboxed. */
	if (addr_format_as((const struct sockaddr *)&r->peer.ss, ifname, peer, sizeof(peer)) < 0)
		snprintf(peer, sizeof(peer), "?");
	if (addr_host_port_as((const struct sockaddr *)&r->peer.ss, ifname, host, sizeof(host),
			      &port) < 0)
		snprintf(host, sizeof(host), "?");
	snprintf(rport, sizeof(rport), "%u", port);
	snprintf(lport, sizeof(lport), "%u", r->local_port);
	snprintf(in, sizeof(in), "%" PRIu64, st->bytes_in);
	snprintf(out, sizeof(out), "%" PRIu64, st->bytes_out);
	snprintf(dur, sizeof(dur), "%" PRIu64, usec);
	snprintf(pid, sizeof(pid), "%ld", (long)r->pid);
	snprintf(err, sizeof(err), "%d", -st->error);

	const struct log_kv kv[] = {
	    {"REMOTE_ADDR", host}, {"REMOTE_PORT", rport}, {"LOCAL_PORT", lport},
	    {"BYTES_IN", in},	   {"BYTES_OUT", out},	   {"DURATION_USEC", dur},
	    {"CLOSE_REASON", why}, {"WORKER_PID", pid},	   {"ERRNO", err},
	};
	/* ERRNO, the journal's own field, only when there is one */
	size_t n = sizeof(kv) / sizeof(kv[0]) - (st->error ? 0 : 1);

	log_struct(prio, LOG_ID_CONN_CLOSED, kv, n,
		   "connection from %s closed (%s%s%s): %" PRIu64 " byte%s in, %" PRIu64
		   " out, %" PRIu64 ".%03" PRIu64 "s",
		   peer, why, st->error ? ": " : "", st->error ? strerror(-st->error) : "",
		   st->bytes_in, st->bytes_in == 1 ? "" : "s", st->bytes_out, usec / 1000000,
		   usec / 1000 % 1000);
}

/* After a drain the client may still be sending. Closing a socket with
 * unread input makes the kernel send a reset and drop whatever of our echo
 * it has not delivered yet; so read and discard until all we sent is
 * acknowledged, the client closes, or the time is up. */
static void worker_linger(int fd, uint64_t usec)
{
	uint64_t end = clock_usec() + usec;
	char sink[4096];

	for (;;) {
		int unacked = 0;
		if (ioctl(fd, SIOCOUTQ, &unacked) < 0 || unacked == 0)
			return;
		ssize_t n = read(fd, sink, sizeof(sink));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return;
		if (n > 0)
			continue;
		uint64_t now = clock_usec();
		if (now >= end)
			return;
		/* No event says "acknowledged": look again every few ms. */
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, (int)((end - now) / 1000 < 20 ? (end - now) / 1000 + 1 : 20));
	}
}

/* One try: the pipe is non-blocking, so that a full one cannot hold up
 * the close of the client's connection. */
static bool worker_report_try(int fd, const struct worker_report *rep)
{
	return fd >= 0 && write(fd, rep, sizeof(*rep)) == (ssize_t)sizeof(*rep);
}

/* After the close, a full pipe is waited on for a bounded time. */
static int worker_report_send(int fd, const struct worker_report *rep)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};

	if (fd < 0)
		return -EBADF;
	for (int tries = 0; tries < 2; tries++) {
		if (poll(&p, 1, WORKER_REPORT_WAIT_MS) <= 0)
			break;
		if (worker_report_try(fd, rep))
			return 0;
		if (errno != EAGAIN)
			break;
	}
	return -EAGAIN;
}

_Noreturn void worker_run(const struct worker_conn *c)
{
	struct worker_stats st = {.end = WORKER_ERROR};
	struct worker_report rep;
	int r = worker_io_urgent_inline(c->fd);

	/* Whole, padding included: all of it goes down the pipe. */
	memset(&rep, 0, sizeof(rep));
	/* Only a link-local peer costs a look-up, and only here: the sandbox
	 * forbids its ioctl, and the entry may have to be written from here. */
	addr_scope_name((const struct sockaddr *)&c->peer.ss, rep.ifname);
	if (r == 0)
		r = sandbox_enter();
	/* Unconfined, it does not serve: the failure is logged as an error.
	 * (SO_OOBINLINE fails only on a descriptor that is no socket.) */
	if (r < 0)
		st.error = r;
	else
		worker_echo(c->fd, c->idle_usec, c->end_usec, &st);
	/* After EOF the close below sends our FIN; a drained client may still be
	 * sending, so it gets the FIN first and then time to read the rest. A
	 * failed shutdown means the client is gone: nobody is left to tell. */
	if ((st.end == WORKER_DRAINED || st.end == WORKER_LIFETIME) &&
	    shutdown(c->fd, SHUT_WR) == 0)
		worker_linger(c->fd, WORKER_FLUSH_USEC);
	rep.pid = getpid();
	rep.peer = c->peer;
	rep.local_port = c->local_port;
	rep.start_usec = c->start_usec;
	rep.st = st;
	/* The report goes first, so that it is in the pipe before the client
	 * can see the close: a client that reconnects at once must find its
	 * connection no longer counted (children_close). Only a full pipe
	 * makes it wait, and then the client is let go first.
	 * Sent whether or not the entry is logged: the master's byte totals
	 * (SIGUSR1) are the sum of the reports. Only a master stuck for a
	 * second with its whole queue full (a megabyte) misses one; then the
	 * entry is written from here. */
	bool sent = worker_report_try(c->report_fd, &rep);
	close(c->fd);
	if (!sent && worker_report_send(c->report_fd, &rep) < 0)
		worker_report_log(&rep, c->log_connections);
	_exit(0);
}
