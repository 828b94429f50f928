/* Two open-addressing tables with linear probing. The pid table deletes by
 * shifting entries back, so it never holds tombstones; the source table
 * marks tombstones and rebuilds itself before they pile up. */
#include "children.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "addr.h"

#define CHILDREN_INITIAL_CAP 64

/* At 10,000 workers the pid table has 16,384 slots: 40 bytes each keep it
 * under a megabyte (with sockaddr_storage it was 2.4 MB). */
_Static_assert(sizeof(struct child) <= 40, "struct child grew");

enum { SOURCE_EMPTY, SOURCE_LIVE, SOURCE_TOMB };

struct children_source_key {
	sa_family_t family;
	uint8_t addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
};

struct children_source {
	struct children_source_key key;
	uint8_t state;
	unsigned count;
};

/* Peers choose their source address (an IPv6 /64 holds billions), so the
 * source hash is keyed with a secret: no peer can then pick addresses that
 * share one probe chain and make every accept slow. */
static uint64_t children_seed[2];
static bool children_seeded;

/* Past 5/8 full, linear probing chains get long; doubling leaves 5/16. */
static bool children_over_load(size_t used, size_t cap)
{
	return used * 8 > cap * 5;
}

/* Under 1/8 full after a peak, a table shrinks, so that the master's memory
 * comes back down. */
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

/* Zeroed memory for a table, outside the heap and left out of every fork
 * (MADV_DONTFORK). Workers never look at these tables; shared with them,
 * each of the master's writes after a fork would be a copy-on-write fault,
 * and each fork would copy their page tables (megabytes at 10,000 workers).
 * Should madvise fail, that is only the cost again, so it is not checked. */
static void *children_mem_alloc(size_t n, size_t size)
{
	void *p = mmap(NULL, n * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, n * size, MADV_DONTFORK);
	return p;
}

