/* Accepting connections: admission rules checked before fork, then one
 * forked worker per admitted connection. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "clock.h"
#include "master-debug.h"
#include "master-int.h"

static const char *const master_reject_names[MASTER_REJECT_N] = {
    [MASTER_REJECT_MAX_CONN] = "max_connections",
    [MASTER_REJECT_PER_SOURCE] = "max_connections_per_source",
    [MASTER_REJECT_DENIED] = "denied",
    [MASTER_REJECT_NOT_ALLOWED] = "not_allowed",
    [MASTER_REJECT_FORK] = "fork_failed",
    [MASTER_REJECT_RATE] = "rate_per_source",
    [MASTER_REJECT_NOFILE] = "out_of_descriptors",
};

static const char *master_reject_name(enum master_reject r)
{
	return r < MASTER_REJECT_N ? master_reject_names[r] : "?";
}

int master_pfd_reserve(struct master *m, size_t n)
{
	if (n <= m->pfd_cap)
		return 0;
	struct pollfd *p = realloc(m->pfd, n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	m->pfd = p;
	m->pfd_cap = n;
	return 0;
}

void master_kill_one(const struct child *c, void *sig)
{
	kill(c->pid, *(int *)sig);
}

/* The limits on live workers. */
static enum master_reject master_over_limits(const struct master *m, const struct sockaddr *sa)
{
	if (children_open(&m->kids) >= m->cfg.max_connections)
		return MASTER_REJECT_MAX_CONN;
	if (m->cfg.max_connections_per_source &&
	    children_source_count(&m->kids, sa) >= m->cfg.max_connections_per_source)
		return MASTER_REJECT_PER_SOURCE;
	return MASTER_ADMIT;
}

static enum master_reject master_admit(struct master *m, const struct addr *peer, uint64_t now)
{
	const struct sockaddr *sa = (const struct sockaddr *)&peer->ss;
	const bool debug = log_enabled(LOG_DEBUG);
	const struct cidr *rule = NULL;
	enum access_verdict v = access_check_rule(&m->cfg.access, sa, debug ? &rule : NULL);

	if (debug)
		master_debug_access(peer, &m->cfg.access, v, rule);
	switch (v) {
	case ACCESS_DENIED:
		return MASTER_REJECT_DENIED;
	case ACCESS_NOT_ALLOWED:
		return MASTER_REJECT_NOT_ALLOWED;
	case ACCESS_OK:
		break;
	}
	/* Before the other limits, so that a flooding source is told apart
	 * from a busy server. Without memory for the source's state the
	 * connection is let through: the rule protects, it must not refuse
	 * everyone. */
	bool over_rate = m->cfg.rate_per_source &&
			 sources_rate_take(&m->kids.src, sa, now,
					   m->cfg.rate_period_usec / m->cfg.rate_per_source,
					   m->cfg.burst_per_source ? m->cfg.burst_per_source
								   : m->cfg.rate_per_source) == 0;
	if (debug)
		master_debug_source(m, peer, now);
	if (over_rate)
		return MASTER_REJECT_RATE;
	/* A connection counts until its worker's report is read (sent before
	 * the client can see the close), and a batch of accepts runs ahead of
	 * the report pipe and of SIGCHLD: a refusal here reads the reports,
	 * reaps and asks again, so that a client reconnecting in a loop is
	 * never refused below the limits. */
	enum master_reject why = master_over_limits(m, sa);
	if (why != MASTER_ADMIT) {
		master_reap(m); /* reads the reports first */
		why = master_over_limits(m, sa);
	}
	return why;
}

/* A refusal closes at once and is counted; the log sees at most one line
 * per reason and interval, with a count of what it left out, so a flood
 * cannot flood it. */
