/* The echo loop over a socketpair and over loopback TCP: both data paths,
 * flow control, every way a connection ends, and worker_run in a child. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "log.h"
#include "peer.h"
#include "worker.h"

#define WAIT_MS 10000 /* the bound of every single wait: a bug fails, never hangs */
#define MIB	(1024 * 1024)
/* More than all socket buffers and the pipe can hold: a peer that manages to
 * write this much without reading has met no flow control. */
#define FILL_LIMIT (256ull * MIB)

enum kind { KIND_UNIX, KIND_TCP };
static const char *const kind_name[] = {"unix", "tcp"};

static uint64_t seed;

static void fail(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

/* A random byte stream that any range of can be regenerated, so that the
 * peer checks megabytes of echo without keeping what it sent. */
static void stream_fill(unsigned char *buf, uint64_t pos, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t z = seed + ((pos + i) >> 3) * 0x9e3779b97f4a7c15ull;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		buf[i] = (unsigned char)(z >> (((pos + i) & 7) * 8));
	}
}

static int stream_check(const unsigned char *buf, uint64_t pos, size_t n)
{
	unsigned char want[65536];

	stream_fill(want, pos, n);
	return memcmp(buf, want, n) == 0;
}

/* fds[0] goes to the worker, fds[1] to the test's peer, both non-blocking
 * (the master accepts so, and worker_echo relies on it). A
 * peer_rcvbuf is set before connecting, so that TCP's window follows it (a
 * unix socket is limited by its sender's buffer instead). */
static void make_pair(enum kind k, int fds[2], int peer_rcvbuf)
{
	if (k == KIND_UNIX) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
			fail("socketpair");
	} else {
		struct sockaddr_in sin = {.sin_family = AF_INET};
		socklen_t len = sizeof(sin);
		int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (l < 0 || fds[1] < 0 || bind(l, (struct sockaddr *)&sin, len) < 0 ||
		    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&sin, &len) < 0)
			fail("listen on 127.0.0.1");
		if (peer_rcvbuf &&
		    setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &peer_rcvbuf, sizeof(int)) < 0)
			fail("SO_RCVBUF");
		if (connect(fds[1], (struct sockaddr *)&sin, len) < 0)
			fail("connect");
		fds[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (fds[0] < 0)
			fail("accept");
		close(l);
	}
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(fds[1], F_SETFL, O_NONBLOCK) < 0)
		fail("O_NONBLOCK");
}

static int peer_poll(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};

	return poll(&p, 1, ms) > 0;
}

/* Sends stream bytes [pos, pos + n); 0 when all went out in time. */
static int peer_send(int fd, uint64_t pos, size_t n)
{
	unsigned char buf[65536];

	while (n > 0 && peer_poll(fd, POLLOUT, WAIT_MS)) {
		size_t len = n < sizeof(buf) ? n : sizeof(buf);
		stream_fill(buf, pos, len);
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno != EAGAIN)
			return -1;
		if (w > 0) {
			pos += (uint64_t)w;
			n -= (size_t)w;
		}
	}
	return n == 0 ? 0 : -1;
}

/* Reads until EOF, checking the stream from pos on; returns how many bytes
 * came, or -1 on a wrong byte, an error or no EOF in time. */
static long long peer_recv_to_eof(int fd, uint64_t pos)
{
	unsigned char buf[65536];
	long long got = 0;

	while (peer_poll(fd, POLLIN, WAIT_MS)) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r == 0)
			return got;
		if (r < 0 && errno != EAGAIN)
			return -1;
		if (r > 0 && !stream_check(buf, pos + (uint64_t)got, (size_t)r))
			return -1;
		got += r > 0 ? r : 0;
	}
	return -1;
}

/* Reads exactly n stream bytes from pos on; 0 when they all came, intact. */
static int peer_recv(int fd, uint64_t pos, size_t n)
{
	unsigned char buf[65536];

	while (n > 0 && peer_poll(fd, POLLIN, WAIT_MS)) {
		ssize_t r = read(fd, buf, n < sizeof(buf) ? n : sizeof(buf));
		if (r == 0 || (r < 0 && errno != EAGAIN))
			return -1;
		if (r > 0 && !stream_check(buf, pos, (size_t)r))
			return -1;
		if (r > 0) {
			pos += (uint64_t)r;
			n -= (size_t)r;
		}
	}
	return n == 0 ? 0 : -1;
}

/* Writes n bytes in writes of up to wchunk and half-closes after the last,
 * while reading the echo rchunk bytes at a time, pausing pause_us after each
 * read. 0 when everything came back intact, followed by EOF. */
