/* `hold`: opens N connections and keeps them, proving with a round trip on
 * each that a worker behind it echoes, and reads the server's memory from
 * /proc: the master's RSS and the private memory of its children. */
#include "loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

/* Connections being opened at once. A forking server accepts a few thousand
 * per second; more handshakes than its backlog would only wait for SYN
 * retransmits. */
#define HOLD_OPENING 256
#define SCAN_NS	     (20 * 1000000ull)

struct hold {
	struct lg_run *r;
	size_t inflight;
	uint64_t ok;
};

static void hold_fail(struct hold *h, size_t i, int err)
{
	enum lg_state st = h->r->c[i].state;

	lg_count_error(h->r, err);
	if (st == LG_ST_CONNECTING || st == LG_ST_BUSY)
		h->inflight--;
	lg_conn_close(h->r, i, LG_ST_IDLE);
}

static void hold_request(struct hold *h, size_t i)
{
	struct lg_conn *c = &h->r->c[i];

	c->want = c->sent + h->r->o->size;
	c->deadline = lg_now() + h->r->o->timeout_ns;
	c->state = LG_ST_BUSY;
}

static void hold_io(struct hold *h, size_t i)
{
	struct lg_run *r = h->r;
	struct lg_conn *c = &r->c[i];
	int err = 0;

	if (c->state == LG_ST_BUSY)
		err = lg_conn_send(r, i, c->want);
	/* An idle connection has nothing to read; whatever arrives (an end,
	 * a reset, stray bytes) is a failure that recv reports. */
	if (!err)
		err = lg_conn_recv(r, i, c->state == LG_ST_BUSY ? c->want : UINT64_MAX);
	if (err == 1)
		err = -ENODATA;
	if (err < 0) {
		hold_fail(h, i, err);
		return;
	}
	if (c->state == LG_ST_BUSY && c->recvd == c->want) {
		c->state = LG_ST_READY;
		c->deadline = 0;
		h->inflight--;
		h->ok++;
	}
}

static void on_event(struct hold *h, size_t i, uint32_t events)
{
	struct lg_conn *c = &h->r->c[i];

	if (c->state == LG_ST_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int err = lg_conn_connected(c);
		if (err < 0) {
			hold_fail(h, i, err);
			return;
		}
		hold_request(h, i);
	}
	hold_io(h, i);
}

static int dispatch(struct hold *h, uint64_t until)
{
	int n = lg_wait(h->r, until, 20);

	for (int k = 0; k < n; k++) {
		uint32_t events;
		size_t i = lg_event_slot(h->r, k, &events);

		if (i != SIZE_MAX)
			on_event(h, i, events);
	}
	return n < 0 ? n : 0;
}

/* One round trip on every connection, at most `limit` at once: on new ones
 * (open) or on those still live. Returns how many echoed, or -errno. */
