#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "parse.h"

_Static_assert(ADDR_IFNAMESIZE == IF_NAMESIZE, "ADDR_IFNAMESIZE differs from IF_NAMESIZE");

static const char addr_why_host[] = "host must be a numeric IPv4 or IPv6 address, or *";

static void addr_set_v4(struct addr *a, const struct in_addr *in, unsigned port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	sin.sin_addr = *in;
	memset(a, 0, sizeof(*a));
	memcpy(&a->ss, &sin, sizeof(sin));
	a->len = sizeof(sin);
}

static void addr_set_v6(struct addr *a, const struct in6_addr *in6, uint32_t scope, unsigned port)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};

	sin6.sin6_addr = *in6;
	sin6.sin6_scope_id = scope;
	memset(a, 0, sizeof(*a));
	memcpy(&a->ss, &sin6, sizeof(sin6));
	a->len = sizeof(sin6);
}

/* The interface after "%" in "fe80::1%eth0", by name or index. Checked now
 * because a typo would otherwise only show when bind fails. */
static int addr_parse_scope(const char *s, uint32_t *scope, const char **why)
{
	char name[IF_NAMESIZE];
	uint64_t n;

	if (parse_uint(s, 1, UINT32_MAX, &n) == 0)
		*scope = (uint32_t)n;
	else
		*scope = if_nametoindex(s);
	if (*scope == 0 || !if_indextoname(*scope, name)) {
		*why = "no such network interface after %";
		return -EINVAL;
	}
	return 0;
}

static int addr_parse_v6(char *host, unsigned port, struct addr *out, const char **why)
{
	char *pct = strchr(host, '%');
	struct in6_addr in6;
	uint32_t scope = 0;

	if (pct)
		*pct = '\0';
	if (inet_pton(AF_INET6, host, &in6) != 1) {
		*why = "not an IPv6 address inside [ ]";
		return -EINVAL;
	}
	/* Listening sockets are V6ONLY, where the kernel refuses these. */
	if (IN6_IS_ADDR_V4MAPPED(&in6)) {
		*why = "IPv4-mapped IPv6 address: write it as IPv4, as in 192.0.2.1:7";
		return -EINVAL;
	}
	if (pct && addr_parse_scope(pct + 1, &scope, why) < 0)
		return -EINVAL;
	if (IN6_IS_ADDR_LINKLOCAL(&in6) && !pct) {
		*why = "a link-local address needs an interface, as in [fe80::1%eth0]:7";
		return -EINVAL;
	}
	if (!IN6_IS_ADDR_LINKLOCAL(&in6) && pct) {
		*why = "an interface (%) only applies to link-local addresses (fe80::/10)";
		return -EINVAL;
	}
	addr_set_v6(out, &in6, scope, port);
	return 1;
}

int addr_parse_listen(const char *s, struct addr out[2], const char **why)
{
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
	const char *host_end, *port_s;
	bool bracketed = s[0] == '[';
	struct in_addr in;
	uint64_t port;
	int r;

	if (bracketed) {
		s++;
		host_end = strchr(s, ']');
		if (!host_end) {
			*why = "missing ] after the IPv6 address";
			return -EINVAL;
		}
		if (host_end[1] != ':') {
			*why = host_end[1] ? "expected :PORT after ]" : "missing :PORT";
			return -EINVAL;
		}
		port_s = host_end + 2;
	} else {
		host_end = strrchr(s, ':');
		if (!host_end) {
			*why = "missing :PORT";
			return -EINVAL;
		}
		if (memchr(s, ':', (size_t)(host_end - s))) {
			*why = "an IPv6 address must be in brackets, as in [::1]:7";
			return -EINVAL;
		}
		port_s = host_end + 1;
	}
	if (host_end == s) {
		*why = "missing host before :PORT (* means every address)";
		return -EINVAL;
	}
	if ((size_t)(host_end - s) >= sizeof(host)) {
		*why = bracketed ? "not an IPv6 address inside [ ]" : addr_why_host;
		return -EINVAL;
	}
	memcpy(host, s, (size_t)(host_end - s));
	host[host_end - s] = '\0';

	r = parse_uint(port_s, 1, 65535, &port);
	if (r == -ERANGE) {
		*why = "port must be 1..65535";
		return -EINVAL;
	}
	if (r < 0) {
		*why = *port_s ? "port is not a number" : "missing port after :";
		return -EINVAL;
	}

	if (bracketed)
		return addr_parse_v6(host, (unsigned)port, out, why);
	if (strcmp(host, "*") == 0) {
		in.s_addr = htonl(INADDR_ANY);
		addr_set_v4(&out[0], &in, (unsigned)port);
		addr_set_v6(&out[1], &in6addr_any, 0, (unsigned)port);
		return 2;
	}
	if (inet_pton(AF_INET, host, &in) != 1) {
		*why = addr_why_host;
		return -EINVAL;
	}
	addr_set_v4(&out[0], &in, (unsigned)port);
	return 1;
}

