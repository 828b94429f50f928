/* Open addressing with linear probing by pid. Deletion shifts entries
 * back, so the table never holds tombstones. Per-source counts are the
 * sources module's. */
#include "children.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

#include "addr.h"
#include "mem.h"

#define CHILDREN_INITIAL_CAP 64

/* At 10,000 workers the pid table has 16,384 slots: 48 bytes each keep it
 * under a megabyte (with sockaddr_storage it was 2.4 MB). */
_Static_assert(sizeof(struct child) <= 48, "struct child grew");

/* Past 5/8 full, linear probing chains get long; doubling leaves 5/16. */
static bool children_over_load(size_t used, size_t cap)
{
	return used * 8 > cap * 5;
}

/* Under 1/8 full after a peak, the table shrinks, so that the master's
 * memory comes back down. */
static bool children_under_load(size_t n, size_t cap)
{
	return cap > CHILDREN_INITIAL_CAP && n * 8 < cap;
}

/* The size to shrink to: the smallest that leaves it at most 1/4 full, well
 * clear of both limits. */
static size_t children_shrunk_cap(size_t n, size_t cap)
{
	while (cap / 2 >= CHILDREN_INITIAL_CAP && n * 4 <= cap / 2)
		cap /= 2;
	return cap;
}

static uint32_t children_pid_hash(pid_t pid)
{
	uint32_t h = (uint32_t)pid;

	/* Pids come in runs; mixing keeps runs from forming clusters. */
	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return h;
}

/* The peer as the table stores it: a copy, IPv4-mapped made IPv4. */
static int children_peer(const struct sockaddr *sa, union child_peer *p)
{
	struct addr a;
	int r = addr_ip_from(&a, sa);

	if (r < 0)
		return r;
	memset(p, 0, sizeof(*p));
	memcpy(p, &a.ss, a.ss.ss_family == AF_INET ? sizeof(p->in) : sizeof(p->in6));
	return 0;
}

/* The slot holding pid, or the empty slot where it would go. */
static size_t children_pid_slot(const struct child *slots, size_t cap, pid_t pid)
{
	size_t mask = cap - 1, i = children_pid_hash(pid) & mask;

	while (slots[i].pid != 0 && slots[i].pid != pid)
		i = (i + 1) & mask;
	return i;
}

static int children_pid_resize(struct children *t, size_t cap)
{
	struct child *slots = mem_master_alloc(cap * sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].pid != 0)
			slots[children_pid_slot(slots, cap, t->slots[i].pid)] = t->slots[i];
	mem_master_free(t->slots, t->cap * sizeof(*t->slots));
	t->slots = slots;
	t->cap = cap;
	return 0;
}

/* Empties slot i and moves later entries of the run back into the hole,
 * so that every entry stays reachable from its home slot without
 * tombstones. */
static void children_pid_delete(struct children *t, size_t i)
{
	size_t mask = t->cap - 1;

	for (size_t j = (i + 1) & mask; t->slots[j].pid != 0; j = (j + 1) & mask) {
		size_t home = children_pid_hash(t->slots[j].pid) & mask;

		/* Movable unless its home lies cyclically in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].pid = 0;
}

int children_init(struct children *t)
{
	int r;

	*t = (struct children){0};
	r = sources_init(&t->src, 32, 128);
	if (r < 0)
		return r;
	t->cap = CHILDREN_INITIAL_CAP;
	t->slots = mem_master_alloc(t->cap * sizeof(*t->slots));
	if (!t->slots) {
		children_free(t);
		return -ENOMEM;
	}
	return 0;
}

void children_free(struct children *t)
{
	mem_master_free(t->slots, t->cap * sizeof(*t->slots));
	sources_free(&t->src);
	*t = (struct children){0};
}

int children_set_prefixes(struct children *t, unsigned prefix4, unsigned prefix6)
{
	struct sources src;
	int r;

	if (prefix4 == t->src.prefix4 && prefix6 == t->src.prefix6)
		return 0;
	r = sources_init(&src, prefix4, prefix6);
	for (size_t i = 0; r == 0 && i < t->cap; i++)
		if (t->slots[i].pid != 0 && !t->slots[i].closed)
			r = sources_inc(&src, &t->slots[i].peer.sa);
	if (r < 0) {
		sources_free(&src);
		return r;
	}
	sources_free(&t->src);
	t->src = src;
	return 0;
}

int children_add(struct children *t, pid_t pid, const struct sockaddr *peer, unsigned local_port,
		 uint64_t start_usec)
{
	struct child c = {.pid = pid, .start_usec = start_usec, .local_port = (uint16_t)local_port};
	size_t i;
	int r;

	if (pid <= 0)
		return -EINVAL;
	r = children_peer(peer, &c.peer);
	if (r < 0)
		return r;
	i = children_pid_slot(t->slots, t->cap, pid);
	if (t->slots[i].pid == pid)
		return -EEXIST;
	if (children_over_load(t->n + 1, t->cap)) {
		r = children_pid_resize(t, t->cap * 2);
		if (r < 0)
			return r;
		i = children_pid_slot(t->slots, t->cap, pid);
	}
	r = sources_inc(&t->src, &c.peer.sa);
	if (r < 0)
		return r;
	t->slots[i] = c;
	t->n++;
	t->open++;
	return 0;
}

int children_close(struct children *t, pid_t pid, uint64_t start_usec)
{
	size_t i;

	if (pid <= 0)
		return -ENOENT;
	i = children_pid_slot(t->slots, t->cap, pid);
	if (t->slots[i].pid != pid || t->slots[i].start_usec != start_usec)
		return -ENOENT;
	if (t->slots[i].closed)
		return -EALREADY;
	sources_dec(&t->src, &t->slots[i].peer.sa);
	t->slots[i].closed = true;
	t->open--;
	return 0;
}

int children_remove(struct children *t, pid_t pid, struct child *out)
{
	size_t i;

	/* pid 0 marks an empty slot: it must never be "found". */
	if (pid <= 0)
		return -ENOENT;
	i = children_pid_slot(t->slots, t->cap, pid);
	if (t->slots[i].pid != pid)
		return -ENOENT;
	if (!t->slots[i].closed) {
		sources_dec(&t->src, &t->slots[i].peer.sa);
		t->open--;
	}
	if (out)
		*out = t->slots[i];
	children_pid_delete(t, i);
	t->n--;
	/* Without memory the bigger table just stays. */
	if (children_under_load(t->n, t->cap))
		(void)children_pid_resize(t, children_shrunk_cap(t->n, t->cap));
	return 0;
}

void children_foreach(const struct children *t, void (*fn)(const struct child *c, void *ud),
		      void *ud)
{
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].pid != 0)
			fn(&t->slots[i], ud);
}