static int64_t hold_round(struct hold *h, bool open, size_t limit, uint64_t until)
{
	struct lg_run *r = h->r;
	uint64_t next_scan = lg_now() + SCAN_NS;
	size_t next = 0;

	h->ok = 0;
	h->inflight = 0;
	for (;;) {
		while (h->inflight < limit && next < r->n) {
			size_t i = next++;
			struct lg_conn *c = &r->c[i];

			if (open) {
				c->key = lg_key(r, i, 0);
				int err = lg_conn_open(r, i);
				if (err < 0) {
					lg_count_error(r, err);
					continue;
				}
				h->inflight++;
			} else if (c->state == LG_ST_READY) {
				h->inflight++;
				hold_request(h, i);
				hold_io(h, i);
			}
		}
		uint64_t now = lg_now();
		if (!h->inflight && next == r->n)
			return (int64_t)h->ok;
		if (now >= until)
			break;
		int err = dispatch(h, until);
		if (err < 0)
			return err;
		now = lg_now();
		if (now < next_scan)
			continue;
		next_scan = now + SCAN_NS;
		for (size_t i = 0; i < r->n; i++)
			if (lg_timed_out(&r->c[i], now))
				hold_fail(h, i, -ETIMEDOUT);
	}
	r->res->unfinished = true;
	for (size_t i = 0; i < r->n; i++) {
		enum lg_state st = r->c[i].state;

		if (st == LG_ST_CONNECTING || st == LG_ST_BUSY)
			lg_conn_close(r, i, LG_ST_IDLE);
	}
	return (int64_t)h->ok;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

int lg_mode_hold(struct lg_run *r)
{
	const struct lg_opts *o = r->o;
	struct lg_mem *m = &r->res->mem;
	struct hold h = {.r = r};
	uint64_t start = lg_now();
	int64_t k;

	if (o->server_pid)
		m->rss_before = lg_proc_rss_kib(o->server_pid);
	k = hold_round(&h, true, HOLD_OPENING, min_u64(start + o->duration_ns, r->deadline));
	if (k < 0)
		return (int)k;
	r->res->opened = (uint64_t)k;
	uint64_t t = lg_now();
	r->res->open_ns = t - start;
	k = hold_round(&h, false, r->n, min_u64(t + r->grace, r->deadline));
	if (k < 0)
		return (int)k;
	r->res->echoed = r->res->completed = (uint64_t)k;
	r->res->check_ns = lg_now() - t;
	if (o->server_pid) {
		m->rss_open = lg_proc_rss_kib(o->server_pid);
		int err = lg_proc_workers(o->server_pid, &m->workers, &m->worker_private);
		if (err < 0)
			fprintf(stderr, "loadgen: workers of %d: %s\n", o->server_pid,
				strerror(-err));
	}
	/* Held connections are idle: only a failure makes an event. */
	uint64_t until = min_u64(lg_now() + o->hold_ns, r->deadline);
	while (lg_now() < until) {
		int err = dispatch(&h, until);
		if (err < 0)
			return err;
	}
	k = hold_round(&h, false, r->n, min_u64(lg_now() + r->grace, r->deadline));
	if (k < 0)
		return (int)k;
	r->res->echoed_after = (uint64_t)k;
	if (o->server_pid)
		m->rss_after = lg_proc_rss_kib(o->server_pid);
	for (size_t i = 0; i < r->n; i++)
		lg_conn_close(r, i, LG_ST_DONE);
	r->res->elapsed_ns = lg_now() - start;
	return 0;
}

/* The value in kB of a "Name:   123 kB" line, added to *sum. */
static void add_field(const char *line, const char *name, long long *sum)
{
	size_t len = strlen(name);
	long long v;

	if (!strncmp(line, name, len) && sscanf(line + len, "%lld", &v) == 1)
		*sum += v;
}

long long lg_proc_rss_kib(int pid)
{
	char path[64], line[256];
	long long rss = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6)) {
			rss = 0;
			add_field(line, "VmRSS:", &rss);
		}
	fclose(f);
	return rss;
}

/* Private memory of a process: what it alone keeps resident, the cost of one
 * more worker (shared pages are the master's anyway). */
static int worker_private_kib(int pid, long long *sum)
{
	char path[64], line[256];

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		add_field(line, "Private_Clean:", sum);
		add_field(line, "Private_Dirty:", sum);
	}
	fclose(f);
	return 0;
}

/* Counts the master's children and sums their private memory in KiB. Its
 * one thread's task lists them all. */
int lg_proc_workers(int pid, long long *count, long long *private_kib)
{
	char path[64];
	int child;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	*count = 0;
	*private_kib = 0;
	while (fscanf(f, "%d", &child) == 1) {
		long long sum = 0;

		/* A worker that exited meanwhile is not one of the held. */
		if (worker_private_kib(child, &sum) < 0)
			continue;
		++*count;
		*private_kib += sum;
	}
	fclose(f);
	return 0;
}