static int peer_exchange(int fd, size_t n, size_t wchunk, size_t rchunk, unsigned pause_us)
{
	unsigned char *wbuf = malloc(wchunk), rbuf[65536];
	size_t sent = 0, rcvd = 0, base = 0, blen = 0; /* wbuf holds [base, base + blen) */
	int ok = wbuf != NULL;

	while (ok && rcvd < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
		ok = poll(&p, 1, WAIT_MS) > 0;
		if (ok && (p.revents & POLLOUT)) {
			if (sent == base + blen) {
				base = sent;
				blen = n - sent < wchunk ? n - sent : wchunk;
				stream_fill(wbuf, base, blen);
			}
			ssize_t w = write(fd, wbuf + (sent - base), base + blen - sent);
			sent += w > 0 ? (size_t)w : 0;
			ok = w >= 0 || errno == EAGAIN;
			if (sent == n && shutdown(fd, SHUT_WR) < 0)
				ok = 0;
		}
		if (ok && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
			size_t len = n - rcvd < rchunk ? n - rcvd : rchunk;
			ssize_t r = read(fd, rbuf, len);
			ok = r > 0 ? stream_check(rbuf, rcvd, (size_t)r) : r < 0 && errno == EAGAIN;
			rcvd += r > 0 ? (size_t)r : 0;
			if (pause_us)
				usleep(pause_us);
		}
	}
	free(wbuf);
	return ok && peer_recv_to_eof(fd, n) == 0 ? 0 : -1;
}

/* Writes the stream without reading until nothing moves for 300 ms. */
static uint64_t peer_fill(int fd)
{
	unsigned char buf[65536];
	uint64_t sent = 0;

	while (sent < FILL_LIMIT && peer_poll(fd, POLLOUT, 300)) {
		stream_fill(buf, sent, sizeof(buf));
		ssize_t w = write(fd, buf, sizeof(buf));
		if (w < 0 && errno != EAGAIN)
			break;
		sent += w > 0 ? (uint64_t)w : 0;
	}
	return sent;
}

/* Pipes this process holds: the worker's own shows up while it runs. */
static int count_pipes(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	char target[64];
	int n = 0;

	if (!d)
		fail("/proc/self/fd");
	while ((de = readdir(d))) {
		ssize_t len = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
		n += len > 5 && strncmp(target, "pipe:", 5) == 0;
	}
	closedir(d);
	return n;
}

/* worker_echo in a thread of this process. */
struct run {
	pthread_t thread;
	int fd;
	uint64_t idle_usec;
	uint64_t end_usec;
	struct worker_stats st;
	int ret;
	int done;
	uint64_t ended;
};

static void *run_main(void *arg)
{
	struct run *r = arg;

	r->ret = worker_echo(r->fd, r->idle_usec, r->end_usec, &r->st);
	/* what worker_run's close does, with the test still holding the fd */
	if (r->st.end == WORKER_EOF || r->st.end == WORKER_DRAINED || r->st.end == WORKER_LIFETIME)
		shutdown(r->fd, SHUT_WR);
	r->ended = clock_usec();
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void run_start_with(struct run *r, int fd, uint64_t idle_usec, void *(*fn)(void *))
{
	*r = (struct run){.fd = fd, .idle_usec = idle_usec};
	if (pthread_create(&r->thread, NULL, fn, r) != 0)
		fail("pthread_create");
}

static void run_start(struct run *r, int fd, uint64_t idle_usec)
{
	run_start_with(r, fd, idle_usec, run_main);
}

/* With a lifetime that ends at end_usec. */
static void run_start_until(struct run *r, int fd, uint64_t end_usec)
{
	*r = (struct run){.fd = fd, .end_usec = end_usec};
	if (pthread_create(&r->thread, NULL, run_main, r) != 0)
		fail("pthread_create");
}

static void run_join(struct run *r)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	if (pthread_timedjoin_np(r->thread, NULL, &ts) != 0) {
		fprintf(stderr, "worker_echo did not end in time\n");
		exit(EXIT_FAILURE);
	}
	CHECK_INT(r->ret, 0);
}

static void close_pair(int fds[2])
{
	close(fds[0]);
	close(fds[1]);
}

static void test_one_byte(enum kind k)
{
	int fds[2], pipes = count_pipes();
	struct run r;

	make_pair(k, fds, 0);
	run_start(&r, fds[0], 0);
	CHECK_INT(peer_send(fds[1], 0, 1), 0);
	CHECK_INT(peer_recv(fds[1], 0, 1), 0);
	/* a small exchange costs no pipe */
	CHECK_INT(count_pipes(), pipes);
	CHECK_INT(shutdown(fds[1], SHUT_WR), 0);
	CHECK_INT(peer_recv_to_eof(fds[1], 1), 0);
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_EOF);
	CHECK_INT(r.st.bytes_in, 1);
	CHECK_INT(r.st.bytes_out, 1);
	CHECK_INT(r.st.error, 0);
	CHECK_INT(count_pipes(), pipes);
	close_pair(fds);
}

/* Small messages go by read and write; the first read that fills the small
 * buffer moves the connection to splice through one pipe, which lives as
 * long as the loop. */
