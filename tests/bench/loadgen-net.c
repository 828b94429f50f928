/* What every mode of loadgen shares: latency samples, and non-blocking
 * connections on one edge-triggered epoll set whose bytes are checked
 * against the pattern. */
#include "loadgen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* Diagnostics beyond this many per run would only repeat themselves. */
#define LG_REPORTS_MAX 5

static int lg_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

uint64_t lg_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * LG_NSEC + (uint64_t)ts.tv_nsec;
}

int lg_samples_init(struct lg_samples *s, size_t cap)
{
	s->v = malloc(cap * sizeof(*s->v));
	if (!s->v)
		return -ENOMEM;
	s->cap = cap;
	s->len = 0;
	s->seen = 0;
	s->rng = 0x2545f4914f6cdd1dull;
	return 0;
}

/* Algorithm R: once the array is full, each new sample replaces a random one
 * with probability cap/seen, so the kept ones stay a uniform sample of the
 * whole run rather than of its beginning. */
void lg_samples_add(struct lg_samples *s, uint64_t v)
{
	s->seen++;
	if (s->len < s->cap) {
		s->v[s->len++] = v;
		return;
	}
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	uint64_t j = s->rng % s->seen;
	if (j < s->cap)
		s->v[j] = v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void lg_samples_sort(struct lg_samples *s)
{
	if (s->len)
		qsort(s->v, s->len, sizeof(*s->v), cmp_u64);
}

/* Nearest rank of the sorted samples: the smallest value with at least q per
 * mille of the samples at or below it; 1000 gives the maximum. */
uint64_t lg_samples_permille(const struct lg_samples *s, unsigned q)
{
	if (!s->len)
		return 0;
	size_t rank = (size_t)(((uint64_t)q * s->len + 999) / 1000);
	return s->v[rank ? rank - 1 : 0];
}

void lg_samples_free(struct lg_samples *s)
{
	free(s->v);
	s->v = NULL;
	s->cap = s->len = 0;
}

int lg_run_init(struct lg_run *r, const struct lg_opts *o, struct lg_result *res)
{
	memset(r, 0, sizeof(*r));
	r->o = o;
	r->res = res;
	r->n = o->clients;
	r->seed = lg_mix(lg_now(), (uint64_t)getpid());
	lg_pattern_init(r->seed);
	/* A message is sent in pieces of at most this; a stream in blocks. */
	r->sbuf_cap = o->size < 256 * 1024 ? o->size : 256 * 1024;
	if (o->mode == LG_MODE_STREAM)
		r->sbuf_cap = o->block;
	r->rbuf_cap = r->sbuf_cap > 256 * 1024 ? r->sbuf_cap : 256 * 1024;
	r->ep = epoll_create1(EPOLL_CLOEXEC);
	if (r->ep < 0)
		return lg_errno();
	r->c = calloc(r->n, sizeof(*r->c));
	r->sbuf = malloc(r->sbuf_cap);
	r->rbuf = malloc(r->rbuf_cap);
	if (!r->c || !r->sbuf || !r->rbuf)
		return -ENOMEM;
	for (size_t i = 0; i < r->n; i++)
		r->c[i].fd = -1;
	return 0;
}

void lg_run_free(struct lg_run *r)
{
	for (size_t i = 0; r->c && i < r->n; i++)
		if (r->c[i].fd >= 0)
			close(r->c[i].fd);
	if (r->ep >= 0)
		close(r->ep);
	free(r->c);
	free(r->sbuf);
	free(r->rbuf);
}

/* Starts a connection for slot i, registered once for every event it will
 * ever need: edge-triggered, so no epoll_ctl is spent on it again. */
int lg_conn_open(struct lg_run *r, size_t i)
{
	const struct lg_opts *o = r->o;
	struct lg_conn *c = &r->c[i];
	struct epoll_event ev;
	int err;

	int fd = socket(o->dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lg_errno();
	if (o->n_src) {
		/* The port is left to connect(), which may share one with
		 * another destination or reuse it from TIME_WAIT; bind() alone
		 * would reserve it for good and run out at high rates. */
		int one = 1;
		const struct sockaddr_storage *src = &o->src[r->next_src++ % o->n_src];

		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
		    bind(fd, (const struct sockaddr *)src, o->src_len) < 0)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&o->dst, o->dst_len) < 0 && errno != EINPROGRESS)
		goto fail;
	c->gen++;
	ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
	ev.data.u64 = (uint64_t)i << 32 | c->gen;
	if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		goto fail;
	c->fd = fd;
	c->state = LG_ST_CONNECTING;
	c->deadline = lg_now() + o->timeout_ns;
	return 0;
fail:
	err = lg_errno();
	close(fd);
	return err;
}

void lg_conn_close(struct lg_run *r, size_t i, enum lg_state next)
{
	struct lg_conn *c = &r->c[i];

	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = next;
	c->deadline = 0;
}

