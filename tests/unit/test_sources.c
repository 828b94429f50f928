/* Per-source accounting: grouping by prefix, live counts, the connection
 * rate rule and forgetting sources no longer seen. */
#include "sources.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/un.h>

#include "check.h"
#include "children.h"
#include "peer.h"

#define SEC 1000000ull

static int inc(struct sources *s, const char *ip)
{
	struct sockaddr_storage ss = test_peer(ip, 1234);

	return sources_inc(s, (struct sockaddr *)&ss);
}

static void dec(struct sources *s, const char *ip)
{
	struct sockaddr_storage ss = test_peer(ip, 1234);

	sources_dec(s, (struct sockaddr *)&ss);
}

static unsigned count(const struct sources *s, const char *ip)
{
	struct sockaddr_storage ss = test_peer(ip, 1234);

	return sources_count(s, (struct sockaddr *)&ss);
}

static int take(struct sources *s, const char *ip, uint64_t now, uint64_t interval, unsigned burst)
{
	struct sockaddr_storage ss = test_peer(ip, 1234);

	return sources_rate_take(s, (struct sockaddr *)&ss, now, interval, burst);
}

static void test_bad_prefixes(void)
{
	struct sources s;

	CHECK_INT(sources_init(&s, 0, 64), -EINVAL);
	CHECK_INT(sources_init(&s, 33, 64), -EINVAL);
	CHECK_INT(sources_init(&s, 24, 0), -EINVAL);
	CHECK_INT(sources_init(&s, 24, 129), -EINVAL);
	CHECK_INT(sources_init(&s, 1, 1), 0);
	sources_free(&s);
}

/* Addresses within the prefix are one source, the first address outside
 * it another; mapped IPv4 is IPv4; families never mix. */
static void test_prefixes(void)
{
	struct sources s;
	struct sockaddr_un un = {.sun_family = AF_UNIX};

	CHECK_INT(sources_init(&s, 20, 57), 0);
	CHECK_INT(inc(&s, "198.51.96.1"), 0);
	CHECK_INT(inc(&s, "198.51.111.254"), 0); /* same /20 */
	CHECK_INT(inc(&s, "::ffff:198.51.100.7"), 0);
	CHECK_INT(count(&s, "198.51.96.0"), 3);
	CHECK_INT(count(&s, "198.51.112.0"), 0); /* the next /20 */
	CHECK_INT(count(&s, "198.51.95.255"), 0);
	CHECK_INT(inc(&s, "2001:db8:0:7f::1"), 0);
	CHECK_INT(inc(&s, "2001:db8:0:0:7fff:ffff:ffff:ffff"), 0); /* same /57 */
	CHECK_INT(count(&s, "2001:db8::"), 2);
	CHECK_INT(count(&s, "2001:db8:0:80::"), 0); /* bit 57 set: next /57 */
	CHECK_INT(count(&s, "::ffff:198.51.96.0"), 3);
	CHECK_INT(count(&s, "::c633:6000"), 0); /* IPv4-compatible is IPv6 */
	CHECK_INT(s.n, 2);
	CHECK_INT(sources_inc(&s, (struct sockaddr *)&un), -EAFNOSUPPORT);
	CHECK_INT(sources_count(&s, (struct sockaddr *)&un), 0);
	dec(&s, "198.51.100.100");
	dec(&s, "198.51.100.100");
	dec(&s, "198.51.100.100");
	CHECK_INT(count(&s, "198.51.96.1"), 0);
	dec(&s, "198.51.100.100"); /* one too many changes nothing */
	CHECK_INT(s.n, 1);
	sources_free(&s);

	/* Whole addresses at the longest prefixes, everything at the shortest. */
	CHECK_INT(sources_init(&s, 32, 128), 0);
	CHECK_INT(inc(&s, "192.0.2.1"), 0);
	CHECK_INT(count(&s, "192.0.2.0"), 0);
	CHECK_INT(inc(&s, "2001:db8::1"), 0);
	CHECK_INT(count(&s, "2001:db8::"), 0);
	sources_free(&s);
	CHECK_INT(sources_init(&s, 1, 1), 0);
	CHECK_INT(inc(&s, "10.0.0.1"), 0);
	CHECK_INT(count(&s, "127.255.255.255"), 1);
	CHECK_INT(count(&s, "128.0.0.0"), 0);
	sources_free(&s);
}

/* 10 per second with bursts of 3: three at once, then one per 100 ms;
 * another source is not affected; a refusal costs nothing. */
