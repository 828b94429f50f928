#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "addr.h"
#include "check.h"

/* Parses s, expecting n addresses, and checks that each formats as want[i]. */
static void check_listen(const char *s, int n, const char *want0, const char *want1)
{
	const char *want[2] = {want0, want1};
	struct addr a[2];
	const char *why = NULL;
	char buf[ADDR_STRLEN];

	CHECK_INT(addr_parse_listen(s, a, &why), n);
	for (int i = 0; i < n && i < 2; i++) {
		CHECK_INT(addr_format((struct sockaddr *)&a[i].ss, buf, sizeof(buf)), 0);
		CHECK_STR(buf, want[i]);
	}
}

static void check_listen_err(const char *s, const char *why_want)
{
	struct addr a[2];
	const char *why = NULL;

	CHECK_INT(addr_parse_listen(s, a, &why), -EINVAL);
	CHECK_STR(why, why_want);
}

static void test_parse_good(void)
{
	struct addr a[2];
	const char *why;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	CHECK_INT(addr_parse_listen("127.0.0.1:7", a, &why), 1);
	CHECK_INT(a[0].ss.ss_family, AF_INET);
	CHECK_INT(a[0].len, sizeof(struct sockaddr_in));
	memcpy(&sin, &a[0].ss, sizeof(sin));
	CHECK_INT(ntohs(sin.sin_port), 7);
	CHECK_INT(ntohl(sin.sin_addr.s_addr), INADDR_LOOPBACK);

	CHECK_INT(addr_parse_listen("[::1]:7007", a, &why), 1);
	CHECK_INT(a[0].ss.ss_family, AF_INET6);
	CHECK_INT(a[0].len, sizeof(struct sockaddr_in6));
	memcpy(&sin6, &a[0].ss, sizeof(sin6));
	CHECK_INT(ntohs(sin6.sin6_port), 7007);
	CHECK(IN6_IS_ADDR_LOOPBACK(&sin6.sin6_addr));
	CHECK_INT(sin6.sin6_scope_id, 0);

	CHECK_INT(addr_parse_listen("*:7", a, &why), 2);
	CHECK_INT(a[0].ss.ss_family, AF_INET);
	CHECK_INT(a[1].ss.ss_family, AF_INET6);
	memcpy(&sin6, &a[1].ss, sizeof(sin6));
	CHECK(IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr));

	check_listen("*:7", 2, "0.0.0.0:7", "[::]:7");
	check_listen("0.0.0.0:65535", 1, "0.0.0.0:65535", NULL);
	check_listen("192.0.2.1:1", 1, "192.0.2.1:1", NULL);
	check_listen("[2001:db8::1]:7", 1, "[2001:db8::1]:7", NULL);
	check_listen("[2001:DB8:0:0::1]:7", 1, "[2001:db8::1]:7", NULL);
	check_listen("[::]:7", 1, "[::]:7", NULL);
	check_listen("127.0.0.1:007", 1, "127.0.0.1:7", NULL);
}

/* Link-local addresses need an interface; "lo" exists everywhere. */
static void test_parse_scope(void)
{
	unsigned lo = if_nametoindex("lo");
	char spec[64];
	struct addr a[2];
	const char *why;
	struct sockaddr_in6 sin6;

	CHECK(lo > 0);
	CHECK_INT(addr_parse_listen("[fe80::1%lo]:7", a, &why), 1);
	memcpy(&sin6, &a[0].ss, sizeof(sin6));
	CHECK_INT(sin6.sin6_scope_id, lo);
	check_listen("[fe80::1%lo]:7", 1, "[fe80::1%lo]:7", NULL);
	snprintf(spec, sizeof(spec), "[fe80::1%%%u]:7", lo);
	check_listen(spec, 1, "[fe80::1%lo]:7", NULL);

	check_listen_err("[fe80::1]:7",
			 "a link-local address needs an interface, as in [fe80::1%eth0]:7");
	check_listen_err("[fe80::1%no-such-if0]:7", "no such network interface after %");
	check_listen_err("[fe80::1%]:7", "no such network interface after %");
	check_listen_err("[fe80::1%4000000000]:7", "no such network interface after %");
	check_listen_err("[::1%lo]:7",
			 "an interface (%) only applies to link-local addresses (fe80::/10)");
}

