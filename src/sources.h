/* The master's per-source accounting: live workers and connection rate per
 * source, a source being the peer's address cut to a prefix
 * (source_prefix_v4, source_prefix_v6), so that one host holding many
 * addresses (an IPv6 /64) counts as one. A hash table, O(1) per accept. */
#ifndef ECHOD_SOURCES_H
#define ECHOD_SOURCES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sources_entry; /* private */

struct sources {
	struct sources_entry *tab; /* open addressing with tombstones */
	size_t cap;		   /* power of two */
	size_t n;		   /* live entries */
	size_t used;		   /* live plus tombstones */
	unsigned prefix4;	   /* 1..32 */
	unsigned prefix6;	   /* 1..128 */
};

/* Empty table grouping addresses by the given prefix lengths (out of range
 * is -EINVAL). Returns 0 or -errno. */
int sources_init(struct sources *s, unsigned prefix4, unsigned prefix6);
void sources_free(struct sources *s);

/* A worker for sa's source started or ended. IPv4-mapped IPv6 counts as
 * IPv4; anything but AF_INET/AF_INET6 is -EAFNOSUPPORT. inc returns 0 or
 * -errno. */
int sources_inc(struct sources *s, const struct sockaddr *sa);
void sources_dec(struct sources *s, const struct sockaddr *sa);

/* Live workers of sa's source. */
unsigned sources_count(const struct sources *s, const struct sockaddr *sa);

/* The connection rate rule, one connection per interval_usec on average
 * with bursts of up to burst (at least 1) at once, as a generic cell rate
 * algorithm: one timestamp per source. Returns 1 when a connection at now
 * is within the rate (and counts it), 0 when it is over, or -errno. */
int sources_rate_take(struct sources *s, const struct sockaddr *sa, uint64_t now,
		      uint64_t interval_usec, unsigned burst);

/* For the debug log, with the same interval and burst: how many
 * connections the rate rule would admit from sa's source at now, at once
 * (0..burst). Changes nothing. */
unsigned sources_rate_left(const struct sources *s, const struct sockaddr *sa, uint64_t now,
			   uint64_t interval_usec, unsigned burst);

/* sa's source as the table groups it: "192.0.2.0/24", "2001:db8::/64".
 * Returns 0, -EAFNOSUPPORT or -ENOSPC (ADDR_STRLEN is enough). */
int sources_format(const struct sources *s, const struct sockaddr *sa, char *buf, size_t len);

/* Forgets the sources that have no live worker and whose rate allowance is
 * whole again; the master calls it now and then, which bounds the table by
 * the sources seen lately. Returns how many were forgotten. */
size_t sources_expire(struct sources *s, uint64_t now);

#endif