static void test_to_splice(enum kind k)
{
	const size_t small = 100, big = 64 * 1024;
	int fds[2], pipes = count_pipes();
	struct run r;

	make_pair(k, fds, 0);
	run_start(&r, fds[0], 0);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(peer_send(fds[1], i * small, small), 0);
		CHECK_INT(peer_recv(fds[1], i * small, small), 0);
		CHECK_INT(count_pipes(), pipes);
	}
	CHECK_INT(peer_send(fds[1], 3 * small, big), 0);
	CHECK_INT(peer_recv(fds[1], 3 * small, big), 0);
	CHECK_INT(count_pipes(), pipes + 2);
	/* and the stream goes on intact after the switch */
	CHECK_INT(peer_send(fds[1], 3 * small + big, small), 0);
	CHECK_INT(shutdown(fds[1], SHUT_WR), 0);
	CHECK_INT(peer_recv_to_eof(fds[1], 3 * small + big), small);
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_EOF);
	CHECK_INT(r.st.bytes_in, 4 * small + big);
	CHECK_INT(r.st.bytes_out, 4 * small + big);
	CHECK_INT(count_pipes(), pipes);
	close_pair(fds);
}

/* Megabytes at once, written while the echo is read, and a peer that reads a
 * little at a time into a small buffer (so the worker's writes come up
 * short); half-closing after the last byte, both must get all of it back. */
static void test_bulk(enum kind k, size_t n, int small_buffers)
{
	int fds[2], small = 4096;
	struct run r;

	make_pair(k, fds, small_buffers ? small : 0);
	if (small_buffers && setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) < 0)
		fail("SO_SNDBUF");
	run_start(&r, fds[0], 0);
	if (small_buffers)
		CHECK_INT(peer_exchange(fds[1], n, MIB, 1500, 20), 0);
	else
		CHECK_INT(peer_exchange(fds[1], n, MIB, 65536, 0), 0);
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_EOF);
	CHECK_INT(r.st.bytes_in, n);
	CHECK_INT(r.st.bytes_out, n);
	close_pair(fds);
}

/* Everything is sent and the write side shut before a byte is read back. */
static void test_half_close(enum kind k)
{
	const size_t n = 65536;
	int fds[2];
	struct run r;

	make_pair(k, fds, 0);
	run_start(&r, fds[0], 0);
	CHECK_INT(peer_send(fds[1], 0, n), 0);
	CHECK_INT(shutdown(fds[1], SHUT_WR), 0);
	CHECK_INT(peer_recv_to_eof(fds[1], 0), n);
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_EOF);
	CHECK_INT(r.st.bytes_in, n);
	CHECK_INT(r.st.bytes_out, n);
	close_pair(fds);
}

/* A byte every 60 ms keeps a 500 ms idle timer from firing for longer than
 * 500 ms; silence then ends the loop. */
static void test_idle(enum kind k)
{
	const uint64_t idle = 500000;
	uint64_t last = 0;
	int fds[2];
	struct run r;

	make_pair(k, fds, 0);
	run_start(&r, fds[0], idle);
	for (int i = 0; i < 10; i++) {
		usleep(60000);
		last = clock_usec(); /* the worker cannot move this byte earlier */
		CHECK_INT(peer_send(fds[1], (uint64_t)i, 1), 0);
		CHECK_INT(peer_recv(fds[1], (uint64_t)i, 1), 0);
	}
	CHECK_INT(__atomic_load_n(&r.done, __ATOMIC_ACQUIRE), 0);
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_IDLE);
	CHECK_INT(r.st.bytes_in, 10);
	CHECK_INT(r.st.bytes_out, 10);
	CHECK(r.ended >= last + idle);
	CHECK(r.ended < last + idle + 5000000);
	close_pair(fds);
}

/* A connection that keeps talking is still closed at the end of its
 * lifetime, after everything read has been sent back. */
static void test_lifetime(enum kind k)
{
	const uint64_t life = 300000;
	uint64_t start = clock_usec(), sent = 0;
	int fds[2];
	struct run r;

	make_pair(k, fds, 0);
	run_start_until(&r, fds[0], start + life);
	while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE) && clock_usec() < start + 5000000) {
		if (peer_send(fds[1], sent, 1) != 0 || peer_recv(fds[1], sent, 1) != 0)
			break;
		sent++;
		usleep(20000);
	}
	CHECK_INT(peer_recv_to_eof(fds[1], sent), 0);
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_LIFETIME);
	CHECK_INT(r.st.bytes_in, sent);
	CHECK_INT(r.st.bytes_out, sent);
	CHECK(r.ended >= start + life);
	CHECK(r.ended < start + life + 2000000);
	close_pair(fds);
}

/* Data that never stops flowing never makes the loop wait: the lifetime is
 * looked at every few rounds all the same. */
static void test_lifetime_busy(void)
{
	const size_t n = 64 * MIB;
	uint64_t start = clock_usec();
	long long got;
	int fds[2];
	struct run r;

	make_pair(KIND_UNIX, fds, 0);
	run_start_until(&r, fds[0], start + 100000);
	got = peer_exchange(fds[1], n, 65536, 65536, 0);
	run_join(&r);
	CHECK(got != 0); /* cut short */
	CHECK_INT(r.st.end, WORKER_LIFETIME);
	CHECK(r.st.bytes_in < n);
	CHECK(r.ended < start + 100000 + 2000000);
	close_pair(fds);
}

