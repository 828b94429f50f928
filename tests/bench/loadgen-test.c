/* Checks of what loadgen's figures rest on: the byte pattern and its
 * verification, the percentiles, and the classification of errors. */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define BUF (300 * 1024)

static unsigned char a[BUF], b[BUF];

/* Any range of the stream is the same bytes however it is split: a short
 * write regenerates from where it stopped. */
static void test_pattern_ranges(void)
{
	static const uint64_t offs[] = {0, 1, 7, 8, 65535, 65536, 65537, (1 << 20) + 3};
	static const size_t lens[] = {0, 1, 7, 8, 9, 100, 70000, 200000};

	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
		for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
			uint64_t off = offs[i];
			size_t len = lens[j], cut = len / 3;

			lg_pattern_fill(42, off, a, len);
			CHECK_INT(lg_pattern_check(42, off, a, len), len);
			lg_pattern_fill(42, off, b, cut);
			lg_pattern_fill(42, off + cut, b + cut, len - cut);
			CHECK(memcmp(a, b, len) == 0);
			for (size_t k = 0; k < len; k++)
				if (a[k] != lg_pattern_byte(42, off + k)) {
					CHECK_INT(k, len);
					break;
				}
		}
}

static void test_pattern_detects(void)
{
	static const size_t at[] = {0, 5, 8, 4095, 65535, 65536, 65541, 199999};
	size_t len = 200000;

	lg_pattern_fill(7, 3, a, len);
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		memcpy(b, a, len);
		b[at[i]] ^= 0x01;
		CHECK_INT(lg_pattern_check(7, 3, b, len), at[i]);
	}
	/* Two words of one block swapped. */
	memcpy(b, a, len);
	memcpy(b + 1005, a + 2005, 8);
	memcpy(b + 2005, a + 1005, 8);
	CHECK(lg_pattern_check(7, 3, b, len) < 1013);
	/* A whole block repeated in place of the next (the table repeats,
	 * the block's word does not). */
	lg_pattern_fill(7, 0, a, 65536);
	CHECK(lg_pattern_check(7, 65536, a, 65536) < 8);
	/* Another connection's bytes. */
	CHECK(lg_pattern_check(8, 0, a, 65536) < 8);
	/* A stream shifted by one word. */
	CHECK(lg_pattern_check(7, 8, a, 65536) < 8);
}

static void test_percentiles(void)
{
	struct lg_samples s;

	CHECK_INT(lg_samples_init(&s, 1000), 0);
	CHECK_INT(lg_samples_permille(&s, 500), 0);
	for (uint64_t v = 1000; v >= 1; v--)
		lg_samples_add(&s, v);
	lg_samples_sort(&s);
	CHECK_INT(lg_samples_permille(&s, 500), 500);
	CHECK_INT(lg_samples_permille(&s, 990), 990);
	CHECK_INT(lg_samples_permille(&s, 999), 999);
	CHECK_INT(lg_samples_permille(&s, 1000), 1000);
	lg_samples_free(&s);

	CHECK_INT(lg_samples_init(&s, 10), 0);
	for (uint64_t v = 1; v <= 10; v++)
		lg_samples_add(&s, v);
	lg_samples_sort(&s);
	CHECK_INT(lg_samples_permille(&s, 500), 5);
	CHECK_INT(lg_samples_permille(&s, 990), 10);
	lg_samples_free(&s);

	/* Past its capacity the reservoir stays a sample of the whole run,
	 * not of its beginning or its end. */
	CHECK_INT(lg_samples_init(&s, 1000), 0);
	for (uint64_t v = 0; v < 1000000; v++)
		lg_samples_add(&s, v);
	CHECK_INT(s.len, 1000);
	CHECK_INT(s.seen, 1000000);
	lg_samples_sort(&s);
	CHECK(lg_samples_permille(&s, 500) > 400000 && lg_samples_permille(&s, 500) < 600000);
	CHECK(lg_samples_permille(&s, 100) < 150000);
	CHECK(lg_samples_permille(&s, 900) > 850000);
	lg_samples_free(&s);
}

/* A run with one slot whose socket is one end of a socketpair; the test
 * plays the server on the other end. */