void addr_scope_name(const struct sockaddr *sa, char name[ADDR_IFNAMESIZE])
{
	struct sockaddr_in6 sin6;

	name[0] = '\0';
	if (sa->sa_family != AF_INET6)
		return;
	memcpy(&sin6, sa, sizeof(sin6));
	if (sin6.sin6_scope_id != 0 && !if_indextoname(sin6.sin6_scope_id, name))
		name[0] = '\0';
}

int addr_host_port_as(const struct sockaddr *sa, const char *ifname, char *host, size_t len,
		      unsigned *port)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	size_t used;

	switch (sa->sa_family) {
	case AF_INET:
		memcpy(&sin, sa, sizeof(sin));
		if (!inet_ntop(AF_INET, &sin.sin_addr, host, (socklen_t)len))
			return -ENOSPC;
		*port = ntohs(sin.sin_port);
		return 0;
	case AF_INET6:
		memcpy(&sin6, sa, sizeof(sin6));
		*port = ntohs(sin6.sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
			if (!inet_ntop(AF_INET, &sin6.sin6_addr.s6_addr[12], host, (socklen_t)len))
				return -ENOSPC;
			return 0;
		}
		if (!inet_ntop(AF_INET6, &sin6.sin6_addr, host, (socklen_t)len))
			return -ENOSPC;
		if (sin6.sin6_scope_id == 0)
			return 0;
		/* An interface without a name (gone, or not looked up) is still
		 * shown, by index, in a form addr_parse_listen reads back. */
		used = strlen(host);
		if (ifname && ifname[0])
			used += (size_t)snprintf(host + used, len - used, "%%%.*s",
						 ADDR_IFNAMESIZE - 1, ifname);
		else
			used += (size_t)snprintf(host + used, len - used, "%%%u",
						 (unsigned)sin6.sin6_scope_id);
		return used < len ? 0 : -ENOSPC;
	default:
		return -EAFNOSUPPORT;
	}
}

int addr_host_port(const struct sockaddr *sa, char *host, size_t len, unsigned *port)
{
	char ifname[ADDR_IFNAMESIZE];

	addr_scope_name(sa, ifname);
	return addr_host_port_as(sa, ifname, host, len, port);
}

int addr_format_as(const struct sockaddr *sa, const char *ifname, char *buf, size_t len)
{
	char host[ADDR_STRLEN];
	unsigned port;
	int r = addr_host_port_as(sa, ifname, host, sizeof(host), &port);
	int n;

	if (r < 0)
		return r;
	if (strchr(host, ':'))
		n = snprintf(buf, len, "[%s]:%u", host, port);
	else
		n = snprintf(buf, len, "%s:%u", host, port);
	return n >= 0 && (size_t)n < len ? 0 : -ENOSPC;
}

int addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ifname[ADDR_IFNAMESIZE];

	addr_scope_name(sa, ifname);
	return addr_format_as(sa, ifname, buf, len);
}

unsigned addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

bool addr_equal(const struct addr *a, const struct addr *b)
{
	struct sockaddr_in a4, b4;
	struct sockaddr_in6 a6, b6;

	if (a->ss.ss_family != b->ss.ss_family)
		return false;
	switch (a->ss.ss_family) {
	case AF_INET:
		memcpy(&a4, &a->ss, sizeof(a4));
		memcpy(&b4, &b->ss, sizeof(b4));
		return a4.sin_port == b4.sin_port && a4.sin_addr.s_addr == b4.sin_addr.s_addr;
	case AF_INET6:
		memcpy(&a6, &a->ss, sizeof(a6));
		memcpy(&b6, &b->ss, sizeof(b6));
		/* fe80::1 on two interfaces are two different sockets. */
		return a6.sin6_port == b6.sin6_port && a6.sin6_scope_id == b6.sin6_scope_id &&
		       memcmp(&a6.sin6_addr, &b6.sin6_addr, sizeof(a6.sin6_addr)) == 0;
	default:
		return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
	}
}

void addr_unmap(struct addr *a)
{
	struct sockaddr_in6 sin6;
	struct in_addr in;

	if (a->ss.ss_family != AF_INET6)
		return;
	memcpy(&sin6, &a->ss, sizeof(sin6));
	if (!IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr))
		return;
	memcpy(&in, &sin6.sin6_addr.s6_addr[12], sizeof(in));
	addr_set_v4(a, &in, ntohs(sin6.sin6_port));
}

int addr_ip_from(struct addr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET)
		a->len = sizeof(struct sockaddr_in);
	else if (sa->sa_family == AF_INET6)
		a->len = sizeof(struct sockaddr_in6);
	else
		return -EAFNOSUPPORT;
	memcpy(&a->ss, sa, a->len);
	addr_unmap(a);
	return 0;
}