/* An idle timeout too long to add to the clock is as good as none. */
static void test_idle_huge(void)
{
	int fds[2];
	struct run r;

	make_pair(KIND_UNIX, fds, 0);
	run_start(&r, fds[0], UINT64_MAX);
	usleep(20000);
	CHECK_INT(peer_send(fds[1], 0, 1), 0);
	CHECK_INT(peer_recv(fds[1], 0, 1), 0);
	CHECK_INT(shutdown(fds[1], SHUT_WR), 0);
	CHECK_INT(peer_recv_to_eof(fds[1], 1), 0);
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_EOF);
	close_pair(fds);
}

/* A client that sends and never reads is read from only while the echo has
 * somewhere to go, and is dropped by the idle rule once nothing moves. */
static void test_never_reads(enum kind k)
{
	int fds[2];
	struct run r;
	uint64_t sent;

	make_pair(k, fds, 0);
	run_start(&r, fds[0], 300000);
	sent = peer_fill(fds[1]);
	run_join(&r);
	CHECK(sent < FILL_LIMIT);
	CHECK_INT(r.st.end, WORKER_IDLE);
	CHECK(r.st.bytes_in > 0);
	CHECK(r.st.bytes_in <= sent);
	CHECK(r.st.bytes_in - r.st.bytes_out <= MIB);
	close_pair(fds);
}

/* The peer goes away with the echo unread: TCP sends a reset (SO_LINGER 0),
 * a unix socket reports ECONNRESET. */
static void test_reset(enum kind k)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	int fds[2];
	struct run r;

	make_pair(k, fds, 0);
	run_start(&r, fds[0], 0);
	CHECK_INT(peer_send(fds[1], 0, 5), 0);
	CHECK(peer_poll(fds[1], POLLIN, WAIT_MS));
	if (k == KIND_TCP && setsockopt(fds[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
		fail("SO_LINGER");
	close(fds[1]);
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_RESET);
	CHECK_INT(r.st.error, -ECONNRESET);
	CHECK_INT(r.st.bytes_in, 5);
	close(fds[0]);
}

/* What worker_run's SIGTERM handler does, here sent to the worker thread. */
static void on_stop_signal(int sig)
{
	(void)sig;
	worker_stop_requested = 1;
}

/* Told to stop while it owes bytes to a peer that is not reading: it stops
 * reading, hands back everything it read (if the peer reads again) or gives
 * up after a bounded flush (if not), and shuts down its write side. */
static void test_drain(enum kind k, int peer_reads)
{
	int fds[2];
	struct run r;
	uint64_t sent;

	make_pair(k, fds, 0);
	run_start(&r, fds[0], 0);
	sent = peer_fill(fds[1]);
	CHECK(sent < FILL_LIMIT);
	pthread_kill(r.thread, SIGUSR2);
	if (peer_reads) {
		long long got = peer_recv_to_eof(fds[1], 0);
		run_join(&r);
		CHECK_INT(got, r.st.bytes_out);
		CHECK_INT(r.st.bytes_out, r.st.bytes_in);
	} else {
		run_join(&r);
		CHECK(r.st.bytes_out < r.st.bytes_in);
		CHECK_INT(peer_recv_to_eof(fds[1], 0), r.st.bytes_out);
	}
	worker_stop_requested = 0;
	CHECK_INT(r.st.end, WORKER_DRAINED);
	CHECK(r.st.bytes_in > 0);
	CHECK(r.st.bytes_in < sent);
	close_pair(fds);
}

static uint64_t thread_cpu_usec(pthread_t t)
{
	struct timespec ts;
	clockid_t cid;

	if (pthread_getcpuclockid(t, &cid) != 0 || clock_gettime(cid, &ts) < 0)
		fail("thread CPU clock");
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Each tiny segment takes a whole pipe slot, so the pipe fills with a few
 * bytes in it while the socket holds more: with the echo blocked, the worker
 * must wait for output rather than spin on POLLIN. */
static void test_no_spin(void)
{
	int fds[2], small = 1;
	uint64_t sent = 0, cpu;
	long long got;
	unsigned char b;
	struct run r;

	make_pair(KIND_UNIX, fds, 0);
	if (setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) < 0)
		fail("SO_SNDBUF");
	run_start(&r, fds[0], 0);
	for (stream_fill(&b, 0, 1); peer_poll(fds[1], POLLOUT, 300) && write(fds[1], &b, 1) == 1;)
		stream_fill(&b, ++sent, 1);
	cpu = thread_cpu_usec(r.thread);
	usleep(200000);
	cpu = thread_cpu_usec(r.thread) - cpu;
	fprintf(stderr, "worker CPU in 200 ms blocked: %llu us\n", (unsigned long long)cpu);
	CHECK(cpu < 50000);
	pthread_kill(r.thread, SIGUSR2);
	got = peer_recv_to_eof(fds[1], 0);
	run_join(&r);
	worker_stop_requested = 0;
	CHECK_INT(r.st.end, WORKER_DRAINED);
	CHECK_INT(got, r.st.bytes_out);
	CHECK(r.st.bytes_in < sent);
	close_pair(fds);
}

/* TCP urgent data (MSG_OOB) after `before` stream bytes, then `after` more
 * and the FIN: before >= 1 KiB meets it on the splice path. Made inline
 * (as worker_run does) the urgent byte comes back in its place; else TCP
 * takes it out of the stream and every other byte comes back. Either way
 * the worker waits at the mark rather than spin, and a mark just before
 * the FIN is not taken for the end. */
static void test_urgent(size_t before, size_t after, int inline_urgent)
{
	const size_t total = before + (inline_urgent ? 1 : 0) + after;
	int fds[2], one = 1;
	unsigned char b;
	uint64_t cpu;
	struct run r;

	make_pair(KIND_TCP, fds, 0);
	if (inline_urgent && setsockopt(fds[0], SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) < 0)
		fail("SO_OOBINLINE");
	run_start(&r, fds[0], 0);
	CHECK_INT(peer_send(fds[1], 0, before), 0);
	CHECK_INT(peer_recv(fds[1], 0, before), 0);
	stream_fill(&b, before, 1);
	CHECK_INT(send(fds[1], &b, 1, MSG_OOB), 1);
	cpu = thread_cpu_usec(r.thread);
	usleep(500000);
	cpu = thread_cpu_usec(r.thread) - cpu;
	fprintf(stderr, "urgent byte after %zu: worker CPU in the next 500 ms: %llu us\n", before,
		(unsigned long long)cpu);
	CHECK(cpu < 100000);
	CHECK_INT(peer_send(fds[1], before + 1, after), 0);
	CHECK_INT(shutdown(fds[1], SHUT_WR), 0);
	if (inline_urgent) {
		CHECK_INT(peer_recv_to_eof(fds[1], before), 1 + after);
	} else {
		CHECK_INT(peer_recv(fds[1], before + 1, after), 0);
		CHECK_INT(peer_recv_to_eof(fds[1], before + 1 + after), 0);
	}
	run_join(&r);
	CHECK_INT(r.st.end, WORKER_EOF);
	CHECK_INT(r.st.bytes_in, total);
	CHECK_INT(r.st.bytes_out, total);
	close_pair(fds);
}

/* As in worker_run: the stop signal is blocked, so it stays pending until
 * the loop lets it in with ppoll. */
static void *run_main_stop_pending(void *arg)
{
	sigset_t usr2;

	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &usr2, NULL);
	pthread_kill(pthread_self(), SIGUSR2);
	return run_main(arg);
}

