/* Open addressing with linear probing; deletions leave tombstones, and the
 * table rebuilds itself before they pile up. */
#include "sources.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "addr.h"
#include "mem.h"

#define SOURCES_INITIAL_CAP 64

enum { SOURCES_EMPTY, SOURCES_LIVE, SOURCES_TOMB };

struct sources_key {
	sa_family_t family;
	uint8_t addr[16]; /* IPv4 in the first 4 bytes; bits past the prefix zero */
};

struct sources_entry {
	struct sources_key key;
	uint8_t state;
	unsigned count; /* live workers */
	uint64_t tat;	/* rate: when the allowance is whole again; 0 = never used */
};

/* Peers choose their source address (an IPv6 /64 holds billions), so the
 * hash is keyed with a secret: no peer can then pick addresses that share
 * one probe chain and make every accept slow. */
static uint64_t sources_seed[2];
static bool sources_seeded;

static uint64_t sources_rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void sources_sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = sources_rotl(v[1], 13) ^ v[0];
	v[0] = sources_rotl(v[0], 32);
	v[2] += v[3];
	v[3] = sources_rotl(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = sources_rotl(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = sources_rotl(v[1], 17) ^ v[2];
	v[2] = sources_rotl(v[2], 32);
}

/* SipHash-2-4 over the key as three 64-bit words. */
static uint64_t sources_hash(const struct sources_key *k)
{
	uint64_t v[4] = {
	    sources_seed[0] ^ 0x736f6d6570736575ULL,
	    sources_seed[1] ^ 0x646f72616e646f6dULL,
	    sources_seed[0] ^ 0x6c7967656e657261ULL,
	    sources_seed[1] ^ 0x7465646279746573ULL,
	};
	uint64_t m[4];

	memcpy(&m[0], k->addr, 8);
	memcpy(&m[1], k->addr + 8, 8);
	m[2] = k->family;
	m[3] = (uint64_t)24 << 56;
	for (int i = 0; i < 4; i++) {
		v[3] ^= m[i];
		sources_sip_round(v);
		sources_sip_round(v);
		v[0] ^= m[i];
	}
	v[2] ^= 0xff;
	for (int i = 0; i < 4; i++)
		sources_sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* The source of a peer: its address (IPv4-mapped made IPv4) cut to the
 * prefix of its family; port and IPv6 scope are not part of it. */
static int sources_key_of(const struct sources *s, const struct sockaddr *sa, struct sources_key *k)
{
	struct addr a;
	unsigned prefix, len;
	int r = addr_ip_from(&a, sa);

	if (r < 0)
		return r;
	memset(k, 0, sizeof(*k));
	k->family = a.ss.ss_family;
	if (k->family == AF_INET) {
		memcpy(k->addr, &((const struct sockaddr_in *)(const void *)&a.ss)->sin_addr, 4);
		prefix = s->prefix4;
		len = 4;
	} else {
		memcpy(k->addr, &((const struct sockaddr_in6 *)(const void *)&a.ss)->sin6_addr, 16);
		prefix = s->prefix6;
		len = 16;
	}
	for (unsigned i = prefix / 8; i < len; i++)
		k->addr[i] &= i == prefix / 8 ? (uint8_t)(0xff00u >> (prefix % 8)) : 0;
	return 0;
}

static bool sources_key_equal(const struct sources_key *a, const struct sources_key *b)
{
	return a->family == b->family && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Index of the live entry for k, or SIZE_MAX. */
static size_t sources_find(const struct sources *s, const struct sources_key *k)
{
	size_t mask = s->cap - 1;

	for (size_t i = sources_hash(k) & mask;; i = (i + 1) & mask) {
		const struct sources_entry *e = &s->tab[i];

		if (e->state == SOURCES_EMPTY)
			return SIZE_MAX;
		if (e->state == SOURCES_LIVE && sources_key_equal(&e->key, k))
			return i;
	}
}

/* For a key known to be absent: the first slot not live on its chain. */
static struct sources_entry *sources_slot(struct sources_entry *tab, size_t cap,
					  const struct sources_key *k)
{
	size_t mask = cap - 1, i = sources_hash(k) & mask;

	while (tab[i].state == SOURCES_LIVE)
		i = (i + 1) & mask;
	return &tab[i];
}

/* Rebuilds at cap slots without tombstones. */
static int sources_rehash(struct sources *s, size_t cap)
{
	struct sources_entry *tab = mem_master_alloc(cap * sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++)
		if (s->tab[i].state == SOURCES_LIVE)
			*sources_slot(tab, cap, &s->tab[i].key) = s->tab[i];
	mem_master_free(s->tab, s->cap * sizeof(*s->tab));
	s->tab = tab;
	s->cap = cap;
	s->used = s->n;
	return 0;
}

/* Under 1/8 full after a peak, the table shrinks to at most 1/4 full, so
 * the master's memory comes back down; without memory it stays as is. */
static void sources_maybe_shrink(struct sources *s)
{
	size_t cap = s->cap;

	if (cap <= SOURCES_INITIAL_CAP || s->n * 8 >= cap)
		return;
	while (cap / 2 >= SOURCES_INITIAL_CAP && s->n * 4 <= cap / 2)
		cap /= 2;
	(void)sources_rehash(s, cap);
}

/* The live entry for k, added (count 0, rate unused) if absent; NULL when
 * out of memory. */
static struct sources_entry *sources_get(struct sources *s, const struct sources_key *k)
{
	size_t i = sources_find(s, k);
	struct sources_entry *e;

	if (i != SIZE_MAX)
		return &s->tab[i];
	/* Past 5/8 full probe chains get long: rebuild, doubling only when
	 * live entries alone fill half. */
	if ((s->used + 1) * 8 > s->cap * 5 &&
	    sources_rehash(s, (s->n + 1) * 2 > s->cap ? s->cap * 2 : s->cap) < 0)
		return NULL;
	e = sources_slot(s->tab, s->cap, k);
	if (e->state == SOURCES_EMPTY)
		s->used++;
	*e = (struct sources_entry){.key = *k, .state = SOURCES_LIVE};
	s->n++;
	return e;
}

static void sources_drop(struct sources *s, struct sources_entry *e)
{
	e->state = SOURCES_TOMB;
	s->n--;
}

int sources_init(struct sources *s, unsigned prefix4, unsigned prefix6)
{
	*s = (struct sources){0};
	if (prefix4 < 1 || prefix4 > 32 || prefix6 < 1 || prefix6 > 128)
		return -EINVAL;
	if (!sources_seeded) {
		/* Fails only before the kernel's generator is ready; a zero key
		 * still spreads addresses, it only loses the defence above. */
		if (getrandom(sources_seed, sizeof(sources_seed), GRND_NONBLOCK) !=
		    (ssize_t)sizeof(sources_seed))
			memset(sources_seed, 0, sizeof(sources_seed));
		sources_seeded = true;
	}
	s->tab = mem_master_alloc(SOURCES_INITIAL_CAP * sizeof(*s->tab));
	if (!s->tab)
		return -ENOMEM;
	s->cap = SOURCES_INITIAL_CAP;
	s->prefix4 = prefix4;
	s->prefix6 = prefix6;
	return 0;
}

void sources_free(struct sources *s)
{
	mem_master_free(s->tab, s->cap * sizeof(*s->tab));
	*s = (struct sources){0};
}

/* sa's live entry, added if absent. Returns 0 or -errno. */
static int sources_entry(struct sources *s, const struct sockaddr *sa, struct sources_entry **e)
{
	struct sources_key k;
	int r = sources_key_of(s, sa, &k);

	if (r < 0)
		return r;
	*e = sources_get(s, &k);
	return *e ? 0 : -ENOMEM;
}

int sources_inc(struct sources *s, const struct sockaddr *sa)
{
	struct sources_entry *e;
	int r = sources_entry(s, sa, &e);

	if (r == 0)
		e->count++;
	return r;
}

void sources_dec(struct sources *s, const struct sockaddr *sa)
{
	struct sources_key k;
	size_t i;

	if (sources_key_of(s, sa, &k) < 0 || (i = sources_find(s, &k)) == SIZE_MAX ||
	    s->tab[i].count == 0)
		return;
	/* An entry that holds rate state stays until sources_expire. */
	if (--s->tab[i].count == 0 && s->tab[i].tat == 0) {
		sources_drop(s, &s->tab[i]);
		sources_maybe_shrink(s);
	}
}

unsigned sources_count(const struct sources *s, const struct sockaddr *sa)
{
	struct sources_key k;
	size_t i;

	if (sources_key_of(s, sa, &k) < 0 || (i = sources_find(s, &k)) == SIZE_MAX)
		return 0;
	return s->tab[i].count;
}

int sources_rate_take(struct sources *s, const struct sockaddr *sa, uint64_t now,
		      uint64_t interval_usec, unsigned burst)
{
	struct sources_entry *e;
	uint64_t tat, tolerance;
	int r = sources_entry(s, sa, &e);

	if (r < 0)
		return r;
	/* tat runs ahead of now by interval_usec per connection and catches up
	 * with time; more than burst - 1 intervals ahead is over the rate. */
	tat = e->tat > now ? e->tat : now;
	tolerance = (uint64_t)(burst ? burst - 1 : 0) * interval_usec;
	if (tat - now > tolerance)
		return 0;
	e->tat = tat + interval_usec;
	/* 0 means "never used": a clock at 0 must not make it look so */
	if (e->tat == 0)
		e->tat = 1;
	return 1;
}

unsigned sources_rate_left(const struct sources *s, const struct sockaddr *sa, uint64_t now,
			   uint64_t interval_usec, unsigned burst)
{
	struct sources_key k;
	size_t i;
	uint64_t ahead, room;

	if (burst == 0)
		burst = 1;
	if (sources_key_of(s, sa, &k) < 0 || (i = sources_find(s, &k)) == SIZE_MAX ||
	    s->tab[i].tat <= now || interval_usec == 0)
		return burst;
	/* What sources_rate_take admits: tat may run up to burst intervals
	 * ahead of now, one interval per connection. */
	ahead = s->tab[i].tat - now;
	room = (uint64_t)burst * interval_usec;
	return ahead >= room ? 0 : (unsigned)((room - ahead) / interval_usec);
}

int sources_format(const struct sources *s, const struct sockaddr *sa, char *buf, size_t len)
{
	struct sources_key k;
	char host[INET6_ADDRSTRLEN];
	int r = sources_key_of(s, sa, &k), w;

	if (r < 0)
		return r;
	if (!inet_ntop(k.family, k.addr, host, sizeof(host)))
		return -errno;
	w = snprintf(buf, len, "%s/%u", host, k.family == AF_INET ? s->prefix4 : s->prefix6);
	return w < 0 || (size_t)w >= len ? -ENOSPC : 0;
}

size_t sources_expire(struct sources *s, uint64_t now)
{
	size_t n = 0;

	for (size_t i = 0; i < s->cap; i++) {
		struct sources_entry *e = &s->tab[i];

		if (e->state == SOURCES_LIVE && e->count == 0 && e->tat <= now) {
			sources_drop(s, e);
			n++;
		}
	}
	if (n)
		sources_maybe_shrink(s);
	return n;
}
