/* The master's event loop: signals, reports, accepting, the watchdog and
 * the status line. Nothing runs in an asynchronous signal handler; signals
 * arrive on a signalfd. Stopping is master-stop.c, reloading master-reload.c. */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "build-config.h"
#include "children.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "master-debug.h"
#include "master-int.h"
#include "notify.h"
#include "sandbox.h"
#include "worker.h"

#define MASTER_STATUS_USEC 1000000ull /* STATUS= at most once a second */

static void master_sigset(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGUSR1);
}

/* Signals that report a fault of this very process (or abort()): ignoring
 * them would turn a crash into a loop or a silent hang. */
static bool master_sig_fault(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL ||
	       sig == SIGTRAP || sig == SIGSYS || sig == SIGABRT;
}

/* Stop signals (Ctrl-Z in a terminal) keep their meaning; SIGCHLD, SIGURG,
 * SIGWINCH and SIGCONT are harmless by default. */
static bool master_sig_keep(int sig)
{
	return sig == SIGKILL || sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN ||
	       sig == SIGTTOU || sig == SIGCONT || sig == SIGCHLD || sig == SIGURG ||
	       sig == SIGWINCH || master_sig_fault(sig);
}

/* Every other signal whose default kills (SIGUSR2, SIGALRM, SIGPOLL,
 * SIGPROF, SIGVTALRM, SIGPWR, SIGSTKFLT, SIGXCPU, SIGXFSZ, the real-time
 * ones) is ignored: a stray kill -USR2 or a tool probing with SIGALRM must
 * not take the service down. Workers inherit this across fork. */
static int master_ignore_others(const sigset_t *used)
{
	const struct sigaction ign = {.sa_handler = SIG_IGN};

	for (int sig = 1; sig <= SIGRTMAX; sig++) {
		if (master_sig_keep(sig) || sigismember(used, sig) == 1)
			continue;
		/* glibc keeps a couple of real-time signals for itself and
		 * refuses them with EINVAL; those are not ours to set. */
		if (sigaction(sig, &ign, NULL) < 0 && errno != EINVAL)
			return err_last();
	}
	return 0;
}

/* The master's own signals start at their default, whatever the caller
 * left: dispositions survive exec, and an ignored SIGCHLD (`trap '' CHLD`,
 * a supervisor written in Python) makes the kernel reap the workers by
 * itself, so the master would never see one end and a drain would wait
 * for ever; an ignored SIGHUP (nohup) or SIGTERM would be inherited by
 * the workers. Blocked, none of them is acted on by default. */
static int master_default_own(const sigset_t *used)
{
	const struct sigaction dfl = {.sa_handler = SIG_DFL};

	for (int sig = 1; sig < SIGRTMIN; sig++)
		if (sigismember(used, sig) == 1 && sigaction(sig, &dfl, NULL) < 0)
			return err_last();
	return 0;
}

int master_block_signals(void)
{
	sigset_t set;
	int r;

	master_sigset(&set);
	/* Blocked first, so that none arrives between its reset to the
	 * default and the signalfd. */
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return err_last();
	r = master_default_own(&set);
	if (r < 0)
		return r;
	/* stderr may be a pipe whose reader went away; and workers inherit
	 * this, so that a vanished client is an EPIPE to log, not a death.
	 * SIGPIPE is one of the signals master_ignore_others ignores. */
	r = master_ignore_others(&set);
	if (r < 0)
		return r;
	return worker_signals_init(&set);
}

void master_status(struct master *m)
{
	uint64_t rejected = 0;

	for (int i = 0; i < MASTER_REJECT_N; i++)
		rejected += m->rejected[i];
	notify_status("%s%zu active, %llu served, %llu rejected%s%s",
		      m->phase == MASTER_RUN ? "" : "draining: ", children_open(&m->kids),
		      (unsigned long long)m->accepted, (unsigned long long)rejected,
		      m->reload_status[0] ? "; " : "", m->reload_status);
	m->status_dirty = false;
	m->status_next = clock_usec() + MASTER_STATUS_USEC;
}

/* A worker killed before its report leaves its connection without a close
 * record: the master writes one from what its table knows, with the byte
 * counts lost (0) and the reason "killed", so that every connection has
 * its record however it ended. */
static void master_record_killed(struct master *m, const struct child *c)
{
	struct worker_report rep;

	memset(&rep, 0, sizeof(rep));
	rep.pid = c->pid;
	(void)addr_ip_from(&rep.peer, &c->peer.sa); /* the table holds IP peers only */
	addr_scope_name(&c->peer.sa, rep.ifname);
	rep.local_port = c->local_port;
	rep.start_usec = c->start_usec;
	rep.st.end = WORKER_KILLED;
	worker_report_log(&rep, m->cfg.log_connections);
}