/* Data that never stops flowing never makes the loop wait, yet a pending stop
 * signal must get in: 16 MiB queued ahead and socket buffers big enough that
 * neither direction blocks (which takes CAP_NET_ADMIN). */
static void test_busy_stop(void)
{
	const size_t n = 16 * MIB;
	int fds[2], big = (int)(4 * n); /* poll says POLLOUT below a quarter */
	long long got;
	struct run r;

	make_pair(KIND_UNIX, fds, 0);
	if (setsockopt(fds[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0 ||
	    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0) {
		if (errno != EPERM)
			fail("SO_SNDBUFFORCE");
		fprintf(stderr, "skipped the busy stop test: no CAP_NET_ADMIN\n");
		close_pair(fds);
		return;
	}
	CHECK_INT(peer_send(fds[1], 0, n), 0);
	run_start_with(&r, fds[0], 0, run_main_stop_pending);
	got = peer_recv_to_eof(fds[1], 0);
	run_join(&r);
	worker_stop_requested = 0;
	CHECK_INT(r.st.end, WORKER_DRAINED);
	CHECK(r.st.bytes_in < n);
	CHECK_INT(got, r.st.bytes_out);
	close_pair(fds);
}

/* Makes this process's splice(2) fail with err, as an old kernel, an odd
 * socket type or a sandbox would. */
static int deny_splice(int err)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_splice, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -1;
	return 0;
}

/* Leaves this process no free descriptor, so the worker's pipe2 fails. */
static int deny_pipe(int unused)
{
	struct rlimit rl;
	int p[2], fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	(void)unused;
	if (fd < 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	rl.rlim_cur = 32;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	while (dup(fd) >= 0)
		;
	return pipe(p) < 0 && errno == EMFILE ? 0 : -1;
}

/* Waits (bounded) for the child; returns its wait status. */
static int child_wait(pid_t pid)
{
	int status = -1;

	for (int i = 0; i < WAIT_MS / 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	fprintf(stderr, "worker_run child did not end in time\n");
	return -1;
}

/* worker_echo in a child that first made splice or the pipe impossible, so
 * that the read/write path carries the data, through small buffers so that
 * its writes come up short too. */
static void test_fallback(enum kind k, int (*deny)(int), int arg)
{
	const size_t n = MIB;
	struct worker_stats st = {.end = WORKER_ERROR};
	int fds[2], res[2], small = 4096;
	pid_t pid;

	make_pair(k, fds, small);
	if (setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) < 0)
		fail("SO_SNDBUF");
	if (pipe2(res, O_CLOEXEC) < 0)
		fail("pipe");
	pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		close(fds[1]);
		close(res[0]);
		if (deny(arg) < 0)
			_exit(3);
		worker_echo(fds[0], 0, 0, &st);
		_exit(write(res[1], &st, sizeof(st)) == sizeof(st) ? 0 : 4);
	}
	close(fds[0]);
	close(res[1]);
	CHECK_INT(peer_exchange(fds[1], n, MIB, 1500, 20), 0);
	CHECK(peer_poll(res[0], POLLIN, WAIT_MS));
	CHECK_INT(read(res[0], &st, sizeof(st)), sizeof(st));
	CHECK_INT(child_wait(pid), 0);
	CHECK_INT(st.end, WORKER_EOF);
	CHECK_INT(st.bytes_in, n);
	CHECK_INT(st.bytes_out, n);
	close(fds[1]);
	close(res[0]);
}

/* worker_run in a child set up as the master leaves it: the master's
 * signals blocked, SIGPIPE ignored, worker_signals_init done. Its stderr goes
 * to *log_fd. */
static const int master_sigs[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1};

static pid_t run_child(const struct worker_conn *c, int peer, int *log_fd)
{
	int lp[2];
	pid_t pid;

	if (pipe2(lp, O_CLOEXEC) < 0)
		fail("pipe");
	pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		sigset_t master;

		/* as master_block_signals leaves things */
		sigemptyset(&master);
		for (size_t i = 0; i < sizeof(master_sigs) / sizeof(master_sigs[0]); i++)
			sigaddset(&master, master_sigs[i]);
		sigprocmask(SIG_SETMASK, &master, NULL);
		/* and at their default, whatever the test was started with
		 * (nohup ignores SIGHUP) */
		for (size_t i = 0; i < sizeof(master_sigs) / sizeof(master_sigs[0]); i++)
			signal(master_sigs[i], SIG_DFL);
		signal(SIGPIPE, SIG_IGN);
		signal(SIGUSR2, SIG_DFL); /* this test's own handler; the master has none */
		if (worker_signals_init(&master) < 0)
			_exit(5);
		close(peer);
		dup2(lp[1], STDERR_FILENO);
		log_setup(LOG_TARGET_STDERR, LOG_INFO);
		worker_run(c);
	}
	close(lp[1]);
	*log_fd = lp[0];
	return pid;
}

