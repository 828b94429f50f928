/* The worker: one process per connection, echoing every byte back. Data goes
 * socket -> pipe -> socket with splice(2), so it is never copied through user
 * space; a plain buffer takes over where the kernel refuses splice. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
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

/* Bytes read from the client and not yet written back are bounded by this
 * in read/write mode (a pipe bounds them in splice mode). */
#define WORKER_BUF_SIZE (64 * 1024)
/* How long a stopping worker keeps trying to hand back what it owes; the
 * master SIGKILLs a few seconds after its SIGTERM anyway. */
#define WORKER_FLUSH_USEC (2 * 1000000ull)
/* Rounds of I/O without a wait before a zero-timeout ppoll, the only place a
 * pending SIGTERM gets in, so a client streaming nonstop still sees a drain. */
#define WORKER_BUSY_MAX 64

volatile int worker_stop_requested;

/* A report must reach the master's pipe in one atomic write. */
_Static_assert(sizeof(struct worker_report) <= PIPE_BUF, "worker_report exceeds PIPE_BUF");

struct echo {
	int fd;
	int pipe[2];	/* splice mode; -1 in read/write mode */
	char *buf;	/* read/write mode */
	size_t cap;	/* most bytes owed at once: pipe or buffer size */
	size_t head;	/* read/write mode: first owed byte in buf */
	size_t owed;	/* read from the client, not yet written back */
	bool in_tried;	/* only the first read can find splice unsupported */
	bool in_ready;	/* a read may find data */
	bool out_ready; /* a write may find room */
	bool eof;
	bool stopping;
	struct worker_stats *st;
};

static void echo_close_pipe(struct echo *e)
{
	if (e->pipe[0] < 0)
		return;
	close(e->pipe[0]);
	close(e->pipe[1]);
	e->pipe[0] = e->pipe[1] = -1;
}

static int echo_use_buffer(struct echo *e)
{
	echo_close_pipe(e);
	e->buf = malloc(WORKER_BUF_SIZE);
	if (!e->buf)
		return -ENOMEM;
	e->cap = WORKER_BUF_SIZE;
	return 0;
}

