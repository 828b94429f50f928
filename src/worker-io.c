/* Data goes socket -> pipe -> socket with splice(2), so it is never copied
 * through user space; a plain buffer takes over where the kernel refuses
 * splice, and carries small exchanges, for which a pipe costs more than it
 * saves. */
#include "worker-io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"

/* Linux's default pipe capacity. It is not asked for (one system call less
 * per connection): a pipe that got less, because the user is over
 * fs.pipe-user-pages-soft, makes splice move less per call, nothing worse. */
#define WORKER_IO_PIPE_SIZE (64 * 1024)
/* Where splice is refused, reads and writes go through a heap buffer of this
 * size, which bounds the bytes owed as the pipe does in splice mode. */
#define WORKER_IO_BUF_SIZE (64 * 1024)

int worker_io_urgent_inline(int fd)
{
	int one = 1;

	return setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) < 0 ? err_last() : 0;
}

void worker_io_init(struct worker_io *io, int fd, char *small)
{
	*io = (struct worker_io){
	    .fd = fd,
	    .pipe = {-1, -1},
	    .buf = small,
	    .small = small,
	    .cap = WORKER_IO_SMALL_SIZE,
	    .in_ready = true,
	    .out_ready = true,
	};
}

static void worker_io_close_pipe(struct worker_io *io)
{
	if (io->pipe[0] < 0)
		return;
	close(io->pipe[0]);
	close(io->pipe[1]);
	io->pipe[0] = io->pipe[1] = -1;
}

/* Only called with nothing owed, so no byte is left behind in the old place.
 * Without memory the small buffer carries on: slower, never a lost client. */
static void worker_io_use_buffer(struct worker_io *io)
{
	worker_io_close_pipe(io);
	if (!io->big)
		io->big = malloc(WORKER_IO_BUF_SIZE);
	io->buf = io->big ? io->big : io->small;
	io->cap = io->big ? WORKER_IO_BUF_SIZE : WORKER_IO_SMALL_SIZE;
	io->head = 0;
}

/* Back to the caller's small buffer, with nothing owed (see worker_io_in). */
static void worker_io_use_small(struct worker_io *io)
{
	worker_io_close_pipe(io);
	io->buf = io->small;
	io->cap = WORKER_IO_SMALL_SIZE;
	io->head = 0;
}

/* A bulk transfer goes zero-copy from here on, if a pipe can be had. */
static void worker_io_use_splice(struct worker_io *io)
{
	if (pipe2(io->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		io->pipe[0] = io->pipe[1] = -1;
		worker_io_use_buffer(io);
		return;
	}
	io->buf = NULL;
	io->cap = WORKER_IO_PIPE_SIZE;
	io->in_tried = false;
}

static ssize_t worker_io_read(struct worker_io *io, size_t want)
{
	if (io->pipe[0] >= 0)
		return splice(io->fd, NULL, io->pipe[1], NULL, want,
			      SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	/* Owed bytes move to the front so that all the room is in one piece
	 * (rare: only after a short write, and the slow path anyway). */
	if (io->head > 0) {
		memmove(io->buf, io->buf + io->head, io->owed);
		io->head = 0;
	}
	return read(io->fd, io->buf + io->owed, want);
}

/* TCP's urgent mark stops splice: it moves the bytes before the mark, and
 * never the urgent byte or any after it, not even with SO_OOBINLINE. There
 * it returns EAGAIN while poll goes on saying readable, or 0, as at EOF,
 * once the client's FIN is queued behind. Only read() steps over the mark. */
static bool worker_io_at_mark(const struct worker_io *io, ssize_t n)
{
	return io->pipe[0] >= 0 && (n == 0 || (n < 0 && errno == EAGAIN && io->in_polled));
}

ssize_t worker_io_in(struct worker_io *io)
{
	if (io->bulk && io->owed == 0) {
		io->bulk = false;
		worker_io_use_splice(io);
	}

	size_t want = io->cap - io->owed;
	ssize_t n = worker_io_read(io, want);

	if (n < 0 && io->pipe[0] >= 0 && !io->in_tried &&
	    (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
		/* This kernel or socket type cannot splice, or a sandbox forbids
		 * it. Nothing has moved yet, so switching costs nothing. */
		worker_io_use_buffer(io);
		want = io->cap;
		n = worker_io_read(io, want);
	} else if (worker_io_at_mark(io, n) && io->owed > 0) {
		/* What the pipe holds goes out first, to keep the bytes in order;
		 * then the socket polls readable again, with the pipe empty. */
		n = -1;
		errno = EAGAIN;
	} else if (worker_io_at_mark(io, n)) {
		/* A read that fills the small buffer brings splice back. Any other
		 * POLLIN that splice cannot use, and a real EOF, cost the same one
		 * read. */
		worker_io_use_small(io);
		want = io->cap;
		n = worker_io_read(io, want);
	}
	io->in_tried = true;
	io->in_polled = false;
	if (n < 0)
		n = err_last();
	if (n > 0) {
		io->owed += (size_t)n;
		io->bytes_in += (uint64_t)n;
		if (io->buf == io->small && (size_t)n == WORKER_IO_SMALL_SIZE)
			io->bulk = true;
	}
	/* A short read has probably drained the socket: asking again would
	 * only return EAGAIN, so the next read waits for POLLIN. */
	if (n == -EAGAIN || (n > 0 && (size_t)n < want))
		io->in_ready = false;
	return n;
}

ssize_t worker_io_out(struct worker_io *io)
{
	size_t want = io->owed;
	ssize_t n;

	if (io->pipe[0] < 0)
		n = write(io->fd, io->buf + io->head, want);
	else
		n = splice(io->pipe[0], NULL, io->fd, NULL, want,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n < 0) {
		io->out_ready = errno != EAGAIN;
		return err_last();
	}
	io->owed -= (size_t)n;
	io->head = io->owed ? io->head + (size_t)n : 0;
	io->bytes_out += (uint64_t)n;
	/* A short write means the socket buffer is full: the next try would
	 * only return EAGAIN. */
	if ((size_t)n < want)
		io->out_ready = false;
	return n;
}

short worker_io_events(const struct worker_io *io, bool reading)
{
	short events = 0;

	if (reading && !io->in_ready && io->owed < io->cap && (io->pipe[0] < 0 || io->owed == 0))
		/* In splice mode "room" in a pipe with data is a guess, and a
		 * wrong guess would spin on POLLIN: wait for output instead. */
		events |= POLLIN;
	if (io->owed > 0 && !io->out_ready)
		events |= POLLOUT;
	return events;
}

void worker_io_ready(struct worker_io *io, short revents)
{
	/* An error or hangup is reported by the next read or write. */
	if (revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))
		io->in_ready = true;
	io->in_polled = revents & POLLIN;
	if (revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))
		io->out_ready = true;
}

void worker_io_done(struct worker_io *io)
{
	worker_io_close_pipe(io);
	free(io->big);
	io->big = NULL;
}
