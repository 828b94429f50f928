/* Stopping: the drain after SIGTERM, its timer, the SIGTERM and then
 * SIGKILL sent to workers that outlast it, and SIGQUIT's immediate exit. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "children.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "master-int.h"
#include "notify.h"

static void master_signal_all(struct master *m, int sig)
{
	children_foreach(&m->kids, master_kill_one, &sig);
}

/* The last step: SIGKILL, which no worker can outlast. */
static void master_kill_all(struct master *m)
{
	master_signal_all(m, SIGKILL);
	m->phase = MASTER_KILL;
}

static int master_arm_timer(struct master *m, uint64_t usec)
{
	struct itimerspec its = {
	    .it_value = {.tv_sec = (time_t)(usec / 1000000u),
			 .tv_nsec = (long)(usec % 1000000u) * 1000 + 1},
	};

	if (m->tfd < 0) {
		m->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (m->tfd < 0)
			return err_last();
	}
	return timerfd_settime(m->tfd, 0, &its, NULL) < 0 ? err_last() : 0;
}

/* Drain timeout reached (or a second stop request): ask every worker to
 * finish; each flushes what it owes and closes its write side. */
static void master_terminate(struct master *m)
{
	log_notice("asking %zu worker%s to finish (SIGTERM)", children_count(&m->kids),
		   log_s(children_count(&m->kids)));
	m->phase = MASTER_TERM;
	master_signal_all(m, SIGTERM);
	notify_extend_timeout(MASTER_KILL_GRACE_USEC + 1000000u);
	if (master_arm_timer(m, MASTER_KILL_GRACE_USEC) < 0) {
		log_err("cannot arm the kill timer: %s; killing workers now", strerror(errno));
		master_kill_all(m);
	}
}

void master_stop_request(struct master *m, int sig)
{
	char active[24];

	/* Each further request moves one step on; the message says which,
	 * not "second" for the third. */
	if (m->phase == MASTER_DRAIN) {
		log_notice("SIG%s received again: not waiting for the drain any longer",
			   sigabbrev_np(sig));
		master_terminate(m);
		return;
	}
	if (m->phase != MASTER_RUN) {
		log_notice("SIG%s received again: killing %zu worker%s now", sigabbrev_np(sig),
			   children_count(&m->kids), log_s(children_count(&m->kids)));
		master_kill_all(m);
		return;
	}
	m->phase = MASTER_DRAIN;
	/* Connections already queued are served in the drain, as those open
	 * already: closing the listeners would reset them unanswered. */
	master_accept_queued(m, NULL);
	listen_close(&m->ls);
	/* Once nothing listens: STOPPING=1 tells a watcher the port is shut. */
	notify_stopping();
	m->ls_gen++;
	/* Counted after the reports and exits already waiting: connections
	 * that ended a moment ago are not "draining". */
	master_reap(m);
	snprintf(active, sizeof(active), "%zu", children_open(&m->kids));
	const struct log_kv kv[] = {{"ACTIVE", active}};
	log_struct(LOG_INFO, LOG_ID_STOPPING, kv, 1,
		   "SIG%s received: stopped listening, draining %s connection%s", sigabbrev_np(sig),
		   active, log_s(children_open(&m->kids)));
	master_status(m);
	if (children_count(&m->kids) == 0)
		return;
	if (m->cfg.drain_timeout_usec == 0) {
		master_terminate(m);
		return;
	}
	notify_extend_timeout(
	    clock_add(m->cfg.drain_timeout_usec, MASTER_KILL_GRACE_USEC + 1000000u));
	if (master_arm_timer(m, m->cfg.drain_timeout_usec) < 0) {
		log_err("cannot arm the drain timer: %s; asking workers to finish now",
			strerror(errno));
		master_terminate(m);
	}
}

void master_on_timer(struct master *m)
{
	uint64_t ticks;

	if (read(m->tfd, &ticks, sizeof(ticks)) < 0)
		return;
	if (m->phase == MASTER_DRAIN) {
		master_terminate(m);
	} else if (m->phase == MASTER_TERM) {
		log_warning("killing %zu worker%s that did not finish", children_count(&m->kids),
			    log_s(children_count(&m->kids)));
		master_kill_all(m);
	}
}

void master_quit(struct master *m)
{
	log_notice("SIGQUIT received: killing %zu worker%s and exiting now",
		   children_count(&m->kids), log_s(children_count(&m->kids)));
	master_signal_all(m, SIGKILL);
	/* The reports already sent count first: those connections ended.
	 * SIGKILL cannot be caught, so the waits below end promptly. */
	master_on_reports(m);
	while (children_count(&m->kids) > 0) {
		int st;
		pid_t pid = waitpid(-1, &st, 0);
		if (pid < 0 && errno != EINTR)
			break;
		if (pid > 0)
			master_reaped(m, pid, st);
	}
	m->quit = true;
}