static void children_mem_free(void *p, size_t n, size_t size)
{
	if (p)
		munmap(p, n * size);
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

static uint64_t children_rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void children_sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = children_rotl(v[1], 13) ^ v[0];
	v[0] = children_rotl(v[0], 32);
	v[2] += v[3];
	v[3] = children_rotl(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = children_rotl(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = children_rotl(v[1], 17) ^ v[2];
	v[2] = children_rotl(v[2], 32);
}

/* SipHash-2-4 over the key as three 64-bit words. */
static uint64_t children_source_hash(const struct children_source_key *k)
{
	uint64_t v[4] = {
	    children_seed[0] ^ 0x736f6d6570736575ULL,
	    children_seed[1] ^ 0x646f72616e646f6dULL,
	    children_seed[0] ^ 0x6c7967656e657261ULL,
	    children_seed[1] ^ 0x7465646279746573ULL,
	};
	uint64_t m[4];

	memcpy(&m[0], k->addr, 8);
	memcpy(&m[1], k->addr + 8, 8);
	m[2] = k->family;
	m[3] = (uint64_t)24 << 56;
	for (int i = 0; i < 4; i++) {
		v[3] ^= m[i];
		children_sip_round(v);
		children_sip_round(v);
		v[0] ^= m[i];
	}
	v[2] ^= 0xff;
	for (int i = 0; i < 4; i++)
		children_sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* The peer as the table stores it: a copy, IPv4-mapped made IPv4. */
static int children_peer(const struct sockaddr *sa, union child_peer *p)
{
	struct addr a = {0};

	if (sa->sa_family == AF_INET)
		a.len = sizeof(struct sockaddr_in);
	else if (sa->sa_family == AF_INET6)
		a.len = sizeof(struct sockaddr_in6);
	else
		return -EAFNOSUPPORT;
	memcpy(&a.ss, sa, a.len);
	addr_unmap(&a);
	memset(p, 0, sizeof(*p));
	memcpy(p, &a.ss, a.ss.ss_family == AF_INET ? sizeof(p->in) : sizeof(p->in6));
	return 0;
}

/* Port and IPv6 scope are not part of the source. */
static void children_source_key_of(const union child_peer *p, struct children_source_key *k)
{
	memset(k, 0, sizeof(*k));
	k->family = p->sa.sa_family;
	if (k->family == AF_INET)
		memcpy(k->addr, &p->in.sin_addr, 4);
	else
		memcpy(k->addr, &p->in6.sin6_addr, 16);
}

static bool children_key_equal(const struct children_source_key *a,
			       const struct children_source_key *b)
{
	return a->family == b->family && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Index of the live entry for k, or SIZE_MAX. */
static size_t children_source_find(const struct children *t, const struct children_source_key *k)
{
	size_t mask = t->src_cap - 1;

	for (size_t i = children_source_hash(k) & mask;; i = (i + 1) & mask) {
		const struct children_source *s = &t->src[i];

		if (s->state == SOURCE_EMPTY)
			return SIZE_MAX;
		if (s->state == SOURCE_LIVE && children_key_equal(&s->key, k))
			return i;
	}
}

/* For a key known to be absent: the first slot not live on its chain. */
static struct children_source *children_source_slot(struct children_source *tab, size_t cap,
						    const struct children_source_key *k)
{
	size_t mask = cap - 1, i = children_source_hash(k) & mask;

	while (tab[i].state == SOURCE_LIVE)
		i = (i + 1) & mask;
	return &tab[i];
}

/* Rebuilds at cap slots without tombstones. */
static int children_source_rehash(struct children *t, size_t cap)
{
	struct children_source *tab = children_mem_alloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < t->src_cap; i++)
		if (t->src[i].state == SOURCE_LIVE)
			*children_source_slot(tab, cap, &t->src[i].key) = t->src[i];
	children_mem_free(t->src, t->src_cap, sizeof(*t->src));
	t->src = tab;
	t->src_cap = cap;
	t->src_used = t->src_n;
	return 0;
}

static int children_source_inc(struct children *t, const struct children_source_key *k)
{
	size_t i = children_source_find(t, k);
	struct children_source *s;
	int r;

	if (i != SIZE_MAX) {
		t->src[i].count++;
		return 0;
	}
	if (children_over_load(t->src_used + 1, t->src_cap)) {
		/* doubling only when live entries alone fill half */
		r = children_source_rehash(t, (t->src_n + 1) * 2 > t->src_cap ? t->src_cap * 2
									      : t->src_cap);
		if (r < 0)
			return r;
	}
	s = children_source_slot(t->src, t->src_cap, k);
	if (s->state == SOURCE_EMPTY)
		t->src_used++;
	*s = (struct children_source){.key = *k, .state = SOURCE_LIVE, .count = 1};
	t->src_n++;
	return 0;
}

static void children_source_dec(struct children *t, const struct children_source_key *k)
{
	size_t i = children_source_find(t, k);

	if (i != SIZE_MAX && --t->src[i].count == 0) {
		t->src[i].state = SOURCE_TOMB;
		t->src_n--;
		/* Without memory the bigger table just stays. */
		if (children_under_load(t->src_n, t->src_cap))
			(void)children_source_rehash(t, children_shrunk_cap(t->src_n, t->src_cap));
	}
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
	struct child *slots = children_mem_alloc(cap, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].pid != 0)
			slots[children_pid_slot(slots, cap, t->slots[i].pid)] = t->slots[i];
	children_mem_free(t->slots, t->cap, sizeof(*t->slots));
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
	*t = (struct children){0};
	if (!children_seeded) {
		/* Fails only before the kernel's generator is ready; a zero key
		 * still spreads addresses, it only loses the defence above. */
		if (getrandom(children_seed, sizeof(children_seed), GRND_NONBLOCK) !=
		    (ssize_t)sizeof(children_seed))
			memset(children_seed, 0, sizeof(children_seed));
		children_seeded = true;
	}
	t->cap = CHILDREN_INITIAL_CAP;
	t->src_cap = CHILDREN_INITIAL_CAP;
	t->slots = children_mem_alloc(t->cap, sizeof(*t->slots));
	t->src = children_mem_alloc(t->src_cap, sizeof(*t->src));
	if (!t->slots || !t->src) {
		children_free(t);
		return -ENOMEM;
	}
	return 0;
}

void children_free(struct children *t)
{
	children_mem_free(t->slots, t->cap, sizeof(*t->slots));
	children_mem_free(t->src, t->src_cap, sizeof(*t->src));
	*t = (struct children){0};
}

int children_add(struct children *t, pid_t pid, const struct sockaddr *peer, uint64_t start_usec)
{
	struct child c = {.pid = pid, .start_usec = start_usec};
	struct children_source_key k;
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
	children_source_key_of(&c.peer, &k);
	r = children_source_inc(t, &k);
	if (r < 0)
		return r;
	t->slots[i] = c;
	t->n++;
	return 0;
}

int children_remove(struct children *t, pid_t pid, struct child *out)
{
	struct children_source_key k;
	size_t i;

	/* pid 0 marks an empty slot: it must never be "found". */
	if (pid <= 0)
		return -ENOENT;
	i = children_pid_slot(t->slots, t->cap, pid);
	if (t->slots[i].pid != pid)
		return -ENOENT;
	children_source_key_of(&t->slots[i].peer, &k);
	children_source_dec(t, &k);
	if (out)
		*out = t->slots[i];
	children_pid_delete(t, i);
	t->n--;
	/* Without memory the bigger table just stays. */
	if (children_under_load(t->n, t->cap))
		(void)children_pid_resize(t, children_shrunk_cap(t->n, t->cap));
	return 0;
}

unsigned children_source_count(const struct children *t, const struct sockaddr *sa)
{
	union child_peer a;
	struct children_source_key k;
	size_t i;

	if (children_peer(sa, &a) < 0)
		return 0;
	children_source_key_of(&a, &k);
	i = children_source_find(t, &k);
	return i == SIZE_MAX ? 0 : t->src[i].count;
}

void children_foreach(const struct children *t, void (*fn)(const struct child *c, void *ud),
		      void *ud)
{
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].pid != 0)
			fn(&t->slots[i], ud);
}