static void master_refuse(struct master *m, int fd, const struct addr *peer,
			  const struct listener *l, enum master_reject why)
{
	unsigned suppressed = 0;

	close(fd);
	m->rejected[why]++;
	m->status_dirty = true;
	if (!log_enabled(LOG_NOTICE) ||
	    !ratelimit_pass(&m->rl_reject[why], clock_usec(), &suppressed))
		return;

	struct master_peer p;
	char slport[8], ssup[16];
	master_peer_text((const struct sockaddr *)&peer->ss, &p);
	snprintf(slport, sizeof(slport), "%u", addr_port((const struct sockaddr *)&l->addr.ss));
	snprintf(ssup, sizeof(ssup), "%u", suppressed);
	const struct log_kv kv[] = {
	    {"REMOTE_ADDR", p.host}, {"REMOTE_PORT", p.port},
	    {"LOCAL_PORT", slport},  {"REJECT_REASON", master_reject_name(why)},
	    {"SUPPRESSED", ssup},
	};
	log_struct(LOG_NOTICE, LOG_ID_CONN_REJECTED, kv, suppressed ? 5 : 4,
		   "refused connection from %s: %s%s", p.name, master_reject_name(why),
		   suppressed ? " (earlier refusals not logged, see SUPPRESSED)" : "");
}

/* Resource exhaustion (descriptors, kernel memory, tasks): logged at most
 * once per call and interval, as refusals are, and accepting pauses so that
 * a condition which a retry cannot fix does not turn the loop into a spin;
 * the pause doubles while the failures go on (back-off) and starts short
 * again after a success. */
static void master_exhausted(struct master *m, enum master_call call, int err)
{
	static const char *const names[MASTER_CALL_N] = {
	    [MASTER_CALL_ACCEPT] = "accept",
	    [MASTER_CALL_FORK] = "fork",
	};
	unsigned suppressed = 0;
	uint64_t now = clock_usec(), pause = m->pause_usec ? m->pause_usec : MASTER_PAUSE_USEC;

	m->pause_until = now + pause;
	m->pause_usec = pause * 2 < MASTER_PAUSE_MAX_USEC ? pause * 2 : MASTER_PAUSE_MAX_USEC;
	if (!ratelimit_pass(&m->rl_resource[call], now, &suppressed))
		return;

	char serr[16], spause[24], ssup[16];
	snprintf(serr, sizeof(serr), "%d", err);
	snprintf(spause, sizeof(spause), "%llu", (unsigned long long)pause);
	snprintf(ssup, sizeof(ssup), "%u", suppressed);
	const struct log_kv kv[] = {
	    {"FAILED_CALL", names[call]},
	    {"ERRNO", serr},
	    {"PAUSE_USEC", spause},
	    {"SUPPRESSED", ssup},
	};
	log_struct(LOG_WARNING, LOG_ID_RESOURCE, kv, suppressed ? 4 : 3,
		   "%s failed: %s; pausing accept for %llums%s", names[call], strerror(err),
		   (unsigned long long)pause / 1000,
		   suppressed ? " (earlier failures not logged, see SUPPRESSED)" : "");
}

/* Out of descriptors, a waiting connection can be neither served nor
 * refused, and its listener stays readable: give up the spare descriptor,
 * take the connection with it and close it (the client hears at once),
 * then take the spare back. (The kernel reports EMFILE before it looks for
 * a connection, so there may be none.) Returns 1 when one was refused, 0
 * when none was waiting, -1 when this cannot work: no spare, or another
 * process took the freed descriptor (ENFILE). */
static int master_refuse_with_reserve(struct master *m, const struct listener *l)
{
	struct addr peer = {.len = sizeof(peer.ss)};
	int fd, err;

	if (m->reserve_fd < 0)
		return -1;
	close(m->reserve_fd);
	fd = accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_CLOEXEC);
	err = errno;
	if (fd >= 0) {
		addr_unmap(&peer);
		master_refuse(m, fd, &peer, l, MASTER_REJECT_NOFILE);
	}
	m->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (m->reserve_fd < 0)
		return -1;
	return fd >= 0 ? 1 : err == EAGAIN ? 0 : -1;
}

