#include "children.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "peer.h"

/* Fault injection: the tables' mmap fails while fail_mmap is set. Other
 * callers (the C library's own allocator calls its internal mmap, not this
 * symbol) get the system call. */
static bool fail_mmap;
static int mmap_left = -1; /* when >= 0: this many more succeed, then none */

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (fail_mmap || mmap_left == 0) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	if (mmap_left > 0)
		mmap_left--;
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static int add(struct children *t, pid_t pid, const char *ip, unsigned port)
{
	struct sockaddr_storage ss = test_peer(ip, port);

	return children_add(t, pid, (struct sockaddr *)&ss, 0, (uint64_t)pid * 1000);
}

static unsigned count(const struct children *t, const char *ip)
{
	struct sockaddr_storage ss = test_peer(ip, 1);

	return children_source_count(t, (struct sockaddr *)&ss);
}

static void test_add_remove(void)
{
	struct children t;
	struct child c = {0};
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	const struct sockaddr_in *in = &c.peer.in;

	CHECK_INT(children_init(&t), 0);
	CHECK_INT(children_count(&t), 0);
	CHECK_INT(add(&t, 100, "192.0.2.1", 4000), 0);
	CHECK_INT(add(&t, 101, "192.0.2.2", 4001), 0);
	CHECK_INT(children_count(&t), 2);

	/* A pid already present changes nothing. */
	CHECK_INT(add(&t, 100, "192.0.2.3", 4002), -EEXIST);
	CHECK_INT(children_count(&t), 2);
	CHECK_INT(count(&t, "192.0.2.3"), 0);

	/* Not a pid or not an IP peer: refused, nothing recorded. */
	CHECK_INT(add(&t, 0, "192.0.2.1", 1), -EINVAL);
	CHECK_INT(add(&t, -5, "192.0.2.1", 1), -EINVAL);
	CHECK_INT(children_add(&t, 102, (struct sockaddr *)&un, 0, 0), -EAFNOSUPPORT);
	CHECK_INT(children_count(&t), 2);
	CHECK_INT(count(&t, "192.0.2.1"), 1);
	CHECK_INT(children_source_count(&t, (struct sockaddr *)&un), 0);

	CHECK_INT(children_remove(&t, 100, &c), 0);
	CHECK_INT(c.pid, 100);
	CHECK_INT(c.start_usec, 100000);
	CHECK_INT(in->sin_family, AF_INET);
	CHECK_INT(ntohs(in->sin_port), 4000);
	CHECK_INT(ntohl(in->sin_addr.s_addr), 0xc0000201);
	CHECK_INT(children_count(&t), 1);
	CHECK_INT(count(&t, "192.0.2.1"), 0);

	CHECK_INT(children_remove(&t, 100, NULL), -ENOENT);
	CHECK_INT(children_remove(&t, 999, NULL), -ENOENT);
	CHECK_INT(children_remove(&t, 0, NULL), -ENOENT);
	CHECK_INT(children_remove(&t, -1, NULL), -ENOENT);
	CHECK_INT(children_remove(&t, 101, NULL), 0);
	CHECK_INT(children_count(&t), 0);
	CHECK_INT(t.src.n, 0);

	/* A pid can come back once it is gone (the kernel reuses them). */
	CHECK_INT(add(&t, 100, "192.0.2.9", 4000), 0);
	CHECK_INT(children_remove(&t, 100, &c), 0);
	CHECK_INT(ntohl(in->sin_addr.s_addr), 0xc0000209);
	children_free(&t);
	CHECK(t.slots == NULL && t.src.tab == NULL);
}

/* A reported connection stops counting at once; the process stays in the
 * table until reaped. */