/* Any failure here only costs the zero-copy path, not the connection. */
static int echo_setup(struct echo *e)
{
	int sz;

	if (pipe2(e->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		e->pipe[0] = e->pipe[1] = -1;
		return echo_use_buffer(e);
	}
	sz = fcntl(e->pipe[0], F_GETPIPE_SZ);
	if (sz <= 0)
		return echo_use_buffer(e);
	e->cap = (size_t)sz;
	return 0;
}

static ssize_t echo_read(struct echo *e, size_t want)
{
	if (e->pipe[0] >= 0)
		return splice(e->fd, NULL, e->pipe[1], NULL, want,
			      SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	/* Owed bytes move to the front so that all the room is in one piece
	 * (rare: only after a short write, and the slow path anyway). */
	if (e->head > 0) {
		memmove(e->buf, e->buf + e->head, e->owed);
		e->head = 0;
	}
	return read(e->fd, e->buf + e->head + e->owed, want);
}

/* Returns bytes read, 0 at the client's EOF, or -errno (-EAGAIN included). */
static ssize_t echo_in(struct echo *e)
{
	size_t want = e->cap - e->owed;
	ssize_t n = echo_read(e, want);

	if (n < 0 && e->pipe[0] >= 0 && !e->in_tried &&
	    (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
		/* This kernel or socket type cannot splice, or a sandbox forbids
		 * it. Nothing has moved yet, so switching costs nothing. */
		int r = echo_use_buffer(e);
		if (r < 0)
			return r;
		want = e->cap;
		n = echo_read(e, want);
	}
	e->in_tried = true;
	if (n < 0)
		n = err_last();
	if (n > 0) {
		e->owed += (size_t)n;
		e->st->bytes_in += (uint64_t)n;
	}
	/* A short read has probably drained the socket: asking again would
	 * only return EAGAIN, so the next read waits for POLLIN. */
	if (n == -EAGAIN || (n > 0 && (size_t)n < want))
		e->in_ready = false;
	return n;
}

static ssize_t echo_out(struct echo *e)
{
	size_t want = e->owed;
	ssize_t n;

	if (e->pipe[0] < 0)
		n = write(e->fd, e->buf + e->head, want);
	else
		n = splice(e->pipe[0], NULL, e->fd, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n < 0) {
		e->out_ready = errno != EAGAIN;
		return err_last();
	}
	e->owed -= (size_t)n;
	e->head = e->owed ? e->head + (size_t)n : 0;
	e->st->bytes_out += (uint64_t)n;
	/* A short write means the socket buffer is full: the next try would
	 * only return EAGAIN. */
	if ((size_t)n < want)
		e->out_ready = false;
	return n;
}

/* Waits in the only place where SIGTERM is let in. Returns 0, or -errno
 * (-EINTR when a signal arrived). */
static int echo_wait(struct echo *e, int64_t timeout_usec)
{
	static const sigset_t none;
	struct pollfd p = {.fd = e->fd};
	struct timespec ts, *tsp = NULL;

	if (!e->eof && !e->stopping && !e->in_ready && e->owed < e->cap &&
	    (e->pipe[0] < 0 || e->owed == 0))
		/* In splice mode "room" in a pipe with data is a guess, and a
		 * wrong guess would spin on POLLIN: wait for output instead. */
		p.events |= POLLIN;
	if (e->owed > 0 && !e->out_ready)
		p.events |= POLLOUT;
	if (timeout_usec >= 0) {
		ts.tv_sec = (time_t)(timeout_usec / 1000000);
		ts.tv_nsec = (long)(timeout_usec % 1000000) * 1000;
		tsp = &ts;
	}
	if (ppoll(&p, 1, tsp, &none) < 0)
		return err_last();
	/* An error or hangup is reported by the next read or write. */
	if (p.revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))
		e->in_ready = true;
	if (p.revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))
		e->out_ready = true;
	return 0;
}

/* Moves data until the connection ends; returns how it ended (the -errno
 * behind a failure goes to e->st->error). */
static enum worker_end echo_loop(struct echo *e, uint64_t idle_usec)
{
	uint64_t last = clock_usec(), flush_until = 0;
	unsigned busy = 0;
	bool progress = false;

	for (;;) {
		bool moved = false;
		ssize_t n;

		if (worker_stop_requested && !e->stopping) {
			e->stopping = true;
			flush_until = clock_usec() + WORKER_FLUSH_USEC;
		}
		if (!e->eof && !e->stopping && e->in_ready && e->owed < e->cap) {
			n = echo_in(e);
			if (n == 0)
				e->eof = true;
			else if (n < 0 && n != -EAGAIN) {
				e->st->error = (int)n;
				return WORKER_ERROR;
			}
			moved = n > 0;
		}
		if (e->owed > 0 && e->out_ready) {
			n = echo_out(e);
			if (n < 0 && n != -EAGAIN) {
				e->st->error = (int)n;
				return WORKER_ERROR;
			}
			moved = moved || n > 0;
		}
		if ((e->eof || e->stopping) && e->owed == 0)
			return e->stopping ? WORKER_DRAINED : WORKER_EOF;
		progress = progress || moved;
		if (moved && ++busy < WORKER_BUSY_MAX)
			continue;
		busy = 0;

		uint64_t now = clock_usec(), deadline = UINT64_MAX;
		int64_t timeout = -1;
		if (progress)
			last = now;
		progress = false;
		if (idle_usec)
			/* saturated: a timeout of centuries must not wrap around */
			deadline = idle_usec < UINT64_MAX - last ? last + idle_usec : UINT64_MAX;
		if (e->stopping && flush_until < deadline)
			deadline = flush_until;
		if (moved)
			timeout = 0;
		else if (deadline != UINT64_MAX) {
			if (now >= deadline)
				return e->stopping ? WORKER_DRAINED : WORKER_IDLE;
			timeout = (int64_t)(deadline - now);
		}
		int r = echo_wait(e, timeout);
		if (r < 0 && r != -EINTR) {
			e->st->error = r;
			return WORKER_ERROR;
		}
	}
}

int worker_echo(int fd, uint64_t idle_usec, struct worker_stats *st)
{
	struct echo e = {
	    .fd = fd,
	    .pipe = {-1, -1},
	    .in_ready = true,
	    .out_ready = true,
	    .st = st,
	};
	int flags, r;

	*st = (struct worker_stats){.end = WORKER_ERROR};
	flags = fcntl(fd, F_GETFL);
	/* The master accepts non-blocking: then there is nothing to set. */
	if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0))
		st->error = err_last();
	else if ((r = echo_setup(&e)) < 0)
		st->error = r;
	else {
		st->end = echo_loop(&e, idle_usec);
		if (st->end == WORKER_EOF || st->end == WORKER_DRAINED)
			/* Fails only if the client is already gone, and then there
			 * is nobody left to tell. */
			(void)shutdown(fd, SHUT_WR);
		if (st->error == -ECONNRESET || st->error == -EPIPE || st->error == -ETIMEDOUT)
			st->end = WORKER_RESET;
	}
	echo_close_pipe(&e);
	free(e.buf);
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
	case WORKER_ERROR:
		return "error";
	}
	return "unknown";
}