static void test_rate(void)
{
	const uint64_t t0 = 1000 * SEC, iv = SEC / 10;
	struct sources s;

	CHECK_INT(sources_init(&s, 32, 64), 0);
	for (int i = 0; i < 3; i++)
		CHECK_INT(take(&s, "192.0.2.1", t0, iv, 3), 1);
	CHECK_INT(take(&s, "192.0.2.1", t0, iv, 3), 0);
	CHECK_INT(take(&s, "192.0.2.1", t0 + iv - 1, iv, 3), 0);
	CHECK_INT(take(&s, "192.0.2.2", t0, iv, 3), 1);
	CHECK_INT(take(&s, "192.0.2.1", t0 + iv, iv, 3), 1);
	CHECK_INT(take(&s, "192.0.2.1", t0 + iv, iv, 3), 0);
	/* refusals did not push the allowance back */
	CHECK_INT(take(&s, "192.0.2.1", t0 + 2 * iv, iv, 3), 1);
	/* a long pause refills up to the burst, not beyond */
	for (int i = 0; i < 3; i++)
		CHECK_INT(take(&s, "192.0.2.1", t0 + 100 * SEC, iv, 3), 1);
	CHECK_INT(take(&s, "192.0.2.1", t0 + 100 * SEC, iv, 3), 0);
	/* an IPv6 /64 is one source: rotating addresses does not help */
	CHECK_INT(take(&s, "2001:db8::1", t0, iv, 1), 1);
	CHECK_INT(take(&s, "2001:db8::ffff:2", t0, iv, 1), 0);
	CHECK_INT(take(&s, "2001:db8:0:1::1", t0, iv, 1), 1);
	/* burst 0 is taken as 1 */
	CHECK_INT(take(&s, "192.0.2.9", t0, iv, 0), 1);
	CHECK_INT(take(&s, "192.0.2.9", t0, iv, 0), 0);
	sources_free(&s);
}

static unsigned left(const struct sources *s, const char *ip, uint64_t now, uint64_t interval,
		     unsigned burst)
{
	struct sockaddr_storage ss = test_peer(ip, 1234);

	return sources_rate_left(s, (struct sockaddr *)&ss, now, interval, burst);
}

/* What the debug log says is left is exactly what take then admits. */
static void test_rate_left(void)
{
	const uint64_t t0 = 1000 * SEC, iv = SEC / 10;
	struct sources s;

	CHECK_INT(sources_init(&s, 24, 64), 0);
	CHECK_INT(left(&s, "192.0.2.1", t0, iv, 3), 3); /* never seen */
	for (unsigned want = 2, i = 0; i < 3; i++, want--) {
		CHECK_INT(take(&s, "192.0.2.1", t0, iv, 3), 1);
		CHECK_INT(left(&s, "192.0.2.1", t0, iv, 3), want);
		CHECK_INT(left(&s, "192.0.2.77", t0, iv, 3), want); /* same /24 */
	}
	CHECK_INT(take(&s, "192.0.2.1", t0, iv, 3), 0);
	CHECK_INT(left(&s, "192.0.2.1", t0, iv, 3), 0);
	CHECK_INT(left(&s, "192.0.2.1", t0 + iv - 1, iv, 3), 0);
	CHECK_INT(left(&s, "192.0.2.1", t0 + iv, iv, 3), 1);
	CHECK_INT(take(&s, "192.0.2.1", t0 + iv, iv, 3), 1);
	CHECK_INT(take(&s, "192.0.2.1", t0 + iv, iv, 3), 0);
	CHECK_INT(left(&s, "192.0.2.1", t0 + 100 * SEC, iv, 3), 3); /* whole, not more */
	CHECK_INT(left(&s, "198.51.100.1", t0, iv, 0), 1);	    /* burst 0 is 1 */
	sources_free(&s);
}

static void check_format(const struct sources *s, const char *ip, const char *want)
{
	struct sockaddr_storage ss = test_peer(ip, 1234);
	char buf[80];

	CHECK_INT(sources_format(s, (struct sockaddr *)&ss, buf, sizeof(buf)), 0);
	CHECK_STR(buf, want);
}