static void test_close(void)
{
	struct children t;

	CHECK_INT(children_init(&t), 0);
	CHECK_INT(add(&t, 100, "192.0.2.1", 4000), 0);
	CHECK_INT(add(&t, 101, "192.0.2.1", 4001), 0);
	CHECK_INT(children_open(&t), 2);
	CHECK_INT(count(&t, "192.0.2.1"), 2);

	/* A report from a reaped worker whose pid came back belongs to
	 * nobody: its start time is not the new worker's. */
	CHECK_INT(children_close(&t, 100, 1), -ENOENT);
	CHECK_INT(children_close(&t, 999, 999000), -ENOENT);
	CHECK_INT(children_close(&t, 0, 0), -ENOENT);
	CHECK_INT(children_open(&t), 2);

	CHECK_INT(children_close(&t, 100, 100000), 0);
	CHECK_INT(children_open(&t), 1);
	CHECK_INT(children_count(&t), 2);
	CHECK_INT(count(&t, "192.0.2.1"), 1);
	CHECK_INT(children_close(&t, 100, 100000), -EALREADY);
	CHECK_INT(count(&t, "192.0.2.1"), 1);

	/* Regrouping counts only what is open. */
	CHECK_INT(children_set_prefixes(&t, 24, 64), 0);
	CHECK_INT(count(&t, "192.0.2.77"), 1);

	/* Reaping a closed one does not count it off twice. */
	CHECK_INT(children_remove(&t, 100, NULL), 0);
	CHECK_INT(children_open(&t), 1);
	CHECK_INT(count(&t, "192.0.2.1"), 1);
	CHECK_INT(children_remove(&t, 101, NULL), 0);
	CHECK_INT((int)children_open(&t), 0);
	CHECK_INT(count(&t, "192.0.2.1"), 0);
	CHECK_INT(t.src.n, 0);
	children_free(&t);
}

static void test_sources(void)
{
	struct children t;
	struct child c = {0};
	struct sockaddr_in6 ll = {.sin6_family = AF_INET6};

	CHECK_INT(children_init(&t), 0);
	CHECK_INT(add(&t, 10, "192.0.2.1", 1000), 0);
	CHECK_INT(add(&t, 11, "192.0.2.1", 1001), 0); /* other port, same source */
	CHECK_INT(add(&t, 12, "192.0.2.2", 1000), 0);
	CHECK_INT(add(&t, 13, "::ffff:192.0.2.1", 1002), 0);
	CHECK_INT(add(&t, 14, "2001:db8::1", 1000), 0);
	CHECK_INT(add(&t, 15, "2001:db8::1", 1001), 0);
	CHECK_INT(add(&t, 16, "::c000:201", 1000), 0); /* IPv4-compatible: real IPv6 */
	CHECK_INT(add(&t, 17, "0.0.0.0", 1000), 0);
	CHECK_INT(add(&t, 18, "::", 1000), 0);

	/* A mapped peer and the same IPv4 peer are one source, asked either way. */
	CHECK_INT(count(&t, "192.0.2.1"), 3);
	CHECK_INT(count(&t, "::ffff:192.0.2.1"), 3);
	CHECK_INT(count(&t, "192.0.2.2"), 1);
	CHECK_INT(count(&t, "::ffff:192.0.2.2"), 1);
	CHECK_INT(count(&t, "192.0.2.3"), 0);
	CHECK_INT(count(&t, "2001:db8::1"), 2);
	CHECK_INT(count(&t, "2001:db8::2"), 0);
	CHECK_INT(count(&t, "::c000:201"), 1);
	/* The zero addresses of the two families stay apart. */
	CHECK_INT(count(&t, "0.0.0.0"), 1);
	CHECK_INT(count(&t, "::"), 1);
	CHECK_INT(t.src.n, 6);

	/* The stored peer is the unmapped one, port kept. */
	CHECK_INT(children_remove(&t, 13, &c), 0);
	CHECK_INT(c.peer.sa.sa_family, AF_INET);
	CHECK_INT(ntohs(c.peer.in.sin_port), 1002);
	CHECK_INT(count(&t, "192.0.2.1"), 2);

	/* IPv6 scope ids do not split a source. */
	CHECK_INT(inet_pton(AF_INET6, "fe80::1", &ll.sin6_addr), 1);
	ll.sin6_scope_id = 1;
	CHECK_INT(children_add(&t, 20, (struct sockaddr *)&ll, 0, 0), 0);
	ll.sin6_scope_id = 2;
	CHECK_INT(children_add(&t, 21, (struct sockaddr *)&ll, 0, 0), 0);
	CHECK_INT(children_source_count(&t, (struct sockaddr *)&ll), 2);

	/* A source whose last worker left is gone. */
	CHECK_INT(children_remove(&t, 12, NULL), 0);
	CHECK_INT(count(&t, "192.0.2.2"), 0);
	CHECK_INT(t.src.n, 6);
	CHECK_INT(children_remove(&t, 10, NULL), 0);
	CHECK_INT(children_remove(&t, 11, NULL), 0);
	CHECK_INT(count(&t, "192.0.2.1"), 0);
	CHECK_INT(t.src.n, 5);
	children_free(&t);
}

