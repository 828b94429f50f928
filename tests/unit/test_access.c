#include "access.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "check.h"
#include "peer.h"

static struct cidr rule(const char *s)
{
	struct cidr c;
	const char *why = NULL;

	if (access_parse_cidr(s, &c, &why) != 0) {
		fprintf(stderr, "bad test rule %s: %s\n", s, why);
		abort();
	}
	return c;
}

static bool match(const char *r, const char *p)
{
	struct cidr c = rule(r);
	struct sockaddr_storage ss = test_peer(p, 40000);

	return access_cidr_match(&c, (struct sockaddr *)&ss);
}

static void check_parsed(const char *s, int family, const char *addr, unsigned prefix)
{
	struct cidr c;
	const char *why = NULL;
	uint8_t want[16] = {0};

	CHECK_INT(access_parse_cidr(s, &c, &why), 0);
	CHECK_INT(c.family, family);
	CHECK_INT(c.prefix, prefix);
	CHECK_INT(inet_pton(family, addr, want), 1);
	CHECK(memcmp(c.addr, want, sizeof(want)) == 0);
}

static void test_parse(void)
{
	check_parsed("192.0.2.0/24", AF_INET, "192.0.2.0", 24);
	check_parsed("198.51.100.7", AF_INET, "198.51.100.7", 32);
	check_parsed("0.0.0.0/0", AF_INET, "0.0.0.0", 0);
	check_parsed("10.0.2.0/23", AF_INET, "10.0.2.0", 23);
	check_parsed("2001:db8::/32", AF_INET6, "2001:db8::", 32);
	check_parsed("2001:db8::1", AF_INET6, "2001:db8::1", 128);
	check_parsed("::/0", AF_INET6, "::", 0);
	check_parsed("2001:db8::80/121", AF_INET6, "2001:db8::80", 121);
	check_parsed("192.0.2.0/024", AF_INET, "192.0.2.0", 24);
	/* Mapped prefixes of /96 and longer become IPv4 rules. */
	check_parsed("::ffff:192.0.2.0/120", AF_INET, "192.0.2.0", 24);
	check_parsed("::ffff:198.51.100.7", AF_INET, "198.51.100.7", 32);
	check_parsed("::ffff:0:0/96", AF_INET, "0.0.0.0", 0);
	check_parsed("::ffff:c000:200/119", AF_INET, "192.0.2.0", 23);
	/* Shorter ones cover more than the mapped range: they stay IPv6. */
	check_parsed("::/80", AF_INET6, "::", 80);
	check_parsed("1::ffff:0:0/96", AF_INET6, "1::ffff:0:0", 96);
}

static void check_error(const char *s, const char *want_why)
{
	struct cidr c = {.family = 12345};
	const char *why = NULL;

	CHECK_INT(access_parse_cidr(s, &c, &why), -EINVAL);
	CHECK_STR(why, want_why);
	CHECK_INT(c.family, 12345); /* *out untouched on error */
}

static void test_parse_errors(void)
{
	const char *not_addr = "not an IPv4 or IPv6 address";
	const char *nan = "prefix length is not a number";
	const char *trailing = "trailing characters after the prefix length";
	const char *host = "address has bits set beyond the prefix length";

	check_error("", "empty address");
	check_error(NULL, "empty address");
	check_error("/24", "missing address before '/'");
	check_error("192.0.2.0/", "missing prefix length after '/'");
	check_error("garbage", not_addr);
	check_error("192.0.2", not_addr);
	check_error("192.0.2.256", not_addr);
	check_error("192.0.2.1 ", not_addr);
	check_error(" 192.0.2.1", not_addr);
	check_error("192.0.2.1x", not_addr);
	check_error("2001:db8::g", not_addr);
	check_error("fe80::1%lo", not_addr);
	check_error("2001:0db8:0000:0000:0000:0000:0000:0000:0000/64", not_addr);
	check_error("192.0.2.0/abc", nan);
	check_error("192.0.2.0/-1", nan);
	check_error("192.0.2.0/+24", nan);
	check_error("192.0.2.0/ 24", nan);
	check_error("192.0.2.0/24x", trailing);
	check_error("192.0.2.0/24 ", trailing);
	check_error("192.0.2.0/24/8", trailing);
	check_error("192.0.2.0/33", "prefix length over 32 for IPv4");
	check_error("192.0.2.0/99999999999999999999", "prefix length over 32 for IPv4");
	check_error("192.0.2.0/4294967320", "prefix length over 32 for IPv4"); /* 2^32 + 24 */
	check_error("2001:db8::/129", "prefix length over 128 for IPv6");
	check_error("::ffff:192.0.2.0/129", "prefix length over 128 for IPv6");
	check_error("192.0.2.1/24", host);
	check_error("10.0.3.0/23", host);
	check_error("0.0.0.1/0", host);
	check_error("2001:db8::1/64", host);
	check_error("2001:db8::c0/121", host);
	check_error("::ffff:192.0.2.1/120", host);
	check_error("::ffff:0:0/95", host);
}