void master_reaped(struct master *m, pid_t pid, int st)
{
	struct child c;

	if (children_remove(&m->kids, pid, &c) < 0)
		return;
	m->status_dirty = true;
	if (log_enabled(LOG_DEBUG))
		master_debug_reaped(&c, st, clock_usec());
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return;

	char spid[16], how[24];
	struct master_peer p;
	const char *key = master_wait_text(st, how, sizeof(how));
	master_peer_text(&c.peer.sa, &p);
	snprintf(spid, sizeof(spid), "%ld", (long)pid);
	const struct log_kv kv[] = {
	    {"WORKER_PID", spid},
	    {"REMOTE_ADDR", p.host},
	    {"REMOTE_PORT", p.port},
	    {key, how},
	};
	log_struct(LOG_WARNING, LOG_ID_WORKER_KILLED, kv, 4, "worker %ld for %s %s %s", (long)pid,
		   p.name, WIFSIGNALED(st) ? "killed by" : "exited with status", how);
	if (WIFSIGNALED(st) && !c.closed)
		master_record_killed(m, &c);
}

unsigned master_reap(struct master *m)
{
	unsigned n = 0;
	pid_t pid;
	int st;

	/* A worker reports before it exits: with the pipe read first, one
	 * that was killed after its report is not recorded twice. */
	master_on_reports(m);
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		n++;
		master_reaped(m, pid, st);
	}
	return n;
}

static void master_on_signals(struct master *m)
{
	struct signalfd_siginfo si;

	while (read(m->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			master_reap(m);
			break;
		case SIGHUP:
			if (m->phase == MASTER_RUN)
				master_reload(m);
			else
				log_notice("SIGHUP ignored: stopping");
			break;
		case SIGTERM:
		case SIGINT:
			master_stop_request(m, (int)si.ssi_signo);
			break;
		case SIGQUIT:
			master_quit(m);
			return;
		case SIGUSR1:
			master_stats(m);
			break;
		}
	}
}

void master_on_reports(struct master *m)
{
	struct worker_report r[32];
	ssize_t n;

	/* Writes of one report are atomic, so the pipe only ever holds whole
	 * reports and a read of whole reports returns whole reports. */
	while ((n = read(m->rfd[0], r, sizeof(r))) > 0)
		for (size_t i = 0; i < (size_t)n / sizeof(r[0]); i++) {
			(void)children_close(&m->kids, r[i].pid, r[i].start_usec);
			m->status_dirty = true;
			m->bytes_in += r[i].st.bytes_in;
			m->bytes_out += r[i].st.bytes_out;
			worker_report_log(&r[i], m->cfg.log_connections);
		}
}

static int master_poll_timeout(const struct master *m, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	if (m->watchdog_usec)
		next = m->watchdog_next;
	if (m->status_dirty && m->status_next < next)
		next = m->status_next;
	if (m->phase == MASTER_RUN && m->pause_until > now && m->pause_until < next)
		next = m->pause_until;
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	/* round up: waking early would only spin once more */
	return (int)((next - now + 999) / 1000);
}

static int master_loop(struct master *m)
{
	for (;;) {
		uint64_t now = clock_usec();
		size_t n = 0, lbase, tidx = 0, ridx, lidx = 0;
		unsigned gen = m->ls_gen;

		if (m->quit || (m->phase != MASTER_RUN && children_count(&m->kids) == 0))
			return 0;
		if (master_pfd_reserve(m, m->ls.n + 4) < 0) {
			log_err("out of memory in the event loop; exiting (the workers finish as "
				"in a drain)");
			return EXIT_OSERR;
		}
		m->pfd[n++] = (struct pollfd){.fd = m->sfd, .events = POLLIN};
		ridx = n;
		m->pfd[n++] = (struct pollfd){.fd = m->rfd[0], .events = POLLIN};
		if (m->tfd >= 0) {
			tidx = n;
			m->pfd[n++] = (struct pollfd){.fd = m->tfd, .events = POLLIN};
		}
		/* The log's output is busy: wake when it takes entries again. */
		if (log_poll_fd() >= 0) {
			lidx = n;
			m->pfd[n++] = (struct pollfd){.fd = log_poll_fd(), .events = POLLOUT};
		}
		lbase = n;
		if (m->phase == MASTER_RUN && now >= m->pause_until)
			for (size_t i = 0; i < m->ls.n; i++)
				m->pfd[n++] =
				    (struct pollfd){.fd = m->ls.v[i].fd, .events = POLLIN};

		int r = poll(m->pfd, n, master_poll_timeout(m, now));
		if (r < 0 && errno != EINTR) {
			log_err("poll failed: %s; exiting (the workers finish as in a drain)",
				strerror(errno));
			return EXIT_OSERR;
		}
		/* One reading of the clock serves the whole wake-up: the handlers
		 * take far less than the watchdog's and the status's slack. */
		now = clock_usec();
		/* Before the handlers, so that a statistics request sees what the
		 * sweep left. Not worth a wake-up of its own: the table only grows
		 * while connections arrive, which wake the loop anyway. */
		if (now >= m->expire_next) {
			sources_expire(&m->kids.src, now);
			m->expire_next = now + MASTER_EXPIRE_USEC;
		}
		if (r > 0 && lidx && m->pfd[lidx].revents)
			log_flush();
		if (r > 0 && (m->pfd[ridx].revents & POLLIN))
			master_on_reports(m);
		if (r > 0 && (m->pfd[0].revents & POLLIN))
			master_on_signals(m);
		if (r > 0 && tidx && (m->pfd[tidx].revents & POLLIN))
			master_on_timer(m);
		/* A reload or a stop may have replaced the listeners meanwhile. */
		for (size_t i = lbase; r > 0 && i < n && gen == m->ls_gen; i++)
			if (m->pfd[i].revents & POLLIN)
				master_accept(m, &m->ls.v[i - lbase]);

		if (m->watchdog_usec && now >= m->watchdog_next) {
			notify_watchdog();
			m->watchdog_next = now + m->watchdog_usec / 2;
		}
		if (m->status_dirty && now >= m->status_next)
			master_status(m);
	}
}