static int run_with_pair(struct lg_run *r, struct lg_opts *o, struct lg_result *res, int sv[2])
{
	*o = (struct lg_opts){.mode = LG_MODE_RATE, .size = 64, .clients = 1};
	*res = (struct lg_result){0};
	if (lg_run_init(r, o, res) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	r->c[0].fd = sv[0];
	r->c[0].key = 99;
	return 0;
}

static void test_recv(void)
{
	struct lg_opts o;
	struct lg_result res;
	struct lg_run r;
	int sv[2];

	if (run_with_pair(&r, &o, &res, sv) < 0) {
		CHECK(!"socketpair");
		return;
	}
	struct lg_conn *c = &r.c[0];
	c->sent = 100;
	lg_pattern_fill(99, 0, a, 100);
	CHECK_INT(write(sv[1], a, 60), 60);
	CHECK_INT(lg_conn_recv(&r, 0, 100), 0);
	CHECK_INT(c->recvd, 60);
	a[70] ^= 0x80;
	CHECK_INT(write(sv[1], a + 60, 40), 40);
	CHECK_INT(lg_conn_recv(&r, 0, 100), -EBADMSG);
	CHECK_INT(c->recvd, 70);
	CHECK_INT(res.bytes, 70);

	/* More back than was sent. */
	c->sent = c->recvd = 0;
	lg_pattern_fill(99, 0, a, 11);
	CHECK_INT(write(sv[1], a, 11), 11);
	c->sent = 10;
	CHECK_INT(lg_conn_recv(&r, 0, 10), -EBADMSG);
	CHECK_INT(c->recvd, 10);

	/* The end of the stream. */
	c->sent = 20;
	lg_pattern_fill(99, 10, a, 10);
	CHECK_INT(write(sv[1], a, 10), 10);
	shutdown(sv[1], SHUT_WR);
	CHECK_INT(lg_conn_recv(&r, 0, UINT64_MAX), 1);
	CHECK_INT(c->recvd, 20);
	close(sv[1]);
	lg_run_free(&r);
}

static void test_send(void)
{
	struct lg_opts o;
	struct lg_result res;
	struct lg_run r;
	int sv[2], small = 4096;

	if (run_with_pair(&r, &o, &res, sv) < 0) {
		CHECK(!"socketpair");
		return;
	}
	struct lg_conn *c = &r.c[0];
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	/* A full socket ends the call, not the process: the rest waits. */
	CHECK_INT(lg_conn_send(&r, 0, 10 << 20), 0);
	CHECK(c->sent > 0 && c->sent < (10 << 20));
	size_t got = 0;
	ssize_t k;
	while (got < c->sent && (k = read(sv[1], a + got, BUF - got)) > 0)
		got += (size_t)k;
	CHECK_INT(got, c->sent);
	CHECK_INT(lg_pattern_check(99, 0, a, got), got);
	close(sv[1]);
	CHECK_INT(lg_conn_send(&r, 0, c->sent + 100), -EPIPE);
	lg_run_free(&r);
}

static void test_errors_and_events(void)
{
	static const int errs[] = {-ECONNREFUSED, -ECONNRESET, -EPIPE,	      -ENODATA,
				   -ETIMEDOUT,	  -EBADMSG,    -EADDRNOTAVAIL};
	static const int kinds[] = {LG_ERR_REFUSED, LG_ERR_RESET,    LG_ERR_RESET, LG_ERR_EOF,
				    LG_ERR_TIMEOUT, LG_ERR_MISMATCH, LG_ERR_OTHER};
	struct lg_opts o;
	struct lg_result res;
	struct lg_run r;
	int sv[2];
	uint32_t ev;

	if (run_with_pair(&r, &o, &res, sv) < 0) {
		CHECK(!"socketpair");
		return;
	}
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		uint64_t before = res.errors[kinds[i]];

		lg_count_error(&r, errs[i]);
		CHECK_INT(res.errors[kinds[i]], before + 1);
	}
	/* An event of a socket closed earlier in the same batch is dropped. */
	r.c[0].gen = 5;
	r.ev[0].data.u64 = 5;
	r.ev[0].events = EPOLLIN;
	CHECK_INT(lg_event_slot(&r, 0, &ev), 0);
	r.c[0].gen = 6;
	CHECK(lg_event_slot(&r, 0, &ev) == SIZE_MAX);
	r.ev[0].data.u64 = 6;
	lg_conn_close(&r, 0, LG_ST_IDLE);
	CHECK(lg_event_slot(&r, 0, &ev) == SIZE_MAX);
	close(sv[1]);
	lg_run_free(&r);
}

int main(void)
{
	lg_pattern_init(12345);
	test_pattern_ranges();
	test_pattern_detects();
	test_percentiles();
	test_recv();
	test_send();
	test_errors_and_events();
	return check_done();
}
