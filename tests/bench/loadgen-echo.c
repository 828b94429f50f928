/* Request/response modes: `rate` (a new connection per message: connect,
 * send, receive, close) and `latency` (round trips on live connections, then
 * whole cycles). Each slot runs one request at a time; all slots share the
 * epoll loop. */
#include "loadgen.h"

#include <errno.h>
#include <sys/epoll.h>

/* Timeouts need no finer resolution than this. */
#define SCAN_NS (20 * 1000000ull)

struct phase {
	struct lg_run *r;
	bool reuse; /* requests on a live connection rather than one per connection */
	struct lg_samples *samples;
	uint64_t end, hard; /* no request starts after end; none runs past hard */
	uint64_t started, completed;
	size_t active; /* slots not done */
	size_t retry;  /* slots whose socket failed at once, to try again */
	uint64_t last; /* when the last request finished */
};

static bool may_start(const struct phase *p, uint64_t now)
{
	uint64_t count = p->r->o->count;

	return now < p->end && (!count || p->started < count);
}

static void slot_done(struct phase *p, size_t i)
{
	lg_conn_close(p->r, i, LG_ST_DONE);
	p->active--;
}

/* A new connection: in rate mode it is the cycle being timed; in round-trip
 * mode it carries requests, the first of which only warms up the worker
 * behind it (a forking server starts one per connection). */
static void slot_connect(struct phase *p, size_t i, uint64_t now)
{
	struct lg_run *r = p->r;
	struct lg_conn *c = &r->c[i];

	if (!may_start(p, now)) {
		slot_done(p, i);
		return;
	}
	if (!p->reuse)
		p->started++;
	c->key = lg_key(r, i, c->cycle++);
	c->sent = c->recvd = c->want = 0;
	c->warm = p->reuse;
	c->t0 = now;
	int err = lg_conn_open(r, i);
	if (err < 0) {
		lg_count_error(r, err);
		c->state = LG_ST_RETRY;
		p->retry++;
	}
}

static void slot_fail(struct phase *p, size_t i, int err, uint64_t now)
{
	lg_count_error(p->r, err);
	lg_conn_close(p->r, i, LG_ST_IDLE);
	slot_connect(p, i, now);
}

/* Starts the next request on a connected slot; false when the phase has
 * ended for it. */
static bool slot_request(struct phase *p, size_t i, uint64_t now)
{
	struct lg_conn *c = &p->r->c[i];

	if (p->reuse && !c->warm) {
		if (!may_start(p, now)) {
			slot_done(p, i);
			return false;
		}
		p->started++;
		c->t0 = now;
	}
	c->want = c->sent + p->r->o->size;
	c->deadline = now + p->r->o->timeout_ns;
	c->state = LG_ST_BUSY;
	return true;
}

/* Moves a busy slot along as far as its socket allows; a finished request is
 * timed and followed by the next one. */
static void slot_io(struct phase *p, size_t i)
{
	struct lg_run *r = p->r;
	struct lg_conn *c = &r->c[i];

	for (;;) {
		int err = lg_conn_send(r, i, c->want);
		if (!err)
			err = lg_conn_recv(r, i, c->want);
		if (err == 1)
			err = -ENODATA;
		if (err < 0) {
			slot_fail(p, i, err, lg_now());
			return;
		}
		if (c->recvd < c->want)
			return;
		if (!p->reuse)
			lg_conn_close(r, i, LG_ST_IDLE);
		uint64_t now = lg_now();
		if (!c->warm) {
			lg_samples_add(p->samples, now - c->t0);
			p->completed++;
			p->last = now;
		}
		c->warm = false;
		if (!p->reuse) {
			slot_connect(p, i, now);
			return;
		}
		if (!slot_request(p, i, now))
			return;
	}
}

static void on_event(struct phase *p, size_t i, uint32_t events)
{
	struct lg_conn *c = &p->r->c[i];

	if (c->state == LG_ST_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		uint64_t now = lg_now();
		int err = lg_conn_connected(c);
		if (err < 0) {
			slot_fail(p, i, err, now);
			return;
		}
		if (!slot_request(p, i, now))
			return;
	}
	if (c->state == LG_ST_BUSY)
		slot_io(p, i);
}

static void housekeep(struct phase *p, uint64_t now)
{
	struct lg_run *r = p->r;

	for (size_t i = 0; i < r->n; i++) {
		if (r->c[i].state == LG_ST_RETRY) {
			r->c[i].state = LG_ST_IDLE;
			p->retry--;
			slot_connect(p, i, now);
		} else if (lg_timed_out(&r->c[i], now)) {
			slot_fail(p, i, -ETIMEDOUT, now);
		}
	}
}

/* Runs every slot for `duration` (or until --count requests have started),
 * then lets what is in flight finish within the grace period. Returns the
 * time from the start to the last finished request, or -errno. */
static int64_t phase_run(struct lg_run *r, bool reuse, struct lg_samples *s, uint64_t duration)
{
	struct phase p = {.r = r, .reuse = reuse, .samples = s};
	uint64_t start = lg_now(), next_scan = start + SCAN_NS;

	p.end = start + duration;
	p.hard = p.end + r->grace < r->deadline ? p.end + r->grace : r->deadline;
	p.active = r->n;
	p.last = start;
	for (size_t i = 0; i < r->n; i++) {
		r->c[i].state = LG_ST_IDLE;
		slot_connect(&p, i, start);
	}
	while (p.active && lg_now() < p.hard) {
		/* A slot waiting to retry is worth a short pause, not a spin. */
		int n = lg_wait(r, p.hard, p.retry ? 1 : 20);
		if (n < 0)
			return n;
		for (int k = 0; k < n; k++) {
			uint32_t events;
			size_t i = lg_event_slot(r, k, &events);

			if (i != SIZE_MAX)
				on_event(&p, i, events);
		}
		uint64_t now = lg_now();
		if (p.retry || now >= next_scan) {
			housekeep(&p, now);
			next_scan = now + SCAN_NS;
		}
	}
	if (p.active || (r->o->count && p.started < r->o->count))
		r->res->unfinished = true;
	for (size_t i = 0; i < r->n; i++)
		lg_conn_close(r, i, LG_ST_DONE);
	r->res->completed += p.completed;
	return (int64_t)(p.last - start);
}

int lg_mode_rate(struct lg_run *r)
{
	int err = lg_samples_init(&r->res->cycle, LG_SAMPLES_CAP);
	if (err < 0)
		return err;
	int64_t t = phase_run(r, false, &r->res->cycle, r->o->duration_ns);
	if (t < 0)
		return (int)t;
	r->res->cycle_ns = r->res->elapsed_ns = (uint64_t)t;
	return 0;
}

/* The duration is shared by the two phases; --count applies to each. */
int lg_mode_latency(struct lg_run *r)
{
	int err = lg_samples_init(&r->res->rtt, LG_SAMPLES_CAP);
	if (err < 0)
		return err;
	err = lg_samples_init(&r->res->cycle, LG_SAMPLES_CAP);
	if (err < 0)
		return err;
	int64_t t = phase_run(r, true, &r->res->rtt, r->o->duration_ns / 2);
	if (t < 0)
		return (int)t;
	r->res->rtt_ns = (uint64_t)t;
	t = phase_run(r, false, &r->res->cycle, r->o->duration_ns - r->o->duration_ns / 2);
	if (t < 0)
		return (int)t;
	r->res->cycle_ns = (uint64_t)t;
	r->res->elapsed_ns = r->res->rtt_ns + r->res->cycle_ns;
	return 0;
}