static void test_parse_bad(void)
{
	const char *host = "host must be a numeric IPv4 or IPv6 address, or *";

	check_listen_err("localhost:7", host);
	check_listen_err("example.com:7", host);
	check_listen_err("127.1:7", host);
	check_listen_err("256.0.0.1:7", host);
	check_listen_err("127.0.0.1 :7", host);
	check_listen_err("**:7", host);
	check_listen_err("127.0.0.1", "missing :PORT");
	check_listen_err("", "missing :PORT");
	check_listen_err("127.0.0.1:", "missing port after :");
	check_listen_err(":7", "missing host before :PORT (* means every address)");
	check_listen_err("127.0.0.1:0", "port must be 1..65535");
	check_listen_err("*:0", "port must be 1..65535");
	check_listen_err("127.0.0.1:65536", "port must be 1..65535");
	check_listen_err("127.0.0.1:99999999999999999999999", "port must be 1..65535");
	check_listen_err("127.0.0.1:7x", "port is not a number");
	check_listen_err("127.0.0.1:7 ", "port is not a number");
	check_listen_err("127.0.0.1:-7", "port is not a number");
	check_listen_err("127.0.0.1:echo", "port is not a number");
	check_listen_err("::1:7", "an IPv6 address must be in brackets, as in [::1]:7");
	check_listen_err("[::1:7", "missing ] after the IPv6 address");
	check_listen_err("[::1]", "missing :PORT");
	check_listen_err("[::1]7", "expected :PORT after ]");
	check_listen_err("[::1]x:7", "expected :PORT after ]");
	check_listen_err("[::1]:7]", "port is not a number");
	check_listen_err("[127.0.0.1]:7", "not an IPv6 address inside [ ]");
	check_listen_err("[*]:7", "not an IPv6 address inside [ ]");
	check_listen_err("[localhost]:7", "not an IPv6 address inside [ ]");
	check_listen_err("[::ffff:127.0.0.1]:7",
			 "IPv4-mapped IPv6 address: write it as IPv4, as in 192.0.2.1:7");
	check_listen_err("[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:"
			 "0000:0000:0000:0000:0000:0000:0000:0000]:7",
			 "not an IPv6 address inside [ ]");
}