static void test_format(void)
{
	struct sources s;
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct sockaddr_storage ss = test_peer("192.0.2.1", 1);
	char buf[80];

	CHECK_INT(sources_init(&s, 24, 64), 0);
	check_format(&s, "192.0.2.77", "192.0.2.0/24");
	check_format(&s, "::ffff:192.0.2.77", "192.0.2.0/24");
	check_format(&s, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64");
	CHECK_INT(sources_format(&s, (struct sockaddr *)&un, buf, sizeof(buf)), -EAFNOSUPPORT);
	CHECK_INT(sources_format(&s, (struct sockaddr *)&ss, buf, 12), -ENOSPC); /* 13 bytes */
	CHECK_INT(sources_format(&s, (struct sockaddr *)&ss, buf, 13), 0);
	sources_free(&s);
}

/* A source is forgotten once it has no live worker and its allowance is
 * whole again; until then its rate state holds. */
static void test_expire(void)
{
	const uint64_t t0 = 50 * SEC, iv = SEC;
	struct sources s;

	CHECK_INT(sources_init(&s, 32, 64), 0);
	CHECK_INT(take(&s, "192.0.2.1", t0, iv, 1), 1); /* no worker yet */
	CHECK_INT(take(&s, "192.0.2.2", t0, iv, 1), 1);
	CHECK_INT(inc(&s, "192.0.2.2"), 0);
	CHECK_INT(inc(&s, "192.0.2.3"), 0); /* no rate use */
	dec(&s, "192.0.2.3");		    /* gone at once: nothing to remember */
	CHECK_INT(s.n, 2);
	CHECK_INT(sources_expire(&s, t0 + iv - 1), 0);
	CHECK_INT(take(&s, "192.0.2.1", t0 + iv - 1, iv, 1), 0); /* still limited */
	CHECK_INT(sources_expire(&s, t0 + iv), 1);		 /* .1 only: .2 is live */
	CHECK_INT(s.n, 1);
	CHECK_INT(count(&s, "192.0.2.2"), 1);
	dec(&s, "192.0.2.2");
	CHECK_INT(s.n, 1); /* its rate state stays until the next sweep */
	CHECK_INT(sources_expire(&s, t0 + iv), 1);
	CHECK_INT(s.n, 0);
	sources_free(&s);
}

/* A flood of distinct sources grows the table; once they are forgotten it
 * shrinks back, and survivors are intact. */
static void test_flood_and_shrink(void)
{
	struct sources s;
	char ip[32];
	size_t peak;

	CHECK_INT(sources_init(&s, 32, 64), 0);
	for (unsigned i = 0; i < 20000; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		CHECK_INT(take(&s, ip, SEC, SEC, 1), 1);
	}
	CHECK_INT(inc(&s, "10.0.0.5"), 0);
	peak = s.cap;
	CHECK(peak >= 32768);
	CHECK_INT(sources_expire(&s, 2 * SEC), 19999);
	CHECK(s.cap <= 64);
	CHECK_INT(count(&s, "10.0.0.5"), 1);
	CHECK_INT(take(&s, "10.0.0.5", 2 * SEC, SEC, 1), 1);
	CHECK_INT(take(&s, "10.0.0.5", 2 * SEC, SEC, 1), 0);
	sources_free(&s);
}

/* children_set_prefixes recounts the live workers under the new grouping. */
static void test_children_rekey(void)
{
	struct children t;
	struct sockaddr_storage a = test_peer("192.0.2.1", 1234),
				b = test_peer("192.0.2.200", 1234);

	CHECK_INT(children_init(&t), 0);
	CHECK_INT(children_add(&t, 10, (struct sockaddr *)&a, 0, 0), 0);
	CHECK_INT(children_add(&t, 11, (struct sockaddr *)&b, 0, 0), 0);
	CHECK_INT(children_source_count(&t, (struct sockaddr *)&a), 1);
	CHECK_INT(children_set_prefixes(&t, 24, 64), 0);
	CHECK_INT(children_source_count(&t, (struct sockaddr *)&a), 2);
	CHECK_INT(children_set_prefixes(&t, 40, 64), -EINVAL);
	CHECK_INT(children_source_count(&t, (struct sockaddr *)&b), 2); /* unchanged */
	CHECK_INT(children_remove(&t, 10, NULL), 0);
	CHECK_INT(children_source_count(&t, (struct sockaddr *)&b), 1);
	children_free(&t);
}

int main(void)
{
	test_bad_prefixes();
	test_prefixes();
	test_rate();
	test_rate_left();
	test_format();
	test_expire();
	test_flood_and_shrink();
	test_children_rekey();
	return check_done();
}
