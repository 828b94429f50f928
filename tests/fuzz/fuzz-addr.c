/* libFuzzer target for addr_parse_listen (addr.h) and access_parse_cidr
 * (access.h). The input, as a C string, goes to both. A refusal must say
 * why; what is accepted must be well formed, format back to text that
 * parses to the same value, and, for a prefix, match the addresses inside
 * it and not the one just outside. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include "access.h"
#include "addr.h"
#include "fuzz.h"

/* Documented in access.h as the room access_cidr_format needs. */
#define CIDR_STRLEN 50

static const uint8_t mapped_head[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void check_listen_shape(const struct addr *a, const char *s)
{
	struct sockaddr_in6 sin6;
	unsigned port = addr_port((const struct sockaddr *)&a->ss);

	FUZZ_CHECK(port >= 1 && port <= 65535, "\"%s\": port %u", s, port);
	if (a->ss.ss_family == AF_INET) {
		FUZZ_CHECK(a->len == sizeof(struct sockaddr_in), "\"%s\": IPv4 length %u", s,
			   (unsigned)a->len);
		return;
	}
	FUZZ_CHECK(a->ss.ss_family == AF_INET6 && a->len == sizeof(sin6),
		   "\"%s\": family %d, length %u", s, a->ss.ss_family, (unsigned)a->len);
	memcpy(&sin6, &a->ss, sizeof(sin6));
	FUZZ_CHECK(!IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr),
		   "\"%s\": a V6ONLY socket cannot bind a mapped address", s);
	FUZZ_CHECK(IN6_IS_ADDR_LINKLOCAL(&sin6.sin6_addr) == (sin6.sin6_scope_id != 0),
		   "\"%s\": scope %u; only a link-local address has one, and it must", s,
		   (unsigned)sin6.sin6_scope_id);
}

/* "*:PORT" is 0.0.0.0 and [::] on that port. */
static void check_wildcard(const struct addr out[2], const char *s)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	FUZZ_CHECK(out[0].ss.ss_family == AF_INET && out[1].ss.ss_family == AF_INET6,
		   "\"%s\": families %d, %d", s, out[0].ss.ss_family, out[1].ss.ss_family);
	memcpy(&sin, &out[0].ss, sizeof(sin));
	memcpy(&sin6, &out[1].ss, sizeof(sin6));
	FUZZ_CHECK(sin.sin_addr.s_addr == htonl(INADDR_ANY) &&
		       IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr) && sin.sin_port == sin6.sin6_port,
		   "\"%s\" is not both wildcards on one port", s);
}

static void check_listen(const char *s)
{
	char text[ADDR_STRLEN], again[ADDR_STRLEN];
	struct addr out[2], back[2];
	const char *why = NULL;
	int n = addr_parse_listen(s, out, &why);
	int r;

	if (n < 0) {
		FUZZ_CHECK(n == -EINVAL && why && *why, "addr_parse_listen(\"%s\") = %d, why %s", s,
			   n, why ? why : "(not set)");
		return;
	}
	FUZZ_CHECK((n == 2) == (strncmp(s, "*:", 2) == 0) && (n == 1 || n == 2),
		   "addr_parse_listen(\"%s\") = %d", s, n);
	if (n == 2)
		check_wildcard(out, s);
	for (int i = 0; i < n; i++) {
		check_listen_shape(&out[i], s);
		r = addr_format((const struct sockaddr *)&out[i].ss, text, sizeof(text));
		FUZZ_CHECK(r == 0, "addr_format of \"%s\" [%d] = %d", s, i, r);
		why = NULL;
		r = addr_parse_listen(text, back, &why);
		FUZZ_CHECK(r == 1 && addr_equal(&out[i], &back[0]),
			   "\"%s\" [%d] formats as \"%s\", which parses to %d (%s)%s", s, i, text,
			   r, why ? why : "", r == 1 ? ", another address" : "");
		r = addr_format((const struct sockaddr *)&back[0].ss, again, sizeof(again));
		FUZZ_CHECK(r == 0 && strcmp(text, again) == 0,
			   "\"%s\" formats as \"%s\", then as \"%s\"", s, text, again);
	}
}

static bool bit_set(const uint8_t *a, unsigned i)
{
	return (a[i / 8] >> (7 - i % 8)) & 1;
}

static void flip_bit(uint8_t *a, unsigned i)
{
	a[i / 8] ^= (uint8_t)(0x80 >> (i % 8));
}

/* A peer at the address whose bytes are a, of the rule's family; for IPv4
 * also the same peer as seen through a dual-stack socket. */