int lg_conn_connected(const struct lg_conn *c)
{
	int so_error = 0;
	socklen_t len = sizeof(so_error);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0)
		return lg_errno();
	return -so_error;
}

/* Sends the pattern up to offset limit or until the socket is full. A short
 * write regenerates from where it stopped: cheaper than a buffer per
 * connection. */
int lg_conn_send(struct lg_run *r, size_t i, uint64_t limit)
{
	struct lg_conn *c = &r->c[i];

	while (c->sent < limit) {
		size_t len =
		    limit - c->sent < r->sbuf_cap ? (size_t)(limit - c->sent) : r->sbuf_cap;

		lg_pattern_fill(c->key, c->sent, r->sbuf, len);
		ssize_t k = send(c->fd, r->sbuf, len, MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return lg_errno();
		}
		c->sent += (uint64_t)k;
	}
	return 0;
}

static void report_mismatch(struct lg_run *r, size_t i, uint64_t off, size_t extra)
{
	const struct lg_conn *c = &r->c[i];

	if (r->reports++ >= LG_REPORTS_MAX)
		return;
	if (extra)
		fprintf(stderr, "loadgen: connection %zu: %zu bytes back beyond the %llu sent\n", i,
			extra, (unsigned long long)c->sent);
	else
		fprintf(stderr, "loadgen: connection %zu: byte %llu is 0x%02x, sent 0x%02x\n", i,
			(unsigned long long)off, r->rbuf[off - c->recvd],
			lg_pattern_byte(c->key, off));
}

/* Reads and verifies until the socket is empty or offset stop is reached.
 * Returns 0, 1 at end of stream, -EBADMSG when a byte differs from what was
 * sent or more came back than was sent, or -errno. */
int lg_conn_recv(struct lg_run *r, size_t i, uint64_t stop)
{
	struct lg_conn *c = &r->c[i];

	while (c->recvd < stop) {
		ssize_t k = recv(c->fd, r->rbuf, r->rbuf_cap, 0);
		if (k == 0)
			return 1;
		if (k < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return lg_errno();
		}
		uint64_t owed = c->sent - c->recvd;
		size_t len = (uint64_t)k < owed ? (size_t)k : (size_t)owed;
		size_t good = lg_pattern_check(c->key, c->recvd, r->rbuf, len);

		if (good < len || len < (size_t)k) {
			report_mismatch(r, i, c->recvd + good, good < len ? 0 : (size_t)k - len);
			c->recvd += good;
			r->res->bytes += good;
			return -EBADMSG;
		}
		c->recvd += len;
		r->res->bytes += len;
	}
	return 0;
}

void lg_count_error(struct lg_run *r, int err)
{
	switch (err) {
	case -ECONNREFUSED:
		r->res->errors[LG_ERR_REFUSED]++;
		return;
	case -ECONNRESET:
	case -EPIPE:
		r->res->errors[LG_ERR_RESET]++;
		return;
	case -ENODATA:
		r->res->errors[LG_ERR_EOF]++;
		return;
	case -ETIMEDOUT:
		r->res->errors[LG_ERR_TIMEOUT]++;
		return;
	case -EBADMSG:
		r->res->errors[LG_ERR_MISMATCH]++;
		return;
	default:
		/* Say what it was: these mean a limit of this machine (ports,
		 * descriptors, memory), not the server's answer. */
		r->res->errors[LG_ERR_OTHER]++;
		if (r->reports++ < LG_REPORTS_MAX)
			fprintf(stderr, "loadgen: %s\n", strerror(-err));
	}
}

/* Waits for events until `until` at the latest and at most max_ms; returns
 * their count (0 on a signal) or -errno. */
int lg_wait(struct lg_run *r, uint64_t until, int max_ms)
{
	uint64_t now = lg_now();
	uint64_t ms = until > now ? (until - now + 999999) / 1000000 : 0;

	if (ms > (uint64_t)max_ms)
		ms = (uint64_t)max_ms;
	int n = epoll_wait(r->ep, r->ev, LG_EVENTS, (int)ms);
	if (n < 0)
		return errno == EINTR ? 0 : lg_errno();
	return n;
}

/* The slot of event k, or SIZE_MAX when the event belongs to a socket that an
 * earlier event of the same batch closed (its slot may hold a new one). */
size_t lg_event_slot(const struct lg_run *r, int k, uint32_t *events)
{
	uint64_t data = r->ev[k].data.u64;
	size_t i = (size_t)(data >> 32);

	if (i >= r->n || r->c[i].gen != (uint32_t)data || r->c[i].fd < 0)
		return SIZE_MAX;
	*events = r->ev[k].events;
	return i;
}

bool lg_timed_out(const struct lg_conn *c, uint64_t now)
{
	return c->fd >= 0 && c->deadline && now >= c->deadline;
}
