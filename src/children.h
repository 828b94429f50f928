/* The master's table of live workers: pid -> peer and start time, and a
 * count of live workers per source address for max_connections_per_source.
 * Both are hash tables so that a lookup stays O(1) at 10,000 workers. */
#ifndef ECHOD_CHILDREN_H
#define ECHOD_CHILDREN_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* An IPv4 or IPv6 peer in 28 bytes: sockaddr_storage's 128 would make up
 * most of the table, one entry per worker. */
union child_peer {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct child {
	pid_t pid;
	union child_peer peer; /* IPv4-mapped addresses already unmapped */
	uint64_t start_usec;   /* CLOCK_MONOTONIC */
};

struct children_source; /* per-source count, private */

struct children {
	struct child *slots; /* open addressing by pid; pid 0 = empty */
	size_t cap;	     /* power of two */
	size_t n;
	struct children_source *src; /* open addressing by source address */
	size_t src_cap;
	size_t src_n;	 /* live entries */
	size_t src_used; /* live plus tombstones */
};

/* Empty table. Returns 0 or -ENOMEM. */
int children_init(struct children *t);
void children_free(struct children *t);

/* Records a new worker for peer (unmapped first); grows as needed. Returns 0,
 * -EEXIST for a pid already present, or -ENOMEM. */
int children_add(struct children *t, pid_t pid, const struct sockaddr *peer, uint64_t start_usec);

/* Removes pid, copying its entry to *out (may be NULL). Returns 0 or -ENOENT
 * (not ours: e.g. a helper that is no worker). */
int children_remove(struct children *t, pid_t pid, struct child *out);

static inline size_t children_count(const struct children *t)
{
	return t->n;
}

/* Live workers whose peer has the same address as sa (port ignored, mapped
 * IPv6 counted as IPv4). */
unsigned children_source_count(const struct children *t, const struct sockaddr *sa);

/* Calls fn for every live worker; fn must not modify the table. */
void children_foreach(const struct children *t, void (*fn)(const struct child *c, void *ud),
		      void *ud);

#endif