static void visit(const struct child *c, void *ud)
{
	unsigned *seen = ud;

	CHECK(c->pid > 0 && c->pid <= 2000);
	if (c->pid > 0 && c->pid <= 2000)
		seen[c->pid]++;
}

static void test_foreach(void)
{
	struct children t;
	static unsigned seen[2001];

	CHECK_INT(children_init(&t), 0);
	children_foreach(&t, visit, seen);
	for (pid_t p = 1; p <= 2000; p++)
		CHECK_INT(add(&t, p, "2001:db8::7", (unsigned)p), 0);
	for (pid_t p = 1; p <= 2000; p += 3)
		CHECK_INT(children_remove(&t, p, NULL), 0);
	children_foreach(&t, visit, seen);
	for (pid_t p = 1; p <= 2000; p++)
		CHECK_INT(seen[p], p % 3 == 1 ? 0 : 1);
	CHECK_INT(seen[0], 0);
	children_free(&t);
}

/* Deterministic, so that a failure can be replayed. */
static uint32_t rng_state = 2463534242U;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

#define N_SOURCES 3000

/* The i-th source as a peer: IPv4, its mapped form (the same source) or
 * IPv6, so that every kind of key is hashed and compared. */
static struct sockaddr_storage source_peer(unsigned i, bool mapped)
{
	char ip[64];

	if (i % 3 == 2)
		snprintf(ip, sizeof(ip), "2001:db8:%x::%x", i, i * 7);
	else
		snprintf(ip, sizeof(ip), "%s10.%u.%u.1", mapped ? "::ffff:" : "", i / 256, i % 256);
	return test_peer(ip, 1024 + i);
}

struct ref {
	pid_t pid;
	unsigned src;
};

static bool check_load(const struct children *t)
{
	bool ok = (t->cap & (t->cap - 1)) == 0 && (t->src.cap & (t->src.cap - 1)) == 0 &&
		  t->n * 10 <= t->cap * 7 && t->src.used * 10 <= t->src.cap * 7 &&
		  t->src.n <= t->src.used;

	CHECK(ok);
	return ok;
}

