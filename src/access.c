/* Access rules. Parsing happens at config time; matching runs on the
 * master's accept path before every fork, so it only compares words. */
#include "access.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAPPED_PREFIX 96 /* ::ffff:0:0/96 */

static const uint8_t mapped_head[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static unsigned family_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

/* Compares the first prefix bits, a 32-bit word at a time. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	for (const uint8_t *end = a + 16; prefix > 0 && a < end; a += 4, b += 4) {
		uint32_t wa, wb;
		uint32_t mask = prefix >= 32 ? UINT32_MAX : ~(UINT32_MAX >> prefix);

		memcpy(&wa, a, 4);
		memcpy(&wb, b, 4);
		if ((ntohl(wa ^ wb) & mask) != 0)
			return false;
		prefix = prefix >= 32 ? prefix - 32 : 0;
	}
	return true;
}

static bool host_bits_set(const uint8_t *addr, unsigned prefix, unsigned bits)
{
	uint8_t net[16] = {0};

	for (unsigned i = 0; i < prefix / 8; i++)
		net[i] = addr[i];
	if (prefix % 8)
		net[prefix / 8] = addr[prefix / 8] & (uint8_t)(0xff << (8 - prefix % 8));
	return memcmp(net, addr, bits / 8) != 0;
}

/* Strict decimal: no sign, no spaces, nothing after the digits. */
static int parse_prefix(const char *s, unsigned *out, const char **why)
{
	const char *p = s;
	unsigned v = 0;

	for (; *p >= '0' && *p <= '9'; p++) {
		/* Saturates: any value past 128 is already too long. */
		if (v <= 128)
			v = v * 10 + (unsigned)(*p - '0');
	}
	if (*s == '\0') {
		*why = "missing prefix length after '/'";
		return -EINVAL;
	}
	if (p == s) {
		*why = "prefix length is not a number";
		return -EINVAL;
	}
	if (*p != '\0') {
		*why = "trailing characters after the prefix length";
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int access_parse_cidr(const char *s, struct cidr *out, const char **why)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash;
	size_t hlen;
	struct cidr c = {0};
	int r;

	if (!s || *s == '\0') {
		*why = "empty address";
		return -EINVAL;
	}
	slash = strchr(s, '/');
	hlen = slash ? (size_t)(slash - s) : strlen(s);
	if (hlen == 0) {
		*why = "missing address before '/'";
		return -EINVAL;
	}
	if (hlen >= sizeof(host)) {
		*why = "not an IPv4 or IPv6 address";
		return -EINVAL;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, c.addr) == 1)
		c.family = AF_INET;
	else if (inet_pton(AF_INET6, host, c.addr) == 1)
		c.family = AF_INET6;
	else {
		*why = "not an IPv4 or IPv6 address";
		return -EINVAL;
	}

	c.prefix = family_bits(c.family);
	if (slash) {
		r = parse_prefix(slash + 1, &c.prefix, why);
		if (r < 0)
			return r;
		if (c.prefix > family_bits(c.family)) {
			*why = c.family == AF_INET ? "prefix length over 32 for IPv4"
						   : "prefix length over 128 for IPv6";
			return -EINVAL;
		}
	}
	if (host_bits_set(c.addr, c.prefix, family_bits(c.family))) {
		*why = "address has bits set beyond the prefix length";
		return -EINVAL;
	}

	/* Peers arrive unmapped or are matched as IPv4, so a mapped rule must
	 * be an IPv4 rule to ever match. */
	if (c.family == AF_INET6 && c.prefix >= MAPPED_PREFIX &&
	    memcmp(c.addr, mapped_head, sizeof(mapped_head)) == 0) {
		c.family = AF_INET;
		c.prefix -= MAPPED_PREFIX;
		memmove(c.addr, c.addr + 12, 4);
		memset(c.addr + 4, 0, 12);
	}
	*out = c;
	return 0;
}

/* The peer's family and address bytes, a mapped IPv6 address as IPv4.
 * Returns NULL for any other family. */
static const uint8_t *peer_bytes(const struct sockaddr *sa, int *family)
{
	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		return (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			*family = AF_INET;
			return a->s6_addr + 12;
		}
		*family = AF_INET6;
		return a->s6_addr;
	}
	return NULL;
}

static bool rule_match(const struct cidr *c, int family, const uint8_t *bytes)
{
	return c->family == family && c->prefix <= family_bits(family) &&
	       prefix_equal(c->addr, bytes, c->prefix);
}

bool access_cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	int family;
	const uint8_t *bytes = peer_bytes(sa, &family);

	return bytes && rule_match(c, family, bytes);
}

/* The first rule of the list that matches, or NULL. */
static const struct cidr *list_match(const struct cidr *list, size_t n, int family,
				     const uint8_t *bytes)
{
	for (size_t i = 0; i < n; i++)
		if (rule_match(&list[i], family, bytes))
			return &list[i];
	return NULL;
}

enum access_verdict access_check_rule(const struct access_rules *r, const struct sockaddr *sa,
				      const struct cidr **rule)
{
	int family;
	const uint8_t *bytes = peer_bytes(sa, &family);
	const struct cidr *hit = NULL;
	enum access_verdict v = ACCESS_OK;

	if (!bytes)
		v = r->n_allow ? ACCESS_NOT_ALLOWED : ACCESS_OK;
	else if ((hit = list_match(r->deny, r->n_deny, family, bytes)))
		v = ACCESS_DENIED;
	else if (r->n_allow && !(hit = list_match(r->allow, r->n_allow, family, bytes)))
		v = ACCESS_NOT_ALLOWED;
	if (rule)
		*rule = hit;
	return v;
}

enum access_verdict access_check(const struct access_rules *r, const struct sockaddr *sa)
{
	return access_check_rule(r, sa, NULL);
}

/* One realloc per rule: lists are short and built once per config load,
 * and an exact-size array is safe for callers that copy it. */
int access_list_add(struct cidr **list, size_t *n, const struct cidr *c)
{
	struct cidr copy = *c; /* c may point into *list */
	struct cidr *grown;

	if (*n >= SIZE_MAX / sizeof(**list) - 1)
		return -ENOMEM;
	grown = realloc(*list, (*n + 1) * sizeof(**list));
	if (!grown)
		return -ENOMEM;
	grown[(*n)++] = copy;
	*list = grown;
	return 0;
}

int access_cidr_format(const struct cidr *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	int w;

	if (c->family != AF_INET && c->family != AF_INET6)
		return -EAFNOSUPPORT;
	if (!inet_ntop(c->family, c->addr, host, sizeof(host)))
		return -errno;
	w = snprintf(buf, len, "%s/%u", host, c->prefix);
	if (w < 0 || (size_t)w >= len)
		return -ENOSPC;
	return 0;
}

void access_rules_free(struct access_rules *r)
{
	free(r->allow);
	free(r->deny);
	*r = (struct access_rules){0};
}
