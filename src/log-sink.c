/* The log's output side: non-blocking writes to stderr and the journal's
 * socket, and the master's bounded queue for when they are busy. */
#include "log-sink.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum log_sink_kind {
	LOG_SINK_FILE, /* a regular file (or unknown): writes do not wait for a reader */
	LOG_SINK_NB,   /* our own O_NONBLOCK description of a pipe, FIFO or terminal */
	LOG_SINK_SOCK, /* a socket: send with MSG_DONTWAIT */
	LOG_SINK_POLL, /* a pipe we could not reopen: write only after poll says so */
};

/* A queued entry: this header, then len bytes. */
struct log_sink_rec {
	uint16_t len;
	uint8_t dest;
};

static struct {
	enum log_sink_kind kind;
	int out_fd;	   /* where stderr lines go */
	int journal_fd;	   /* datagram socket, -1 until opened */
	bool journal_conn; /* connected (master) rather than sendto each time */
	bool queueing;	   /* the master queues; a worker drops */
	size_t head, tail; /* queued records are q[head..tail) */
	size_t sent;	   /* bytes of the head record already written (streams) */
	unsigned long long dropped;
	/* Entries were dropped because the sink was busy, and the count is not
	 * told yet: the loop waits for the sink to take entries even when the
	 * queue is empty (a line of the master's own may have emptied it),
	 * so the count is never held back until the next stall. Not set for a
	 * sink that failed for good (EPIPE), which would poll ready forever. */
	bool notice_due;
	enum log_dest notice_dest;
	char q[LOG_SINK_QUEUE];
} log_sink = {.kind = LOG_SINK_FILE, .out_fd = STDERR_FILENO, .journal_fd = -1, .queueing = true};

void log_sink_init(void)
{
	int saved = errno, fd;
	struct stat st;

	if (fstat(STDERR_FILENO, &st) < 0 || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		errno = saved;
		return;
	}
	if (S_ISSOCK(st.st_mode)) {
		log_sink.kind = LOG_SINK_SOCK;
		errno = saved;
		return;
	}
	/* Setting O_NONBLOCK on fd 2 itself would change the description
	 * the shell and every other process on that terminal or pipe share.
	 * Opening it anew gives one of our own. */
	fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd >= 0) {
		/* Kept open across fork, for the workers; never fd 2's slot. */
		log_sink.kind = LOG_SINK_NB;
		log_sink.out_fd = fd;
	} else {
		log_sink.kind = LOG_SINK_POLL;
	}
	errno = saved;
}