/* A worker ends by itself when its master is gone (SIGKILL, the OOM
 * killer, a crash), as it does in a drain: SIGTERM, which hands back what
 * it owes for a moment and closes. Outside systemd nothing else would ever
 * end it. The parent may have died before the prctl: then getppid() is
 * already someone else (init or a subreaper) and the signal is raised
 * here; SIGTERM stays blocked until the worker's first wait. An exec of
 * the master (a binary upgrade) does not count as its death. The log's
 * held-back entries are the master's to write, not this copy's. */
static void master_child_setup(pid_t master_pid)
{
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != master_pid)
		raise(SIGTERM);
	log_forked();
}

static void master_spawn(struct master *m, int fd, const struct addr *peer,
			 const struct listener *l)
{
	/* Everything the worker needs is copied out first: *m is not mapped in
	 * the child (master_run). The start time too: the worker must not
	 * read the clock itself (see worker_echo). */
	const uint64_t start = clock_usec();
	const struct worker_conn c = {
	    .fd = fd,
	    .peer = *peer,
	    .local_port = addr_port((const struct sockaddr *)&l->addr.ss),
	    .start_usec = start,
	    .idle_usec = m->cfg.idle_timeout_usec,
	    .end_usec = m->cfg.max_lifetime_usec ? clock_add(start, m->cfg.max_lifetime_usec) : 0,
	    .log_connections = m->cfg.log_connections,
	    .report_fd = m->rfd[1],
	};
	const struct listener *lv = m->ls.v;
	const size_t ln = m->ls.n;
	const int own[] = {m->sfd, m->rfd[0], m->tfd, m->reserve_fd};
	const pid_t master_pid = getpid();
	pid_t pid;

	pid = fork();
	/* Exited workers hold their task slots (RLIMIT_NPROC, TasksMax) until
	 * reaped, and one still on its way out cannot be reaped yet: reap and
	 * try again, a few times over at most a couple of milliseconds, before
	 * calling it a shortage. */
	for (int i = 0; pid < 0 && errno == EAGAIN && i < MASTER_FORK_RETRIES; i++) {
		if (master_reap(m) == 0)
			nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
		pid = fork();
	}
	if (pid == 0) {
		master_child_setup(master_pid);
		for (size_t i = 0; i < ln; i++)
			close(lv[i].fd);
		for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
			if (own[i] >= 0)
				close(own[i]);
		worker_run(&c);
	}
	if (pid < 0) {
		int err = errno;
		master_refuse(m, fd, peer, l, MASTER_REJECT_FORK);
		/* Accepting pauses too, so that a flood waits in the backlog
		 * instead of costing an accept and a close each; the rest of
		 * this batch is refused without a fork. */
		master_exhausted(m, MASTER_CALL_FORK, err);
		return;
	}
	/* Tasks are there again: the next shortage starts with a short pause. */
	m->pause_usec = 0;
	close(fd);
	if (children_add(&m->kids, pid, (const struct sockaddr *)&peer->ss, c.local_port,
			 c.start_usec) < 0) {
		/* Without a table entry it could not be counted against the limits;
		 * refusing it is the only safe answer. */
		log_err("out of memory recording worker %ld; ending it", (long)pid);
		kill(pid, SIGKILL);
		return;
	}
	m->accepted++;
	m->status_dirty = true;
	if (log_enabled(LOG_DEBUG))
		master_debug_forked(pid, peer);
}