/* 50,000 adds with removals mixed in, checked against a plain array. */
static void test_against_reference(void)
{
	struct children t;
	static struct ref live[50000];
	static unsigned ref_count[N_SOURCES];
	size_t n_live = 0, n_sources = 0, bad = 0;
	struct child c;

	CHECK_INT(children_init(&t), 0);
	for (pid_t pid = 1; pid <= 50000; pid++) {
		/* Pids spread like the kernel's after wrapping: far apart. */
		pid_t p = (pid_t)(((uint32_t)pid * 2654435761U) % 4000000U) + 1;
		unsigned s = rng() % N_SOURCES;
		struct sockaddr_storage ss = source_peer(s, rng() % 2);

		if (children_add(&t, p, (struct sockaddr *)&ss, 0, (uint64_t)p) != 0)
			bad++;
		live[n_live++] = (struct ref){p, s};
		n_sources += ref_count[s]++ == 0;
		if (rng() % 4 == 0) {
			size_t k = rng() % n_live;

			if (children_remove(&t, live[k].pid, &c) != 0 || c.pid != live[k].pid ||
			    c.start_usec != (uint64_t)live[k].pid)
				bad++;
			n_sources -= --ref_count[live[k].src] == 0;
			live[k] = live[--n_live];
		}
		if (pid % 997 == 0 && !check_load(&t))
			break;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(children_count(&t), n_live);
	CHECK_INT(t.src.n, n_sources);
	CHECK(t.cap >= 65536); /* it did grow */
	for (unsigned s = 0; s < N_SOURCES; s++) {
		struct sockaddr_storage v4 = source_peer(s, false), v6 = source_peer(s, true);

		bad += children_source_count(&t, (struct sockaddr *)&v4) != ref_count[s];
		bad += children_source_count(&t, (struct sockaddr *)&v6) != ref_count[s];
	}
	CHECK_INT(bad, 0);
	/* Every live pid is found; then all leave and nothing remains. */
	for (size_t i = 0; i < n_live; i++)
		bad += add(&t, live[i].pid, "192.0.2.1", 1) != -EEXIST;
	while (n_live > 0) {
		size_t k = rng() % n_live;

		bad += children_remove(&t, live[k].pid, NULL) != 0;
		bad += children_remove(&t, live[k].pid, NULL) != -ENOENT;
		live[k] = live[--n_live];
	}
	CHECK_INT(bad, 0);
	CHECK_INT(children_count(&t), 0);
	CHECK_INT(t.src.n, 0);
	children_free(&t);
}

/* Small, crowded tables: removals in every order inside long runs that wrap
 * around the end of the slot array. */
static void test_crowded(void)
{
	size_t bad = 0;

	for (int trial = 0; trial < 3000; trial++) {
		struct children t;
		pid_t pids[40];
		size_t n = 0;

		CHECK_INT(children_init(&t), 0);
		while (n < 40) {
			pid_t p = (pid_t)(rng() % 5000) + 1;

			if (add(&t, p, "192.0.2.1", 1) == 0)
				pids[n++] = p;
		}
		if (trial == 0)
			CHECK_INT(t.cap, 64); /* 40 in 64 slots: no growth hid the runs */
		while (n > 0) {
			size_t k = rng() % n;

			bad += children_remove(&t, pids[k], NULL) != 0;
			pids[k] = pids[--n];
			for (size_t i = 0; i < n; i++)
				bad += add(&t, pids[i], "192.0.2.1", 1) != -EEXIST;
		}
		bad += children_count(&t) != 0 || count(&t, "192.0.2.1") != 0;
		children_free(&t);
	}
	CHECK_INT(bad, 0);
}

/* A long-running master: a million workers come and go, 10,000 live at a
 * time, each from a new source. Neither table may fill up with the dead. */
static void test_churn(void)
{
	struct children t;
	static pid_t ring[10000];
	size_t bad = 0, max_cap = 0, max_src_cap = 0;

	CHECK_INT(children_init(&t), 0);
	for (uint32_t i = 0; i < 1000000; i++) {
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
		size_t slot = i % 10000;

		if (i >= 10000)
			bad += children_remove(&t, ring[slot], NULL) != 0;
		sa.sin6_addr.s6_addr[0] = 0x20;
		memcpy(&sa.sin6_addr.s6_addr[12], &i, sizeof(i));
		ring[slot] = (pid_t)(i % 4000000) + 1;
		bad += children_add(&t, ring[slot], (struct sockaddr *)&sa, 0, i) != 0;
		bad += children_source_count(&t, (struct sockaddr *)&sa) != 1;
		if (i % 50000 == 0 && !check_load(&t))
			break;
		if (i >= 10000) {
			max_cap = t.cap > max_cap ? t.cap : max_cap;
			max_src_cap = t.src.cap > max_src_cap ? t.src.cap : max_src_cap;
		}
	}
	CHECK_INT(bad, 0);
	CHECK_INT(children_count(&t), 10000);
	CHECK_INT(t.src.n, 10000);
	/* 10,000 live entries need 16,384 or 32,768 slots, never more. */
	CHECK(max_cap <= 32768);
	CHECK(max_src_cap <= 32768);
	children_free(&t);
}

static void test_out_of_memory(void)
{
	struct children t;
	pid_t pid;
	int r = 0;

	fail_mmap = true;
	r = children_init(&t);
	fail_mmap = false;
	CHECK_INT(r, -ENOMEM);
	CHECK(t.slots == NULL && t.src.tab == NULL);

	/* Growth of the pid table fails: the new pid is not recorded, the
	 * others are intact, and the next add works. */
	CHECK_INT(children_init(&t), 0);
	for (pid = 1; t.cap == 64; pid++) {
		fail_mmap = true;
		r = add(&t, pid, "192.0.2.1", 1);
		fail_mmap = false;
		if (r != 0)
			break;
	}
	CHECK_INT(r, -ENOMEM);
	CHECK_INT(children_count(&t), (size_t)pid - 1);
	CHECK_INT(count(&t, "192.0.2.1"), (unsigned)pid - 1);
	CHECK_INT(children_remove(&t, pid, NULL), -ENOENT);
	CHECK_INT(add(&t, pid, "192.0.2.1", 1), 0);
	CHECK_INT(count(&t, "192.0.2.1"), (unsigned)pid);
	children_free(&t);

	/* Same for the source table, with a new source per worker. The pid
	 * table is grown first (100 workers of one source stay) so that its
	 * growth does not fail instead. */
	CHECK_INT(children_init(&t), 0);
	for (pid = 1000; pid < 1100; pid++)
		CHECK_INT(add(&t, pid, "198.51.100.1", 1), 0);
	CHECK_INT(t.cap, 256);
	for (pid = 1; t.src.cap == 64; pid++) {
		char ip[32];

		snprintf(ip, sizeof(ip), "192.0.2.%d", pid);
		fail_mmap = true;
		r = add(&t, pid, ip, 1);
		fail_mmap = false;
		if (r != 0)
			break;
	}
	CHECK_INT(r, -ENOMEM);
	CHECK_INT(t.cap, 256);
	CHECK_INT(children_count(&t), (size_t)pid - 1 + 100);
	CHECK_INT(t.src.n, (size_t)pid - 1 + 1);
	CHECK_INT(count(&t, "192.0.2.1"), 1);
	CHECK_INT(children_remove(&t, pid, NULL), -ENOENT);
	CHECK_INT(add(&t, pid, "192.0.2.250", 1), 0);
	CHECK_INT(count(&t, "192.0.2.250"), 1);
	children_free(&t);

	/* A shrink that finds no memory keeps the bigger table, intact. */
	CHECK_INT(children_init(&t), 0);
	for (pid = 1; pid <= 1000; pid++)
		CHECK_INT(add(&t, pid, "192.0.2.7", 1), 0);
	fail_mmap = true;
	for (pid = 1; pid <= 990; pid++)
		CHECK_INT(children_remove(&t, pid, NULL), 0);
	fail_mmap = false;
	CHECK_INT(t.cap, 2048);
	CHECK_INT(children_count(&t), 10);
	CHECK_INT(count(&t, "192.0.2.7"), 10);
	CHECK_INT(children_remove(&t, 995, NULL), 0);
	CHECK_INT(t.cap, 64); /* shrinks at the next chance */
	CHECK_INT(count(&t, "192.0.2.7"), 9);
	children_free(&t);
}

/* A reload regroups the live workers' sources by new prefixes into a new
 * table; without memory for it, at its first allocation or at a growth, the
 * table in use stays as it was. */
static void test_regroup_out_of_memory(void)
{
	struct children t;
	char ip[32];

	CHECK_INT(children_init(&t), 0);
	for (pid_t pid = 1; pid <= 100; pid++) {
		snprintf(ip, sizeof(ip), "192.0.%d.%d", pid % 2, pid);
		CHECK_INT(add(&t, pid, ip, 1), 0);
	}
	CHECK_INT(t.src.n, 100);

	fail_mmap = true;
	CHECK_INT(children_set_prefixes(&t, 24, 64), -ENOMEM);
	fail_mmap = false;
	CHECK_INT(t.src.prefix4, 32);
	CHECK_INT(t.src.n, 100);
	CHECK_INT(count(&t, "192.0.1.1"), 1);

	CHECK_INT(children_set_prefixes(&t, 24, 64), 0);
	CHECK_INT(t.src.n, 2);
	CHECK_INT(count(&t, "192.0.1.1"), 50);

	/* Back to /32: 100 sources outgrow the new table's first size. */
	mmap_left = 1;
	CHECK_INT(children_set_prefixes(&t, 32, 64), -ENOMEM);
	mmap_left = -1;
	CHECK_INT(t.src.prefix4, 24);
	CHECK_INT(t.src.n, 2);
	CHECK_INT(count(&t, "192.0.0.200"), 50);

	CHECK_INT(children_set_prefixes(&t, 32, 64), 0);
	CHECK_INT(t.src.n, 100);
	CHECK_INT(count(&t, "192.0.1.1"), 1);
	CHECK_INT(count(&t, "192.0.1.2"), 0);
	children_free(&t);
}

/* After a peak of 10,000 workers from 10,000 sources the tables come back
 * to their first size, with every survivor still found. */
static void test_shrink(void)
{
	struct children t;
	char ip[32];

	CHECK_INT(children_init(&t), 0);
	for (pid_t pid = 1; pid <= 10000; pid++) {
		snprintf(ip, sizeof(ip), "10.0.%d.%d", pid / 256, pid % 256);
		CHECK_INT(add(&t, pid, ip, 1), 0);
	}
	CHECK(t.cap >= 16384 && t.src.cap >= 16384);
	for (pid_t pid = 1; pid <= 9990; pid++)
		CHECK_INT(children_remove(&t, pid, NULL), 0);
	CHECK_INT(t.cap, 64);
	CHECK_INT(t.src.cap, 64);
	CHECK(check_load(&t));
	for (pid_t pid = 9991; pid <= 10000; pid++) {
		snprintf(ip, sizeof(ip), "10.0.%d.%d", pid / 256, pid % 256);
		CHECK_INT(count(&t, ip), 1);
		CHECK_INT(children_remove(&t, pid, NULL), 0);
	}
	CHECK_INT(children_count(&t), 0);
	children_free(&t);
}

/* The tables are the master's alone: a forked worker does not even have
 * them mapped (so the master's writes after a fork copy nothing). */
static void test_not_inherited(void)
{
	struct children t;
	int status = 0;
	pid_t pid;

	CHECK_INT(children_init(&t), 0);
	CHECK_INT(add(&t, 42, "192.0.2.1", 1), 0);
	pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		_exit(count(&t, "192.0.2.1") == 1 ? 0 : 1); /* faults first */
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
	CHECK_INT(count(&t, "192.0.2.1"), 1);
	children_free(&t);
}

int main(void)
{
	test_add_remove();
	test_close();
	test_sources();
	test_foreach();
	test_against_reference();
	test_crowded();
	test_churn();
	test_out_of_memory();
	test_regroup_out_of_memory();
	test_shrink();
	test_not_inherited();
	return check_done();
}