static char *read_log(int fd)
{
	static char buf[4096];
	size_t used = 0;
	ssize_t r;

	while (used < sizeof(buf) - 1 && (r = read(fd, buf + used, sizeof(buf) - 1 - used)) > 0)
		used += (size_t)r;
	buf[used] = '\0';
	close(fd);
	return buf;
}

static unsigned long long proc_status_mask(pid_t pid, const char *key)
{
	char path[64], line[256];
	unsigned long long v = ~0ull;
	size_t klen = strlen(key);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	f = fopen(path, "r");
	if (!f)
		return v;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			v = strtoull(line + klen + 1, NULL, 16);
	fclose(f);
	/* the C library's own signals (between 31 and SIGRTMIN) are not ours */
	for (int sig = 32; sig < SIGRTMIN; sig++)
		v &= ~(1ull << (sig - 1));
	return v;
}

static int log_has(const char *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int log_has(const char *log, const char *fmt, ...)
{
	char want[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	if (strcasestr(log, want))
		return 1;
	fprintf(stderr, "log lacks \"%s\": %s\n", want, log);
	return 0;
}

/* SIGTERM ends a live connection cleanly; one entry tells how it went. */
static void test_run_sigterm(void)
{
	struct sockaddr_in local;
	socklen_t len = sizeof(local);
	struct worker_conn c = {
	    .log_connections = true, .report_fd = -1, .start_usec = clock_usec()};
	int fds[2], log_fd;
	unsigned rport;
	pid_t pid;
	char *log;

	make_pair(KIND_TCP, fds, 0);
	c.fd = fds[0];
	c.peer.len = sizeof(c.peer.ss);
	if (getpeername(fds[0], (struct sockaddr *)&c.peer.ss, &c.peer.len) < 0 ||
	    getsockname(fds[0], (struct sockaddr *)&local, &len) < 0)
		fail("getpeername");
	c.local_port = ntohs(local.sin_port);
	rport = ntohs(((struct sockaddr_in *)&c.peer.ss)->sin_port);
	pid = run_child(&c, fds[1], &log_fd);
	close(fds[0]);
	CHECK_INT(peer_send(fds[1], 0, 5), 0);
	CHECK_INT(peer_recv(fds[1], 0, 5), 0);
	/* Only SIGTERM is caught and SIGPIPE ignored; the master's other
	 * signals, sent to the whole group by Ctrl-C or a unit-wide kill, stay
	 * blocked and pending and cut nothing. */
	CHECK_INT(proc_status_mask(pid, "SigCgt"), 1ull << (SIGTERM - 1));
	CHECK_INT(proc_status_mask(pid, "SigIgn"), 1ull << (SIGPIPE - 1));
	kill(pid, SIGHUP);
	kill(pid, SIGINT);
	kill(pid, SIGUSR1);
	kill(pid, SIGQUIT);
	CHECK_INT(peer_send(fds[1], 5, 5), 0);
	CHECK_INT(peer_recv(fds[1], 5, 5), 0);
	CHECK_INT(proc_status_mask(pid, "ShdPnd") | proc_status_mask(pid, "SigPnd"),
		  (1ull << (SIGHUP - 1)) | (1ull << (SIGINT - 1)) | (1ull << (SIGUSR1 - 1)) |
		      (1ull << (SIGQUIT - 1)));
	kill(pid, SIGTERM);
	CHECK_INT(peer_recv_to_eof(fds[1], 10), 0);
	CHECK_INT(child_wait(pid), 0);
	log = read_log(log_fd);
	CHECK(log_has(log, "connection from 127.0.0.1:%u closed (drained): 10 bytes in, 10 out",
		      rport));
	CHECK(log_has(log, "remote_addr=127.0.0.1 remote_port=%u local_port=%u", rport,
		      c.local_port));
	CHECK(log_has(log, "bytes_in=10 bytes_out=10 duration_usec="));
	CHECK(log_has(log, "close_reason=drained worker_pid=%ld", (long)pid));
	CHECK(*log && strchr(log, '\n') == log + strlen(log) - 1); /* one entry */
	close(fds[1]);
}

/* Idle: the child closes, so the client sees EOF. */
static void test_run_idle(void)
{
	struct worker_conn c = {.idle_usec = 200000, .log_connections = true, .report_fd = -1};
	int fds[2], log_fd;
	pid_t pid;

	make_pair(KIND_UNIX, fds, 0);
	c.fd = fds[0];
	pid = run_child(&c, fds[1], &log_fd);
	close(fds[0]);
	CHECK_INT(peer_send(fds[1], 0, 3), 0);
	CHECK_INT(peer_recv(fds[1], 0, 3), 0);
	CHECK_INT(peer_recv_to_eof(fds[1], 3), 0);
	CHECK_INT(child_wait(pid), 0);
	CHECK(log_has(read_log(log_fd), "closed (idle): 3 bytes in, 3 out"));
	close(fds[1]);
}

enum report_pipe { PIPE_ROOM, PIPE_FULL, PIPE_FREED };

/* The report of the worker in pid, from the pipe's remaining reports. */
static int find_report(int fd, pid_t pid, struct worker_report *out)
{
	struct worker_report r;

	while (read(fd, &r, sizeof(r)) == (ssize_t)sizeof(r))
		if (r.pid == pid) {
			*out = r;
			return 1;
		}
	return 0;
}

/* With a report pipe the worker hands its entry to the master instead of
 * writing it; with the pipe full it waits a while for room (the master
 * catching up), and then writes the entry itself. */
static void test_run_report(enum report_pipe mode)
{
	/* whole reports, over two pages: at least one pipe slot comes free */
	struct worker_report junk[8192 / sizeof(struct worker_report) + 1];
	struct worker_conn c = {.log_connections = true, .local_port = 7};
	struct worker_report r = {0};
	int fds[2], rp[2], log_fd;
	pid_t pid;

	if (pipe2(rp, O_CLOEXEC | O_NONBLOCK) < 0)
		fail("pipe");
	while (mode != PIPE_ROOM && write(rp[1], &r, sizeof(r)) == (ssize_t)sizeof(r))
		;
	make_pair(KIND_UNIX, fds, 0);
	c.fd = fds[0];
	c.report_fd = rp[1];
	pid = run_child(&c, fds[1], &log_fd);
	close(fds[0]);
	close(rp[1]);
	CHECK_INT(peer_send(fds[1], 0, 5), 0);
	CHECK_INT(shutdown(fds[1], SHUT_WR), 0);
	CHECK_INT(peer_recv_to_eof(fds[1], 0), 5);
	if (mode == PIPE_FREED) {
		usleep(200000); /* the worker is waiting by now */
		CHECK(read(rp[0], junk, sizeof(junk)) > 0);
	}
	CHECK_INT(child_wait(pid), 0);
	if (mode == PIPE_FULL) {
		CHECK(log_has(read_log(log_fd), "closed (eof): 5 bytes in, 5 out"));
	} else {
		CHECK_STR(read_log(log_fd), "");
		CHECK(find_report(rp[0], pid, &r));
		CHECK_INT(r.local_port, 7);
		CHECK_INT(r.st.end, WORKER_EOF);
		CHECK_INT(r.st.bytes_in, 5);
		CHECK_INT(r.st.bytes_out, 5);
	}
	close(rp[0]);
	close(fds[1]);
}

/* A link-local peer (fe80::7%lo here): the worker names its interface
 * before the sandbox, which forbids the ioctl that asks, and then writes
 * its entry itself (no report pipe) or hands the name to the master. */
static void test_run_link_local(int with_pipe)
{
	struct sockaddr_storage ss = test_peer("fe80::7", 4242);
	struct worker_conn c = {.log_connections = true, .report_fd = -1};
	struct worker_report r = {0};
	int fds[2], rp[2] = {-1, -1}, log_fd;
	pid_t pid;

	((struct sockaddr_in6 *)&ss)->sin6_scope_id = if_nametoindex("lo");
	memcpy(&c.peer.ss, &ss, sizeof(ss));
	c.peer.len = sizeof(struct sockaddr_in6);
	if (with_pipe && pipe2(rp, O_CLOEXEC | O_NONBLOCK) < 0)
		fail("pipe");
	c.report_fd = rp[1];
	make_pair(KIND_UNIX, fds, 0);
	c.fd = fds[0];
	pid = run_child(&c, fds[1], &log_fd);
	close(fds[0]);
	if (with_pipe)
		close(rp[1]);
	CHECK_INT(peer_send(fds[1], 0, 6), 0);
	CHECK_INT(shutdown(fds[1], SHUT_WR), 0);
	CHECK_INT(peer_recv_to_eof(fds[1], 0), 6);
	CHECK_INT(child_wait(pid), 0);
	if (with_pipe) {
		CHECK_STR(read_log(log_fd), "");
		CHECK(find_report(rp[0], pid, &r));
		CHECK_STR(r.ifname, "lo");
		close(rp[0]);
	} else {
		char *log = read_log(log_fd);
		CHECK(log_has(log, "connection from [fe80::7%%lo]:4242 closed (eof): 6 bytes in"));
		CHECK(log_has(log, "remote_addr=fe80::7%%lo remote_port=4242"));
	}
	close(fds[1]);
}

/* With connections = no a normal end logs nothing, but still reports: the
 * master's byte totals are the sum of the reports. */
static void test_run_quiet(void)
{
	struct worker_conn c = {.report_fd = -1};
	struct worker_report r = {0};
	int fds[2], rp[2], log_fd;
	pid_t pid;

	if (pipe2(rp, O_CLOEXEC | O_NONBLOCK) < 0)
		fail("pipe");
	make_pair(KIND_UNIX, fds, 0);
	c.fd = fds[0];
	c.report_fd = rp[1];
	pid = run_child(&c, fds[1], &log_fd);
	close(fds[0]);
	close(rp[1]);
	CHECK_INT(peer_send(fds[1], 0, 7), 0);
	CHECK_INT(shutdown(fds[1], SHUT_WR), 0);
	CHECK_INT(peer_recv_to_eof(fds[1], 0), 7);
	CHECK_INT(child_wait(pid), 0);
	CHECK_STR(read_log(log_fd), "");
	CHECK_INT(read(rp[0], &r, sizeof(r)), sizeof(r));
	CHECK_INT(r.pid, pid);
	CHECK_INT(r.st.bytes_in, 7);
	CHECK_INT(r.st.bytes_out, 7);
	close(rp[0]);
	close(fds[1]);
}

/* A local failure is a warning, even with connections = no. */
static void test_run_error(void)
{
	struct worker_conn c = {.fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 500), .report_fd = -1};
	int fds[2], log_fd;
	pid_t pid;
	char *log;

	/* far above what the descriptors made below will take */
	if (c.fd < 0 || close(c.fd) < 0)
		fail("F_DUPFD");
	make_pair(KIND_UNIX, fds, 0);
	pid = run_child(&c, fds[1], &log_fd);
	CHECK_INT(child_wait(pid), 0);
	log = read_log(log_fd);
	CHECK(log_has(log, "closed (error: %s)", strerror(EBADF)));
	CHECK(log_has(log, "warning"));
	CHECK(log_has(log, "errno=%d", EBADF));
	close_pair(fds);
}

static void test_end_names(void)
{
	CHECK_STR(worker_end_name(WORKER_EOF), "eof");
	CHECK_STR(worker_end_name(WORKER_IDLE), "idle");
	CHECK_STR(worker_end_name(WORKER_RESET), "reset");
	CHECK_STR(worker_end_name(WORKER_DRAINED), "drained");
	CHECK_STR(worker_end_name(WORKER_ERROR), "error");
	CHECK_STR(worker_end_name(WORKER_LIFETIME), "lifetime");
}

int main(void)
{
	struct sigaction sa = {.sa_handler = on_stop_signal}; /* no SA_RESTART, as worker_run */

	alarm(55);
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGUSR2, &sa, NULL);
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		fail("getrandom");
	fprintf(stderr, "stream seed %016llx\n", (unsigned long long)seed);

	for (enum kind k = KIND_UNIX; k <= KIND_TCP; k++) {
		fprintf(stderr, "over %s\n", kind_name[k]);
		test_one_byte(k);
		test_to_splice(k);
		test_bulk(k, 8 * MIB, 0);
		test_bulk(k, MIB, 1);
		test_half_close(k);
		test_idle(k);
		test_never_reads(k);
		test_reset(k);
		test_drain(k, 1);
		test_lifetime(k);
		test_fallback(k, deny_pipe, 0);
		test_fallback(k, deny_splice, k == KIND_TCP ? EINVAL : ENOSYS);
	}
	test_idle_huge();
	test_drain(KIND_TCP, 0);
	test_no_spin();
	for (int inl = 1; inl >= 0; inl--) {
		test_urgent(100, 100, inl);		/* the small-message path */
		test_urgent(8 * 1024, 0, inl);		/* splice; the mark right before the FIN */
		test_urgent(64 * 1024, 64 * 1024, inl); /* splice, mid-stream */
		test_urgent(5000, 3, inl);
	}
	test_busy_stop();
	test_lifetime_busy();
	test_run_sigterm();
	test_run_idle();
	test_run_link_local(0);
	test_run_link_local(1);
	test_run_quiet();
	test_run_report(PIPE_ROOM);
	test_run_report(PIPE_FULL);
	test_run_report(PIPE_FREED);
	test_run_error();
	test_end_names();
	return check_done();
}
