/* State shared by the master's files (master.c: loop, signals, reports;
 * master-accept.c: admission, fork, retiring listeners; master-reload.c:
 * reload and statistics; master-stop.c: drain, timer, SIGQUIT;
 * master-debug.c: debug entries). Not a
 * public interface. */
#ifndef ECHOD_MASTER_INT_H
#define ECHOD_MASTER_INT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "children.h"
#include "config.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "worker.h"

#define MASTER_KILL_GRACE_USEC (5 * 1000000ull) /* SIGTERM to SIGKILL of workers */
#define MASTER_PAUSE_USEC      (100 * 1000ull)	/* first accept pause when out of fds or tasks */
#define MASTER_PAUSE_MAX_USEC  (3200 * 1000ull) /* the pause doubles up to this */
#define MASTER_ACCEPT_BATCH    64		/* accepts per wakeup, so signals are not starved */
#define MASTER_EXPIRE_USEC     (1000000ull)	/* sources without workers forgotten this often */
#define MASTER_FORK_RETRIES    20 /* fork EAGAIN: reap and retry, 0.1 ms apart at most */
#define MASTER_RETIRE_USEC     (20 * 1000ull) /* a closing listener's last handshakes */

enum master_phase {
	MASTER_RUN,
	MASTER_DRAIN, /* listeners closed, waiting for workers to end */
	MASTER_TERM,  /* workers asked to finish (SIGTERM) */
	MASTER_KILL,  /* workers killed, waiting to reap them */
};

/* The calls whose resource shortages pause accepting (master_exhausted). */
enum master_call {
	MASTER_CALL_ACCEPT,
	MASTER_CALL_FORK,
	MASTER_CALL_N,
};

enum master_reject {
	MASTER_REJECT_MAX_CONN,
	MASTER_REJECT_PER_SOURCE,
	MASTER_REJECT_DENIED,
	MASTER_REJECT_NOT_ALLOWED,
	MASTER_REJECT_FORK,
	MASTER_REJECT_RATE,
	MASTER_REJECT_NOFILE,
	MASTER_REJECT_N,
	MASTER_ADMIT = MASTER_REJECT_N,
};

struct master {
	const struct master_opts *o;
	struct config cfg;
	struct listen_set ls;
	unsigned ls_gen; /* bumped whenever ls changes under the loop's feet */
	struct children kids;
	int sfd;    /* signalfd */
	int tfd;    /* drain timerfd, -1 until draining */
	int rfd[2]; /* pipe of workers' reports: [0] read here, [1] for workers */
	enum master_phase phase;
	bool quit;
	struct pollfd *pfd;
	size_t pfd_cap;
	uint64_t start_usec;
	uint64_t pause_until; /* no accept before this (resource exhaustion) */
	uint64_t pause_usec;  /* the next pause; doubles while failures go on */
	int reserve_fd;	      /* spare descriptor, given up to refuse when out of them */
	uint64_t watchdog_usec, watchdog_next;
	bool status_dirty;
	uint64_t status_next;
	uint64_t accepted; /* handed to a worker */
	uint64_t rejected[MASTER_REJECT_N];
	uint64_t accept_errors;
	unsigned reloads;
	char reload_status[CONFIG_ERR_MAX + 32]; /* "reload 3 ok" / "reload 4 failed: ..." */
	struct ratelimit rl_reject[MASTER_REJECT_N], rl_resource[MASTER_CALL_N];
	uint64_t expire_next;	      /* next sweep of forgotten sources */
	uint64_t bytes_in, bytes_out; /* of finished connections, from the reports */
};

/* master.c */
void master_status(struct master *m);
/* Collects every exited worker (waitpid WNOHANG) and logs the abnormal ends.
 * Returns how many it collected. */
unsigned master_reap(struct master *m);
/* Takes pid, which waitpid returned with status st, off the table; logs an
 * abnormal end, and a close record if the worker was killed before its
 * report. */
void master_reaped(struct master *m, pid_t pid, int st);
/* Reads every report waiting in the pipe: counts the bytes, logs the
 * entries and marks those connections closed. */
void master_on_reports(struct master *m);

/* master-stop.c */
/* SIGTERM or SIGINT: the drain starts (listeners retired and closed), or a
 * second one cuts it short. */
void master_stop_request(struct master *m, int sig);
/* The drain timer fired: SIGTERM to the workers, then SIGKILL. */
void master_on_timer(struct master *m);
/* SIGQUIT: SIGKILL to every worker, reap them, and leave the loop. */
void master_quit(struct master *m);

/* master-accept.c */
/* Accepts one batch from l: admits and forks, or refuses. Returns true if
 * the batch was full (more may be queued), false when the queue is empty
 * or accepting had to stop. */
bool master_accept(struct master *m, const struct listener *l);
/* Takes everything queued on the listeners of m->ls not in keep (NULL:
 * all of them), before they are closed: closing a listener resets every
 * connection still in its backlog, clients that completed their handshake
 * and may have sent data already. New handshakes are turned away first
 * (listen_retire), and those under way are given MASTER_RETIRE_USEC to
 * complete, once for all. */
void master_accept_queued(struct master *m, const struct listen_set *keep);
int master_pfd_reserve(struct master *m, size_t n);
void master_kill_one(const struct child *c, void *sig);

/* master-reload.c */
void master_reload(struct master *m);
void master_stats(struct master *m);

#endif