bool master_accept(struct master *m, const struct listener *l)
{
	/* A spare lost to a deeper shortage (another process took the freed
	 * descriptor) is taken back first thing, while it can still get the
	 * lowest free number, as at start. */
	if (m->reserve_fd < 0)
		m->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	for (int i = 0; i < MASTER_ACCEPT_BATCH; i++) {
		/* The length is in-out: it must be reset before every accept. */
		struct addr peer = {.len = sizeof(peer.ss)};
		/* Non-blocking as the worker wants it: one fcntl fewer there. */
		int fd = accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno == EAGAIN)
				return false;
			/* the one connection is gone; the next may be fine */
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO ||
			    errno == EPERM)
				continue;
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unforeseen */
			int err = errno, r = -1;
			if (err == EMFILE || err == ENFILE)
				r = master_refuse_with_reserve(m, l);
			if (r == 1)
				continue;
			if (r == 0)
				return false;
			m->accept_errors++;
			master_exhausted(m, MASTER_CALL_ACCEPT, err);
			return false;
		}
		addr_unmap(&peer);
		if (log_enabled(LOG_DEBUG))
			master_debug_accepted(&peer, l);
		uint64_t now = clock_usec();
		enum master_reject why = master_admit(m, &peer, now);
		/* Only a failed fork earlier in this batch pauses accepting
		 * while it runs (a failed accept ends the batch). */
		if (why == MASTER_ADMIT && now < m->pause_until)
			why = MASTER_REJECT_FORK;
		if (why != MASTER_ADMIT)
			master_refuse(m, fd, &peer, l, why);
		else
			master_spawn(m, fd, &peer, l);
	}
	return true;
}

/* Connections taken off the listeners so far, admitted or refused. */
static uint64_t master_handled(const struct master *m)
{
	uint64_t n = m->accepted;

	for (int i = 0; i < MASTER_REJECT_N; i++)
		n += m->rejected[i];
	return n;
}

static bool master_listener_in(const struct listen_set *s, int fd)
{
	for (size_t i = 0; s && i < s->n; i++)
		if (s->v[i].fd == fd)
			return true;
	return false;
}

/* Takes all of l's backlog, one batch of master_accept at a time; bounded
 * by the largest backlog (65535) plus what arrives meanwhile. */
static void master_accept_all(struct master *m, const struct listener *l)
{
	for (int i = 0; i < 65536 / MASTER_ACCEPT_BATCH * 2 && master_accept(m, l); i++)
		;
}

void master_accept_queued(struct master *m, const struct listen_set *keep)
{
	const struct listen_set *ls = &m->ls;
	/* One entry per listener, in step with ls->v; poll skips those left
	 * at -1 (kept, passed by systemd, or without a filter). */
	struct pollfd *p = ls->activated ? NULL : calloc(ls->n, sizeof(*p));
	size_t waiting = 0;

	for (size_t i = 0; i < ls->n; i++) {
		if (p)
			p[i] = (struct pollfd){.fd = -1, .events = POLLIN};
		if (master_listener_in(keep, ls->v[i].fd))
			continue;
		int r = listen_retire(&ls->v[i], ls->activated);
		uint64_t before = master_handled(m);
		master_accept_all(m, &ls->v[i]);
		if (log_enabled(LOG_DEBUG))
			master_debug_retired(&ls->v[i], master_handled(m) - before);
		if (r == 0 && p) {
			p[i].fd = ls->v[i].fd;
			waiting++;
		}
	}
	/* Handshakes under way when the filters went on complete within a
	 * round trip: wait that long, once for all the listeners (this holds
	 * up the loop: a thousand listeners must not make it a thousand
	 * times longer). Without memory for the poll set, no wait: a client
	 * then caught in its handshake may be reset. */
	uint64_t until = clock_usec() + MASTER_RETIRE_USEC, before = master_handled(m);
	for (uint64_t now = clock_usec(); waiting && now < until; now = clock_usec()) {
		if (poll(p, ls->n, (int)((until - now + 999) / 1000)) <= 0)
			continue;
		for (size_t i = 0; i < ls->n; i++)
			if (p[i].revents & POLLIN)
				master_accept_all(m, &ls->v[i]);
	}
	if (waiting && log_enabled(LOG_DEBUG)) {
		uint64_t late = master_handled(m) - before;
		log_debug("%" PRIu64 " more connection%s completed %s handshake on closing "
			  "listeners within %llums",
			  late, late == 1 ? "" : "s", late == 1 ? "its" : "their",
			  (unsigned long long)MASTER_RETIRE_USEC / 1000);
	}
	free(p);
}
