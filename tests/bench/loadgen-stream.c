/* `stream`: long-lived connections that write the pattern as fast as the
 * server takes it and read the echo at the same time. After the duration
 * they stop writing and collect what is still owed, so every byte sent is
 * verified and the figure is bytes echoed over the time it took. */
#include "loadgen.h"

#include <errno.h>
#include <sys/epoll.h>

struct stream {
	struct lg_run *r;
	size_t active;
	uint64_t last; /* when the last stream finished */
};

static void stream_end(struct stream *s, size_t i, int err)
{
	if (err < 0)
		lg_count_error(s->r, err);
	else
		s->r->res->completed++;
	lg_conn_close(s->r, i, LG_ST_DONE);
	s->active--;
	s->last = lg_now();
}

static void stream_pump(struct stream *s, size_t i)
{
	struct lg_run *r = s->r;
	struct lg_conn *c = &r->c[i];
	uint64_t before = c->recvd;
	int err = 0;

	if (c->state == LG_ST_BUSY)
		err = lg_conn_send(r, i, UINT64_MAX);
	if (!err)
		err = lg_conn_recv(r, i, UINT64_MAX);
	if (err == 1)
		err = -ENODATA;
	if (err < 0) {
		stream_end(s, i, err);
		return;
	}
	if (c->recvd != before)
		c->deadline = lg_now() + r->o->timeout_ns;
	if (c->state == LG_ST_DRAIN && c->recvd == c->sent)
		stream_end(s, i, 0);
}

static void on_event(struct stream *s, size_t i, uint32_t events)
{
	struct lg_conn *c = &s->r->c[i];

	if (c->state == LG_ST_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int err = lg_conn_connected(c);
		if (err < 0) {
			stream_end(s, i, err);
			return;
		}
		c->state = LG_ST_BUSY;
		c->deadline = lg_now() + s->r->o->timeout_ns;
	}
	stream_pump(s, i);
}

/* The duration is over: nothing more is written, what is owed comes back. A
 * stream still connecting by now has failed to take part. */
static void stream_stop(struct stream *s)
{
	struct lg_run *r = s->r;

	for (size_t i = 0; i < r->n; i++) {
		struct lg_conn *c = &r->c[i];

		if (c->state == LG_ST_CONNECTING) {
			stream_end(s, i, -ETIMEDOUT);
		} else if (c->state == LG_ST_BUSY) {
			c->state = LG_ST_DRAIN;
			if (c->recvd == c->sent)
				stream_end(s, i, 0);
		}
	}
}

int lg_mode_stream(struct lg_run *r)
{
	struct stream s = {.r = r};
	uint64_t start = lg_now(), end = start + r->o->duration_ns;
	uint64_t hard = end + r->grace < r->deadline ? end + r->grace : r->deadline;
	bool stopped = false;

	s.last = start;
	for (size_t i = 0; i < r->n; i++) {
		r->c[i].key = lg_key(r, i, 0);
		int err = lg_conn_open(r, i);
		if (err < 0) {
			lg_count_error(r, err);
			r->c[i].state = LG_ST_DONE;
			continue;
		}
		s.active++;
	}
	while (s.active && lg_now() < hard) {
		int n = lg_wait(r, stopped ? hard : end, 20);
		if (n < 0)
			return n;
		for (int k = 0; k < n; k++) {
			uint32_t events;
			size_t i = lg_event_slot(r, k, &events);

			if (i != SIZE_MAX)
				on_event(&s, i, events);
		}
		uint64_t now = lg_now();
		if (!stopped && now >= end) {
			stopped = true;
			stream_stop(&s);
		}
		for (size_t i = 0; i < r->n; i++)
			if (lg_timed_out(&r->c[i], now))
				stream_end(&s, i, -ETIMEDOUT);
	}
	if (s.active)
		r->res->unfinished = true;
	for (size_t i = 0; i < r->n; i++)
		lg_conn_close(r, i, LG_ST_DONE);
	r->res->elapsed_ns = s.last - start;
	return 0;
}
