/* The master's table of live workers: pid -> peer and start time, a hash
 * table so that a lookup stays O(1) at 10,000 workers; and, kept in step,
 * the per-source accounting (sources.h). A worker's connection counts
 * against the limits until the worker reports it closed (or is reaped, if
 * its report never came): a client that reconnects the moment it sees the
 * close must find its slot free, even while the old worker is still on its
 * way out. Both live in mem_master_alloc
 * memory, which workers do not have. */
#ifndef ECHOD_CHILDREN_H
#define ECHOD_CHILDREN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sources.h"

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
	uint16_t local_port;   /* the listener's, for a record the worker cannot write */
	bool closed;	       /* its report came: it only exits now */
};

struct children {
	struct child *slots; /* open addressing by pid; pid 0 = empty */
	size_t cap;	     /* power of two */
	size_t n;
	size_t open;	    /* entries not closed */
	struct sources src; /* the open connections' sources */
};

/* Empty table, sources being whole addresses (/32, /128). Returns 0 or
 * -ENOMEM. */
int children_init(struct children *t);
void children_free(struct children *t);

/* Groups sources by these prefix lengths from now on, recounting the live
 * workers (rate state starts afresh). On failure nothing changed. Returns 0
 * or -errno (-EINVAL for a length out of range). */
int children_set_prefixes(struct children *t, unsigned prefix4, unsigned prefix6);

/* Records a new worker for peer (unmapped first), accepted on local_port;
 * grows as needed. Returns 0,
 * -EEXIST for a pid already present, or -ENOMEM. */
int children_add(struct children *t, pid_t pid, const struct sockaddr *peer, unsigned local_port,
		 uint64_t start_usec);

/* Removes pid, copying its entry to *out (may be NULL). Returns 0 or -ENOENT
 * (not ours: e.g. a helper that is no worker). */
int children_remove(struct children *t, pid_t pid, struct child *out);

/* Marks the connection of pid, started at start_usec, closed: it no
 * longer counts against the limits. The start time tells a late report
 * from one of a reaped worker whose pid was reused. Returns 0, -ENOENT
 * (none such) or -EALREADY. */
int children_close(struct children *t, pid_t pid, uint64_t start_usec);

/* Workers not reaped yet, closed or not: the processes a drain waits for. */
static inline size_t children_count(const struct children *t)
{
	return t->n;
}

/* Connections open: what max_connections limits. */
static inline size_t children_open(const struct children *t)
{
	return t->open;
}

/* Sources tracked: those with live workers, and those whose rate state
 * (sources_rate_take) has not run out yet. */
static inline size_t children_sources(const struct children *t)
{
	return t->src.n;
}

/* Open connections of sa's source (port ignored, mapped IPv6 counted as IPv4). */
static inline unsigned children_source_count(const struct children *t, const struct sockaddr *sa)
{
	return sources_count(&t->src, sa);
}

/* Calls fn for every live worker; fn must not modify the table. */
void children_foreach(const struct children *t, void (*fn)(const struct child *c, void *ud),
		      void *ud);

#endif
