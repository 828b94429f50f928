/* Access rules: allow/deny lists of CIDR prefixes, IPv4 and IPv6. */
#ifndef ECHOD_ACCESS_H
#define ECHOD_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
	int family;	  /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network order; only the first 4 bytes for AF_INET */
	unsigned prefix;  /* 0..32 or 0..128 */
};

struct access_rules {
	struct cidr *allow;
	size_t n_allow;
	struct cidr *deny;
	size_t n_deny;
};

enum access_verdict {
	ACCESS_OK = 0,
	ACCESS_DENIED,	    /* matched a deny rule */
	ACCESS_NOT_ALLOWED, /* allow rules exist and none matched */
};

/* "192.0.2.0/24", "2001:db8::/32", or a bare address (a /32 or /128). Host
 * bits beyond the prefix are an error, as in "192.0.2.1/24", because such a
 * rule usually hides a typo. An IPv4-mapped IPv6 prefix (::ffff:0:0/96 and
 * longer) becomes the equivalent IPv4 rule. Returns 0 or -EINVAL with a short
 * reason in *why (a static string). */
int access_parse_cidr(const char *s, struct cidr *out, const char **why);

/* Does the address fall into the prefix? IPv4-mapped IPv6 addresses are
 * matched as IPv4. */
bool access_cidr_match(const struct cidr *c, const struct sockaddr *sa);

/* Deny wins over allow; with no allow rules everything not denied is OK. */
enum access_verdict access_check(const struct access_rules *r, const struct sockaddr *sa);

/* The same, and the rule that decided in *rule: the deny rule that
 * matched, the allow rule that let it in, or NULL (no rules, or allow
 * rules of which none matched). For the debug log: the first match of a
 * list, as the check itself stops there. */
enum access_verdict access_check_rule(const struct access_rules *r, const struct sockaddr *sa,
				      const struct cidr **rule);

/* Appends a copy of *c to the list; returns 0 or -ENOMEM. */
int access_list_add(struct cidr **list, size_t *n, const struct cidr *c);

/* "192.0.2.0/24"; buf should hold 50 bytes. Returns 0 or -errno. */
int access_cidr_format(const struct cidr *c, char *buf, size_t len);

void access_rules_free(struct access_rules *r);

#endif