int log_sink_journal_open(void)
{
	static const struct sockaddr_un sa = {.sun_family = AF_UNIX,
					      .sun_path = LOG_SINK_JOURNAL_SOCKET};
	int saved = errno, r = 0;

	if (log_sink.journal_fd >= 0 && log_sink.journal_conn)
		return 0;
	if (log_sink.journal_fd < 0)
		log_sink.journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (log_sink.journal_fd < 0)
		r = -errno;
	else if (!log_sink.queueing)
		r = 0; /* a worker: sendto, connect is not in its sandbox */
	else if (connect(log_sink.journal_fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0)
		r = -errno;
	else
		log_sink.journal_conn = true;
	errno = saved;
	return r;
}

/* One attempt, never waiting: bytes written (possibly fewer than len on a
 * stream), -EAGAIN when the sink is full, or another -errno. */
static ssize_t log_sink_try(enum log_dest d, const char *buf, size_t len)
{
	static const struct sockaddr_un sa = {.sun_family = AF_UNIX,
					      .sun_path = LOG_SINK_JOURNAL_SOCKET};
	const int flags = MSG_DONTWAIT | MSG_NOSIGNAL;
	ssize_t n;

	if (d == LOG_DEST_JOURNAL) {
		if (log_sink.journal_fd < 0 && log_sink_journal_open() < 0 &&
		    log_sink.journal_fd < 0)
			return -ENOTCONN;
		if (log_sink.journal_conn)
			n = send(log_sink.journal_fd, buf, len, flags);
		else
			n = sendto(log_sink.journal_fd, buf, len, flags,
				   (const struct sockaddr *)&sa, sizeof(sa));
		/* journald restarted: its old socket is gone; connect again
		 * next time. */
		if (n < 0 && errno == ECONNREFUSED && log_sink.journal_conn) {
			close(log_sink.journal_fd);
			log_sink.journal_fd = -1;
			log_sink.journal_conn = false;
		}
	} else if (log_sink.kind == LOG_SINK_SOCK) {
		n = send(log_sink.out_fd, buf, len, flags);
	} else {
		struct pollfd p = {.fd = log_sink.out_fd, .events = POLLOUT};

		if (log_sink.kind == LOG_SINK_POLL && poll(&p, 1, 0) == 0)
			return -EAGAIN;
		n = write(log_sink.out_fd, buf, len);
	}
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static bool log_sink_push(enum log_dest d, const char *buf, size_t len, size_t done)
{
	struct log_sink_rec h = {.len = (uint16_t)len, .dest = (uint8_t)d};
	size_t need = sizeof(h) + len;

	if (len > UINT16_MAX || need > sizeof(log_sink.q))
		return false;
	if (log_sink.tail + need > sizeof(log_sink.q)) {
		if (log_sink.tail - log_sink.head + need > sizeof(log_sink.q))
			return false;
		memmove(log_sink.q, log_sink.q + log_sink.head, log_sink.tail - log_sink.head);
		log_sink.tail -= log_sink.head;
		log_sink.head = 0;
	}
	if (log_sink.head == log_sink.tail)
		log_sink.sent = done;
	memcpy(log_sink.q + log_sink.tail, &h, sizeof(h));
	memcpy(log_sink.q + log_sink.tail + sizeof(h), buf, len);
	log_sink.tail += need;
	return true;
}

/* An entry dropped because d was busy, not broken. */
static void log_sink_drop_busy(enum log_dest d)
{
	log_sink.dropped++;
	if (!log_sink.notice_due) {
		log_sink.notice_due = true;
		log_sink.notice_dest = d;
	}
}

static bool log_sink_queued(void)
{
	return log_sink.head != log_sink.tail;
}

static void log_sink_pop(void)
{
	struct log_sink_rec h;

	memcpy(&h, log_sink.q + log_sink.head, sizeof(h));
	log_sink.head += sizeof(h) + h.len;
	log_sink.sent = 0;
	if (log_sink.head == log_sink.tail)
		log_sink.head = log_sink.tail = 0;
}

/* Writes queued records until one does not go through: true if the queue
 * is empty afterwards. */
static bool log_sink_drain(void)
{
	while (log_sink_queued()) {
		struct log_sink_rec h;
		const char *p;
		ssize_t n;

		memcpy(&h, log_sink.q + log_sink.head, sizeof(h));
		p = log_sink.q + log_sink.head + sizeof(h);
		n = log_sink_try((enum log_dest)h.dest, p + log_sink.sent, h.len - log_sink.sent);
		if (n == -EAGAIN)
			return false;
		if (n < 0) {
			/* Cannot go anywhere now (journald gone, stderr closed). */
			log_sink.dropped++;
			log_sink_pop();
		} else if ((size_t)n < h.len - log_sink.sent) {
			log_sink.sent += (size_t)n;
		} else {
			log_sink_pop();
		}
	}
	return true;
}

int log_sink_write(enum log_dest d, const char *buf, size_t len)
{
	int saved = errno, r = 0;
	ssize_t n = 0;

	/* Behind what is queued, in order; unless the queue empties now. */
	if (log_sink_queued() && !log_sink_drain()) {
		if (!log_sink_push(d, buf, len, 0))
			log_sink_drop_busy(d);
		errno = saved;
		return 0;
	}
	n = log_sink_try(d, buf, len);
	if (n == -EAGAIN)
		n = 0;
	else if (n < 0)
		r = d == LOG_DEST_JOURNAL ? -1 : 0; /* stderr: nowhere left to say it */
	if (r == 0 && n >= 0 && (size_t)n < len &&
	    !(log_sink.queueing && log_sink_push(d, buf, len, (size_t)n))) {
		/* A worker, or a full queue. A line cut short on a stream is
		 * ended, so that the next one starts on its own line. */
		log_sink_drop_busy(d);
		if (n > 0)
			(void)log_sink_try(d, "\n", 1);
	}
	errno = saved;
	return r;
}

int log_sink_poll_fd(void)
{
	struct log_sink_rec h = {.dest = (uint8_t)log_sink.notice_dest};

	if (log_sink_queued())
		memcpy(&h, log_sink.q + log_sink.head, sizeof(h));
	else if (!log_sink.notice_due)
		return -1;
	if (h.dest == LOG_DEST_JOURNAL)
		return log_sink.journal_fd >= 0 ? log_sink.journal_fd : log_sink.out_fd;
	return log_sink.out_fd;
}

unsigned long long log_sink_flush(void)
{
	int saved = errno;
	unsigned long long n = 0;

	if (log_sink_drain()) {
		n = log_sink.dropped;
		log_sink.dropped = 0;
		log_sink.notice_due = false;
	}
	errno = saved;
	return n;
}

void log_sink_forked(void)
{
	log_sink.head = log_sink.tail = log_sink.sent = 0;
	log_sink.dropped = 0;
	log_sink.notice_due = false;
	log_sink.queueing = false;
}