static void test_match_v4(void)
{
	CHECK(match("192.0.2.0/24", "192.0.2.0"));
	CHECK(match("192.0.2.0/24", "192.0.2.255"));
	CHECK(!match("192.0.2.0/24", "192.0.1.255"));
	CHECK(!match("192.0.2.0/24", "192.0.3.0"));
	/* /23: the last bit of the third byte is a host bit. */
	CHECK(match("10.0.2.0/23", "10.0.2.0"));
	CHECK(match("10.0.2.0/23", "10.0.3.255"));
	CHECK(!match("10.0.2.0/23", "10.0.1.255"));
	CHECK(!match("10.0.2.0/23", "10.0.4.0"));
	CHECK(match("198.51.100.7/32", "198.51.100.7"));
	CHECK(!match("198.51.100.7/32", "198.51.100.6"));
	CHECK(!match("198.51.100.7/32", "198.51.100.8"));
	CHECK(match("0.0.0.0/0", "0.0.0.0"));
	CHECK(match("0.0.0.0/0", "255.255.255.255"));
	CHECK(match("128.0.0.0/1", "255.0.0.1"));
	CHECK(!match("128.0.0.0/1", "127.255.255.255"));
	CHECK(match("192.0.2.6/31", "192.0.2.7"));
	CHECK(!match("192.0.2.6/31", "192.0.2.8"));
}