static void test_format(void)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(4242)};
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(7)};
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char buf[ADDR_STRLEN], host[ADDR_STRLEN], name[ADDR_IFNAMESIZE];
	unsigned port = 0;

	inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
	CHECK_INT(addr_format((struct sockaddr *)&sin, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "192.0.2.1:7");
	CHECK_INT(addr_host_port((struct sockaddr *)&sin, host, sizeof(host), &port), 0);
	CHECK_STR(host, "192.0.2.1");
	CHECK_INT(port, 7);
	CHECK_INT(addr_format((struct sockaddr *)&sin, buf, 11), -ENOSPC);
	CHECK_INT(addr_format((struct sockaddr *)&sin, buf, 12), 0);
	CHECK_INT(addr_host_port((struct sockaddr *)&sin, host, 9, &port), -ENOSPC);

	inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
	CHECK_INT(addr_format((struct sockaddr *)&sin6, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "[2001:db8::1]:4242");
	CHECK_INT(addr_host_port((struct sockaddr *)&sin6, host, sizeof(host), &port), 0);
	CHECK_STR(host, "2001:db8::1");
	CHECK_INT(port, 4242);

	/* A v4 peer on a dual-stack socket is shown as v4. */
	inet_pton(AF_INET6, "::ffff:198.51.100.7", &sin6.sin6_addr);
	CHECK_INT(addr_format((struct sockaddr *)&sin6, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "198.51.100.7:4242");
	CHECK_INT(addr_host_port((struct sockaddr *)&sin6, host, sizeof(host), &port), 0);
	CHECK_STR(host, "198.51.100.7");

	/* A scope whose interface is gone still shows, by number. */
	inet_pton(AF_INET6, "fe80::2", &sin6.sin6_addr);
	sin6.sin6_scope_id = 3999999999u;
	CHECK_INT(addr_format((struct sockaddr *)&sin6, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "[fe80::2%3999999999]:4242");
	CHECK_INT(addr_host_port((struct sockaddr *)&sin6, host, 10, &port), -ENOSPC);

	/* A scope by the name given, for a worker in its sandbox: no look-up. */
	CHECK_INT(addr_format_as((struct sockaddr *)&sin6, "eth7", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "[fe80::2%eth7]:4242");
	CHECK_INT(addr_host_port_as((struct sockaddr *)&sin6, "eth7", host, sizeof(host), &port),
		  0);
	CHECK_STR(host, "fe80::2%eth7");
	CHECK_INT(addr_format_as((struct sockaddr *)&sin6, "", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "[fe80::2%3999999999]:4242");
	CHECK_INT(addr_format_as((struct sockaddr *)&sin6, NULL, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "[fe80::2%3999999999]:4242");
	CHECK_INT(addr_format_as((struct sockaddr *)&sin, "eth7", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "192.0.2.1:7");

	/* The look-up itself: lo's name, nothing for a gone or no scope. */
	addr_scope_name((struct sockaddr *)&sin6, name);
	CHECK_STR(name, "");
	sin6.sin6_scope_id = if_nametoindex("lo");
	addr_scope_name((struct sockaddr *)&sin6, name);
	CHECK_STR(name, "lo");
	CHECK_INT(addr_format((struct sockaddr *)&sin6, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "[fe80::2%lo]:4242");
	addr_scope_name((struct sockaddr *)&sin, name);
	CHECK_STR(name, "");

	CHECK_INT(addr_format((struct sockaddr *)&sun, buf, sizeof(buf)), -EAFNOSUPPORT);
	CHECK_INT(addr_host_port((struct sockaddr *)&sun, host, sizeof(host), &port),
		  -EAFNOSUPPORT);
}

static void test_equal_unmap(void)
{
	struct addr a[2], b[2], c[2], d[2], e[2];
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(9)};
	struct sockaddr_in sin;
	struct addr m;
	const char *why;
	char buf[ADDR_STRLEN];

	addr_parse_listen("127.0.0.1:7", a, &why);
	addr_parse_listen("127.0.0.1:7", b, &why);
	addr_parse_listen("127.0.0.1:8", c, &why);
	addr_parse_listen("127.0.0.2:7", d, &why);
	CHECK(addr_equal(&a[0], &b[0]));
	CHECK(!addr_equal(&a[0], &c[0]));
	CHECK(!addr_equal(&a[0], &d[0]));

	addr_parse_listen("*:7", e, &why);
	addr_parse_listen("[::]:7", b, &why);
	CHECK(addr_equal(&e[1], &b[0]));
	CHECK(!addr_equal(&e[0], &e[1]));
	addr_parse_listen("[fe80::1%lo]:7", c, &why);
	memcpy(&sin6, &c[0].ss, sizeof(sin6));
	sin6.sin6_scope_id++;
	memcpy(&d[0].ss, &sin6, sizeof(sin6));
	d[0].len = sizeof(sin6);
	CHECK(addr_equal(&c[0], &c[0]));
	CHECK(!addr_equal(&c[0], &d[0]));

	memset(&m, 0, sizeof(m));
	sin6 = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = htons(9)};
	inet_pton(AF_INET6, "::ffff:192.0.2.9", &sin6.sin6_addr);
	memcpy(&m.ss, &sin6, sizeof(sin6));
	m.len = sizeof(sin6);
	addr_unmap(&m);
	CHECK_INT(m.ss.ss_family, AF_INET);
	CHECK_INT(m.len, sizeof(struct sockaddr_in));
	memcpy(&sin, &m.ss, sizeof(sin));
	CHECK_INT(ntohs(sin.sin_port), 9);
	addr_format((struct sockaddr *)&m.ss, buf, sizeof(buf));
	CHECK_STR(buf, "192.0.2.9:9");

	/* Plain v6 and v4 addresses are left alone. */
	addr_parse_listen("[2001:db8::5]:9", b, &why);
	c[0] = b[0];
	addr_unmap(&b[0]);
	CHECK(addr_equal(&b[0], &c[0]));
	CHECK_INT(b[0].len, sizeof(struct sockaddr_in6));
	c[0] = a[0];
	addr_unmap(&a[0]);
	CHECK(addr_equal(&a[0], &c[0]));
}

/* What addr_format writes, addr_parse_listen reads back to the same address. */
static void test_round_trip(void)
{
	static const char *const specs[] = {
	    "127.0.0.1:7", "[::1]:7", "*:65535", "[2001:db8:1:2:3:4:5:6]:80", "[fe80::1%lo]:7",
	};
	struct addr a[2], b[2];
	const char *why;
	char buf[ADDR_STRLEN];
	int n;

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		n = addr_parse_listen(specs[i], a, &why);
		CHECK(n > 0);
		for (int j = 0; j < n; j++) {
			CHECK_INT(addr_format((struct sockaddr *)&a[j].ss, buf, sizeof(buf)), 0);
			CHECK_INT(addr_parse_listen(buf, b, &why), 1);
			CHECK(addr_equal(&a[j], &b[0]));
			CHECK_INT(a[j].len, b[0].len);
		}
	}
}

static void test_port(void)
{
	struct addr a[2];
	const char *why;
	struct sockaddr_un un = {.sun_family = AF_UNIX};

	CHECK_INT(addr_parse_listen("127.0.0.1:7007", a, &why), 1);
	CHECK_INT(addr_port((struct sockaddr *)&a[0].ss), 7007);
	CHECK_INT(addr_parse_listen("[::1]:65535", a, &why), 1);
	CHECK_INT(addr_port((struct sockaddr *)&a[0].ss), 65535);
	CHECK_INT(addr_port((struct sockaddr *)&un), 0);
}

/* A copy of an IP peer, mapped IPv4 unmapped, port kept; nothing else. */
static void test_ip_from(void)
{
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(9)};
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct addr a, b[2];
	const char *why;

	CHECK_INT(inet_pton(AF_INET6, "::ffff:192.0.2.7", &v6.sin6_addr), 1);
	CHECK_INT(addr_ip_from(&a, (struct sockaddr *)&v6), 0);
	CHECK_INT(addr_parse_listen("192.0.2.7:9", b, &why), 1);
	CHECK(addr_equal(&a, &b[0]));
	CHECK_INT(a.len, sizeof(struct sockaddr_in));
	CHECK_INT(inet_pton(AF_INET6, "2001:db8::7", &v6.sin6_addr), 1);
	CHECK_INT(addr_ip_from(&a, (struct sockaddr *)&v6), 0);
	CHECK_INT(addr_parse_listen("[2001:db8::7]:9", b, &why), 1);
	CHECK(addr_equal(&a, &b[0]));
	CHECK_INT(addr_ip_from(&a, (struct sockaddr *)&un), -EAFNOSUPPORT);
}

int main(void)
{
	test_parse_good();
	test_parse_scope();
	test_parse_bad();
	test_format();
	test_equal_unmap();
	test_round_trip();
	test_port();
	test_ip_from();
	return check_done();
}
