/* How a worker moves bytes: read/write through a buffer for small exchanges,
 * splice through a pipe for bulk ones, a heap buffer where splice is refused.
 * The echo loop in worker.c decides when to move them; this decides how. */
#ifndef ECHOD_WORKER_IO_H
#define ECHOD_WORKER_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A connection starts with plain read/write through a buffer of this size
 * that the caller provides (worker_echo keeps it in its stack frame): most
 * echo exchanges are small, and for them a pipe costs more system calls
 * (pipe2, two closes) than it saves copying. A read that fills it marks a
 * bulk transfer, which then moves to splice. */
#define WORKER_IO_SMALL_SIZE 1024

struct worker_io {
	int fd;
	int pipe[2];	/* splice mode; -1 otherwise */
	char *buf;	/* read/write mode: small, or big where splice fails */
	char *big;	/* heap buffer, once splice has failed */
	char *small;	/* WORKER_IO_SMALL_SIZE bytes of the caller's */
	size_t cap;	/* most bytes owed at once: buffer or pipe size */
	size_t head;	/* read/write mode: first owed byte in buf */
	size_t owed;	/* read from the client, not yet written back */
	bool in_ready;	/* a read may find data */
	bool in_polled; /* poll said POLLIN and no read has been tried since */
	bool in_tried;	/* splice mode: only the first read can find it unsupported */
	bool bulk;	/* a read filled the small buffer: splice from now on */
	bool out_ready; /* a write may find room */
	uint64_t bytes_in;
	uint64_t bytes_out;
};

/* Makes TCP's urgent byte (MSG_OOB) ordinary data, read and echoed in its
 * place like any other (SO_OOBINLINE): an echo server returns every byte
 * it got, and without it the byte would be taken out of the stream and
 * lost. Called before the sandbox, which has no setsockopt. Returns 0 or
 * -errno. */
int worker_io_urgent_inline(int fd);

/* Starts in read/write mode on the caller's small buffer, ready both ways. */
void worker_io_init(struct worker_io *io, int fd, char *small);

/* One read from the client, if there is room. Returns bytes read, 0 at the
 * client's EOF, or -errno (-EAGAIN included). */
ssize_t worker_io_in(struct worker_io *io);

/* One write of what is owed. Returns bytes written or -errno (-EAGAIN
 * included). */
ssize_t worker_io_out(struct worker_io *io);

/* What to poll for: reading is whether the loop still takes input. */
short worker_io_events(const struct worker_io *io, bool reading);

/* Takes poll's answer: which side may move now. */
void worker_io_ready(struct worker_io *io, short revents);

/* Releases the pipe and the heap buffer. */
void worker_io_done(struct worker_io *io);

#endif