static void test_match_v6(void)
{
	CHECK(match("2001:db8::/32", "2001:db8::1"));
	CHECK(match("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
	CHECK(!match("2001:db8::/32", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
	CHECK(!match("2001:db8::/32", "2001:db9::"));
	/* /121: the mask ends inside the last byte. */
	CHECK(match("2001:db8::80/121", "2001:db8::80"));
	CHECK(match("2001:db8::80/121", "2001:db8::ff"));
	CHECK(!match("2001:db8::80/121", "2001:db8::7f"));
	CHECK(!match("2001:db8::80/121", "2001:db8::100"));
	/* /65: a boundary inside the third 32-bit word. */
	CHECK(match("2001:db8:0:1:8000::/65", "2001:db8:0:1:ffff::1"));
	CHECK(!match("2001:db8:0:1:8000::/65", "2001:db8:0:1:7fff:ffff:ffff:ffff"));
	CHECK(match("2001:db8::1/128", "2001:db8::1"));
	CHECK(!match("2001:db8::1/128", "2001:db8::"));
	CHECK(!match("2001:db8::1/128", "2001:db8::2"));
	CHECK(!match("2001:db8::1/128", "2001:db9::1"));
	CHECK(match("::/0", "::1"));
	CHECK(match("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
}

static void test_match_families(void)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct sockaddr_storage ss = test_peer("192.0.2.1", 40000);
	struct cidr c = rule("0.0.0.0/0");

	/* A mapped peer is an IPv4 peer. */
	CHECK(match("192.0.2.0/24", "::ffff:192.0.2.9"));
	CHECK(!match("192.0.2.0/24", "::ffff:192.0.3.9"));
	CHECK(match("::ffff:192.0.2.0/120", "192.0.2.9"));
	CHECK(match("::ffff:192.0.2.0/120", "::ffff:192.0.2.9"));
	CHECK(match("0.0.0.0/0", "::ffff:203.0.113.1"));
	/* Never across families, not even with /0. */
	CHECK(!match("0.0.0.0/0", "::1"));
	CHECK(!match("0.0.0.0/0", "::c000:209")); /* IPv4-compatible is real IPv6 */
	CHECK(!match("::/0", "192.0.2.9"));
	CHECK(!match("::/0", "::ffff:192.0.2.9"));
	CHECK(!match("::/80", "::ffff:192.0.2.9"));
	CHECK(match("::/80", "::c000:209"));
	CHECK(!access_cidr_match(&c, (struct sockaddr *)&un));

	/* A rule built by hand with an impossible prefix matches nothing,
	 * rather than comparing bytes past the IPv4 address. */
	c = rule("192.0.2.1");
	CHECK(access_cidr_match(&c, (struct sockaddr *)&ss));
	c.prefix = 33;
	CHECK(!access_cidr_match(&c, (struct sockaddr *)&ss));
}

static void add(struct cidr **list, size_t *n, const char *s)
{
	struct cidr c = rule(s);

	CHECK_INT(access_list_add(list, n, &c), 0);
}

static enum access_verdict verdict(const struct access_rules *r, const char *p)
{
	struct sockaddr_storage ss = test_peer(p, 40000);

	return access_check(r, (struct sockaddr *)&ss);
}

static void test_check(void)
{
	struct access_rules r = {0};
	struct sockaddr_un un = {.sun_family = AF_UNIX};

	CHECK_INT(verdict(&r, "192.0.2.1"), ACCESS_OK);
	CHECK_INT(verdict(&r, "2001:db8::1"), ACCESS_OK);
	CHECK_INT(access_check(&r, (struct sockaddr *)&un), ACCESS_OK);

	/* Deny only: everything else passes. */
	add(&r.deny, &r.n_deny, "198.51.100.7");
	add(&r.deny, &r.n_deny, "2001:db8:bad::/48");
	CHECK_INT(verdict(&r, "198.51.100.7"), ACCESS_DENIED);
	CHECK_INT(verdict(&r, "::ffff:198.51.100.7"), ACCESS_DENIED);
	CHECK_INT(verdict(&r, "198.51.100.8"), ACCESS_OK);
	CHECK_INT(verdict(&r, "2001:db8:bad::1"), ACCESS_DENIED);
	CHECK_INT(verdict(&r, "2001:db8:bae::1"), ACCESS_OK);

	/* With an allow rule, the unmatched are refused; deny still wins. */
	add(&r.allow, &r.n_allow, "198.51.100.0/24");
	add(&r.allow, &r.n_allow, "2001:db8::/32");
	CHECK_INT(verdict(&r, "198.51.100.1"), ACCESS_OK);
	CHECK_INT(verdict(&r, "::ffff:198.51.100.1"), ACCESS_OK);
	CHECK_INT(verdict(&r, "198.51.100.7"), ACCESS_DENIED);
	CHECK_INT(verdict(&r, "198.51.101.1"), ACCESS_NOT_ALLOWED);
	CHECK_INT(verdict(&r, "2001:db8:1::1"), ACCESS_OK);
	CHECK_INT(verdict(&r, "2001:db8:bad::1"), ACCESS_DENIED);
	CHECK_INT(verdict(&r, "2001:db9::1"), ACCESS_NOT_ALLOWED);
	CHECK_INT(access_check(&r, (struct sockaddr *)&un), ACCESS_NOT_ALLOWED);

	/* A deny covering the whole allow range. */
	add(&r.deny, &r.n_deny, "0.0.0.0/0");
	CHECK_INT(verdict(&r, "198.51.100.1"), ACCESS_DENIED);
	CHECK_INT(verdict(&r, "2001:db8:1::1"), ACCESS_OK);

	access_rules_free(&r);
	CHECK(r.allow == NULL && r.deny == NULL);
	CHECK_INT(r.n_allow + r.n_deny, 0);
	access_rules_free(&r); /* idempotent */
}

/* The rule reported is the one that decided, as the check saw it. */
static void check_rule(const struct access_rules *r, const char *peer, enum access_verdict want,
		       const char *rule)
{
	struct sockaddr_storage ss = test_peer(peer, 40000);
	const struct cidr *hit = (const struct cidr *)&ss; /* must be overwritten */
	char buf[50];

	CHECK_INT(access_check_rule(r, (struct sockaddr *)&ss, &hit), want);
	if (!rule) {
		CHECK(hit == NULL);
		return;
	}
	CHECK(hit != NULL);
	if (hit) {
		CHECK_INT(access_cidr_format(hit, buf, sizeof(buf)), 0);
		CHECK_STR(buf, rule);
	}
}

static void test_check_rule(void)
{
	struct access_rules r = {0};

	check_rule(&r, "192.0.2.1", ACCESS_OK, NULL);
	add(&r.deny, &r.n_deny, "192.0.2.0/25");
	add(&r.deny, &r.n_deny, "192.0.2.0/24");
	check_rule(&r, "192.0.2.1", ACCESS_DENIED, "192.0.2.0/25");   /* the first match */
	check_rule(&r, "192.0.2.200", ACCESS_DENIED, "192.0.2.0/24"); /* the second */
	check_rule(&r, "198.51.100.1", ACCESS_OK, NULL);	      /* no allow rules */
	add(&r.allow, &r.n_allow, "198.51.100.0/24");
	add(&r.allow, &r.n_allow, "::ffff:203.0.113.0/120");
	check_rule(&r, "198.51.100.1", ACCESS_OK, "198.51.100.0/24");
	check_rule(&r, "::ffff:203.0.113.9", ACCESS_OK, "203.0.113.0/24");
	check_rule(&r, "203.0.114.1", ACCESS_NOT_ALLOWED, NULL);
	check_rule(&r, "2001:db8::1", ACCESS_NOT_ALLOWED, NULL);
	/* The rule pointer is optional. */
	struct sockaddr_storage ss = test_peer("192.0.2.1", 1);
	CHECK_INT(access_check_rule(&r, (struct sockaddr *)&ss, NULL), ACCESS_DENIED);
	access_rules_free(&r);
}

static void test_list_add(void)
{
	struct cidr *list = NULL;
	size_t n = 0;
	char buf[64];

	for (unsigned i = 0; i < 300; i++) {
		struct cidr c = {.family = AF_INET, .prefix = 32};

		c.addr[2] = (uint8_t)(i >> 8);
		c.addr[3] = (uint8_t)i;
		CHECK_INT(access_list_add(&list, &n, &c), 0);
	}
	CHECK_INT(n, 300);
	for (unsigned i = 0; i < 300; i++)
		CHECK_INT(list[i].addr[2] << 8 | list[i].addr[3], i);
	/* Adding an element of the list itself, across a realloc. */
	CHECK_INT(access_list_add(&list, &n, &list[7]), 0);
	CHECK_INT(n, 301);
	CHECK_INT(access_cidr_format(&list[300], buf, sizeof(buf)), 0);
	CHECK_STR(buf, "0.0.0.7/32");
	free(list);
}

static void check_round_trip(const char *in, const char *out)
{
	struct cidr c = rule(in), back;
	const char *why;
	char buf[50];

	CHECK_INT(access_cidr_format(&c, buf, sizeof(buf)), 0);
	CHECK_STR(buf, out);
	CHECK_INT(access_parse_cidr(buf, &back, &why), 0);
	CHECK(memcmp(&c, &back, sizeof(c)) == 0);
}

static void test_format(void)
{
	struct cidr c = rule("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120");
	char buf[50];
	size_t n;

	check_round_trip("192.0.2.0/24", "192.0.2.0/24");
	check_round_trip("198.51.100.7", "198.51.100.7/32");
	check_round_trip("0.0.0.0/0", "0.0.0.0/0");
	check_round_trip("2001:db8:0:0::/32", "2001:db8::/32");
	check_round_trip("2001:db8::1", "2001:db8::1/128");
	check_round_trip("::/0", "::/0");
	check_round_trip("::ffff:192.0.2.0/120", "192.0.2.0/24");
	check_round_trip("::/80", "::/80");

	/* Eight uncompressed groups and a 3-digit prefix fit... */
	CHECK_INT(access_cidr_format(&c, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120");
	/* ...and a buffer one byte short is refused, not overrun. */
	n = strlen(buf);
	memset(buf, 'x', sizeof(buf));
	CHECK_INT(access_cidr_format(&c, buf, n), -ENOSPC);
	CHECK_INT(buf[n], 'x');
	c.family = AF_UNIX;
	CHECK_INT(access_cidr_format(&c, buf, sizeof(buf)), -EAFNOSUPPORT);
}

int main(void)
{
	test_parse();
	test_parse_errors();
	test_match_v4();
	test_match_v6();
	test_match_families();
	test_check();
	test_check_rule();
	test_list_add();
	test_format();
	return check_done();
}