int master_run(const struct master_opts *o, struct config *cfg, struct listen_set *ls)
{
	/* Outside the stack and left out of every fork, like the child table
	 * (children.c): the master writes here after each fork, and a page
	 * shared with the new worker would make each such write a copy-on-write
	 * fault. The worker must therefore never touch it (master_spawn). */
	struct master *m =
	    mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sigset_t set;
	int r;

	if (m == MAP_FAILED) {
		log_err("cannot set up the event loop: %s", strerror(errno));
		return EXIT_OSERR;
	}
	(void)madvise(m, sizeof(*m), MADV_DONTFORK);
	*m = (struct master){.o = o,
			     .cfg = *cfg,
			     .ls = *ls,
			     .sfd = -1,
			     .tfd = -1,
			     .rfd = {-1, -1},
			     .reserve_fd = -1};
	*cfg = (struct config){0};
	*ls = (struct listen_set){0};
	m->start_usec = clock_usec();
	for (int i = 0; i < MASTER_REJECT_N; i++)
		m->rl_reject[i] = (struct ratelimit){.interval_usec = 5000000u, .burst = 1};
	for (size_t i = 0; i < MASTER_CALL_N; i++)
		m->rl_resource[i] = (struct ratelimit){.interval_usec = 5000000u, .burst = 1};
	master_sigset(&set);
	m->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	/* Kept for refusing connections when out of descriptors; without
	 * it echod still runs, it pauses instead. */
	m->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	/* Without memory for the copy, workers use the original: slower only. */
	(void)sandbox_init();
	r = children_init(&m->kids);
	if (r == 0)
		r = children_set_prefixes(&m->kids, m->cfg.source_prefix_v4,
					  m->cfg.source_prefix_v6);
	/* A pipe, not a datagram socket: writes up to PIPE_BUF are atomic and
	 * the queue is bounded by bytes, not by a count of ten datagrams. What
	 * does not fit is logged by the worker itself (worker_run). */
	if (r == 0 && pipe2(m->rfd, O_CLOEXEC | O_NONBLOCK) < 0)
		r = err_last();
	if (r == 0)
		fcntl(m->rfd[1], F_SETPIPE_SZ, 1 << 20);
	if (m->sfd < 0 || r < 0) {
		log_err("cannot set up the event loop: %s", strerror(errno));
		r = EXIT_OSERR;
		goto out;
	}
	m->watchdog_usec = notify_watchdog_usec();
	m->watchdog_next = m->start_usec + m->watchdog_usec / 2;

	char spid[16];
	snprintf(spid, sizeof(spid), "%ld", (long)getpid());
	const struct log_kv kv[] = {{"MAIN_PID", spid}};
	log_struct(LOG_INFO, LOG_ID_STARTED, kv, 1, "echod %s started", ECHOD_VERSION);
	if (!ECHOD_SANDBOX)
		log_warning("built with -Dsandbox=false: workers run without their seccomp filter");
	notify_ready();
	master_status(m);

	r = master_loop(m);
	/* Every worker sent its report before it exited: take the last ones. */
	master_on_reports(m);
	log_struct(LOG_INFO, LOG_ID_STOPPED, NULL, 0, "stopped after serving %llu connection%s",
		   (unsigned long long)m->accepted, log_s(m->accepted));
	/* What the output still does not take is lost: waiting for a reader
	 * that may never come would turn a stop into a hang. */
	log_flush();
out:
	if (m->sfd >= 0)
		close(m->sfd);
	if (m->tfd >= 0)
		close(m->tfd);
	if (m->reserve_fd >= 0)
		close(m->reserve_fd);
	for (int i = 0; i < 2; i++)
		if (m->rfd[i] >= 0)
			close(m->rfd[i]);
	free(m->pfd);
	listen_close(&m->ls);
	children_free(&m->kids);
	config_free(&m->cfg);
	munmap(m, sizeof(*m));
	return r;
}
