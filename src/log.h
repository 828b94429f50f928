/* Logging: native journal entries under systemd, one readable line per entry
 * on stderr otherwise. With notify, the only module that knows systemd's
 * protocols. Every function preserves errno. */
#ifndef ECHOD_LOG_H
#define ECHOD_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <syslog.h>

enum log_target {
	LOG_TARGET_AUTO = 0, /* journal when stderr is connected to it, else stderr */
	LOG_TARGET_JOURNAL,
	LOG_TARGET_STDERR,
};

/* One structured field: KEY is upper case as in the journal ("REMOTE_ADDR"). */
struct log_kv {
	const char *key;
	const char *val;
};

/* MESSAGE_IDs of lifecycle events; listed in the man page and the catalog. */
#define LOG_ID_STARTED	     "ef957bf86dad45408244d1e23faf1522"
#define LOG_ID_STOPPING	     "eb7dafb36b014a7f8da9d31bda82c386"
#define LOG_ID_STOPPED	     "3bae5d13b64349f8b9b52a1b6183fcc8"
#define LOG_ID_RELOADED	     "30f49a0a9901452884bcf23861c265d6"
#define LOG_ID_RELOAD_FAILED "4ea0d68f9bed486ca122cb4bca8a0cb1"
#define LOG_ID_WORKER_KILLED "8790cc8f8e084458b0b7d380dc6e4c37"
#define LOG_ID_CONN_REJECTED "184b5a876d6d43c38131ccf4b52033c1"
#define LOG_ID_CONN_CLOSED   "fb81a574e43b40b093675954a3927517"
#define LOG_ID_STATS	     "41796c9f8e1141068c8a73547f95df9e"
#define LOG_ID_RESOURCE	     "f50809158ea14a6e92b3d05691b4c171"

/* Once at start, before dropping privileges: takes stderr as it is (see
 * log-sink.h: writes never block). */
void log_init(void);

/* While entries are held back because the output is busy, or the count of
 * those dropped is not told yet: the descriptor to wait on for POLLOUT,
 * then call log_flush. -1 when nothing is held. */
int log_poll_fd(void);

/* Writes what was held back, as far as the output takes it; once all is
 * out, logs how many entries had to be dropped meanwhile, if any. */
void log_flush(void);

/* In a new worker: the master's held-back entries are not its own, and a
 * worker drops an entry its output does not take at once. */
void log_forked(void);

/* Chooses the sink and the threshold (LOG_ERR .. LOG_DEBUG). Safe to call
 * again on reload. */
void log_setup(enum log_target target, int level);

/* 1 when entries go to the journal. */
int log_to_journal(void);

/* Would an entry of this priority be written? Lets callers skip building
 * fields that would be thrown away. */
int log_enabled(int prio);

/* An entry with structured fields; msgid may be NULL. */
void log_struct(int prio, const char *msgid, const struct log_kv *kv, size_t n, const char *fmt,
		...) __attribute__((format(printf, 5, 6)));

/* An entry with no fields of its own. */
#define log_msg(prio, ...) log_struct((prio), NULL, NULL, 0, __VA_ARGS__)
#define log_debug(...)	   log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	   log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...)	   log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...)   log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...)	   log_msg(LOG_ERR, __VA_ARGS__)

/* "s" unless n is 1: messages write "1 worker", "2 workers". */
static inline const char *log_s(unsigned long long n)
{
	return n == 1 ? "" : "s";
}

/* "debug", "info", "notice", "warning", "err" <-> LOG_*; -EINVAL if unknown. */
/* Writes s and a newline to f, control characters as \xNN, as log lines
 * have them: a message quoting a config file or an argument (a key with
 * an escape sequence, a path with a newline) cannot clear a terminal or
 * forge a second line. Returns 0 or -EIO. */
int log_print_escaped(FILE *f, const char *s);

int log_level_parse(const char *s);
const char *log_level_name(int level);

/* A token bucket that turns a flood of similar events into a few entries and
 * a count of what was left out. */
struct ratelimit {
	uint64_t interval_usec;
	unsigned burst;
	uint64_t begin_usec;
	unsigned count;	     /* events in this interval */
	unsigned suppressed; /* events dropped since the last one let through */
};

/* Returns 1 if this event may be logged at now_usec, 0 if not. When it
 * returns 1 after a quiet spell, *suppressed receives how many were dropped
 * before (0 otherwise) so the entry can say so. */
int ratelimit_pass(struct ratelimit *rl, uint64_t now_usec, unsigned *suppressed);

#endif