static void worker_on_term(int sig)
{
	(void)sig;
	worker_stop_requested = 1;
}

/* The master's dispositions and mask are inherited across fork; the worker
 * wants its own: SIGTERM as a flag (let in only by ppoll), SIGPIPE ignored
 * so a vanished client is an EPIPE to log, every other signal default. */
static int worker_signals(void)
{
	struct sigaction ign = {.sa_handler = SIG_IGN}, term = {.sa_handler = worker_on_term};
	/* The master changes no disposition but SIGPIPE's (ignored, which
	 * suits a worker too) and takes the rest from a signalfd, so every
	 * other default is still in place. SIGHUP, SIGINT and SIGUSR1 are
	 * meant for the master: Ctrl-C in a terminal or `systemctl kill`
	 * without --kill-whom=main reach the whole group and must not cut
	 * live connections, which the master drains. */
	static const int for_master[] = {SIGHUP, SIGINT, SIGUSR1};
	sigset_t only_term;

	for (size_t i = 0; i < sizeof(for_master) / sizeof(for_master[0]); i++)
		if (sigaction(for_master[i], &ign, NULL) < 0)
			return err_last();
	if (sigaction(SIGPIPE, &ign, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0)
		return err_last();
	sigemptyset(&only_term);
	sigaddset(&only_term, SIGTERM);
	if (sigprocmask(SIG_SETMASK, &only_term, NULL) < 0)
		return err_last();
	return 0;
}

void worker_report_log(const struct worker_report *r, bool log_connections)
{
	const struct worker_stats *st = &r->st;
	uint64_t usec = r->duration_usec;
	int prio = st->end == WORKER_ERROR ? LOG_WARNING : LOG_INFO;
	char peer[ADDR_STRLEN], host[ADDR_STRLEN], rport[8], lport[8], in[24], out[24], dur[24],
	    pid[16], err[16];
	unsigned port = 0;
	const char *why = worker_end_name(st->end);

	/* A local failure is worth a warning even when connections are not
	 * logged one by one. */
	if ((prio == LOG_INFO && !log_connections) || !log_enabled(prio))
		return;
	if (addr_format((const struct sockaddr *)&r->peer.ss, peer, sizeof(peer)) < 0)
		snprintf(peer, sizeof(peer), "?");
	if (addr_host_port((const struct sockaddr *)&r->peer.ss, host, sizeof(host), &port) < 0)
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
		   "connection from %s closed (%s%s%s): %" PRIu64 " bytes in, %" PRIu64
		   " out, %" PRIu64 ".%03" PRIu64 "s",
		   peer, why, st->error ? ": " : "", st->error ? strerror(-st->error) : "",
		   st->bytes_in, st->bytes_out, usec / 1000000, usec / 1000 % 1000);
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

_Noreturn void worker_run(const struct worker_conn *c)
{
	struct worker_stats st = {.end = WORKER_ERROR};
	uint64_t start;
	int r;

	r = worker_signals();
	start = clock_usec();
	if (r < 0)
		st.error = r;
	else
		worker_echo(c->fd, c->idle_usec, &st);
	if (st.end == WORKER_DRAINED)
		worker_linger(c->fd, WORKER_FLUSH_USEC);
	if (c->totals) {
		__atomic_fetch_add(&c->totals->bytes_in, st.bytes_in, __ATOMIC_RELAXED);
		__atomic_fetch_add(&c->totals->bytes_out, st.bytes_out, __ATOMIC_RELAXED);
	}
	const struct worker_report rep = {
	    .pid = getpid(),
	    .peer = c->peer,
	    .local_port = c->local_port,
	    .duration_usec = clock_usec() - start,
	    .st = st,
	};
	bool wanted = st.end == WORKER_ERROR ? log_enabled(LOG_WARNING)
					     : c->log_connections && log_enabled(LOG_INFO);
	/* A master too busy to take it (a full queue) must not hold up an
	 * exit: then the entry is written from here. */
	if (wanted &&
	    (c->report_fd < 0 || write(c->report_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep)))
		worker_report_log(&rep, c->log_connections);
	close(c->fd);
	_exit(0);
}