static void peer(int family, const uint8_t *a, struct sockaddr_storage *ss,
		 struct sockaddr_storage *mapped)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

	memset(ss, 0, sizeof(*ss));
	memset(mapped, 0, sizeof(*mapped));
	if (family == AF_INET) {
		memcpy(&sin.sin_addr, a, 4);
		memcpy(ss, &sin, sizeof(sin));
		memcpy(sin6.sin6_addr.s6_addr, mapped_head, sizeof(mapped_head));
		memcpy(sin6.sin6_addr.s6_addr + 12, a, 4);
	} else {
		memcpy(sin6.sin6_addr.s6_addr, a, 16);
		memcpy(ss, &sin6, sizeof(sin6));
	}
	memcpy(mapped, &sin6, sizeof(sin6));
}

/* A peer at a (of the rule's family) falls into the rule or not as want
 * says, seen directly and, for an IPv4 rule, through a dual-stack socket.
 * Deny wins over allow; allow refuses the rest. An IPv6 rule never matches
 * an IPv4-mapped peer: such a peer is matched as the IPv4 client it is. */
static void check_peer(const struct cidr *c, const uint8_t *a, bool want, const char *s,
		       const char *which)
{
	struct cidr rule = *c;
	struct access_rules both = {.allow = &rule, .n_allow = 1, .deny = &rule, .n_deny = 1};
	struct access_rules allow_only = {.allow = &rule, .n_allow = 1};
	struct sockaddr_storage ss, mapped;
	const struct sockaddr *sa = (const struct sockaddr *)&ss;
	bool v4 = c->family == AF_INET;

	if (!v4 && memcmp(a, mapped_head, sizeof(mapped_head)) == 0)
		want = false;
	peer(c->family, a, &ss, &mapped);
	FUZZ_CHECK(access_cidr_match(c, sa) == want &&
		       (!v4 || access_cidr_match(c, (const struct sockaddr *)&mapped) == want),
		   "\"%s\" %s its %s address", s, want ? "does not match" : "matches", which);
	FUZZ_CHECK(access_check(&both, sa) == (want ? ACCESS_DENIED : ACCESS_NOT_ALLOWED) &&
		       access_check(&allow_only, sa) == (want ? ACCESS_OK : ACCESS_NOT_ALLOWED),
		   "\"%s\": access_check is wrong about its %s address", s, which);
}

/* The first and last addresses of the prefix are in it; with a shorter
 * prefix, flipping its last bit leaves it. */
static void check_matching(const struct cidr *c, unsigned bits, const char *s)
{
	uint8_t a[16];

	memcpy(a, c->addr, sizeof(a));
	check_peer(c, a, true, s, "first");
	for (unsigned i = c->prefix; i < bits; i++)
		flip_bit(a, i);
	check_peer(c, a, true, s, "last");
	if (c->prefix == 0)
		return;
	flip_bit(a, c->prefix - 1);
	check_peer(c, a, false, s, "outside");
}

static void check_cidr(const char *s)
{
	char text[CIDR_STRLEN];
	struct cidr c, back;
	const char *why = NULL;
	int r = access_parse_cidr(s, &c, &why);
	unsigned bits;

	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && why && *why, "access_parse_cidr(\"%s\") = %d, why %s", s,
			   r, why ? why : "(not set)");
		return;
	}
	FUZZ_CHECK(r == 0 && (c.family == AF_INET || c.family == AF_INET6),
		   "access_parse_cidr(\"%s\") = %d, family %d", s, r, c.family);
	bits = c.family == AF_INET ? 32 : 128;
	FUZZ_CHECK(c.prefix <= bits, "\"%s\": prefix %u", s, c.prefix);
	for (unsigned i = c.prefix; i < 128; i++)
		FUZZ_CHECK(!bit_set(c.addr, i), "\"%s\": bit %u is set beyond /%u", s, i, c.prefix);
	FUZZ_CHECK(c.family == AF_INET || c.prefix < 96 ||
		       memcmp(c.addr, mapped_head, sizeof(mapped_head)) != 0,
		   "\"%s\": an IPv4-mapped prefix must become an IPv4 rule", s);

	r = access_cidr_format(&c, text, sizeof(text));
	FUZZ_CHECK(r == 0, "access_cidr_format of \"%s\" = %d", s, r);
	why = NULL;
	r = access_parse_cidr(text, &back, &why);
	FUZZ_CHECK(r == 0 && back.family == c.family && back.prefix == c.prefix &&
		       memcmp(back.addr, c.addr, sizeof(c.addr)) == 0,
		   "\"%s\" formats as \"%s\", which parses to %d (%s)%s", s, text, r,
		   why ? why : "", r == 0 ? ", another prefix" : "");
	check_matching(&c, bits, s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstring(data, size);

	check_listen(s);
	check_cidr(s);
	free(s);
	return 0;
}
