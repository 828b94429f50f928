/* Logging: native journal entries under systemd, one readable line per entry
 * on stderr otherwise. One of the two modules that include systemd headers.
 * Every function preserves errno. */
#ifndef ECHOD_LOG_H
#define ECHOD_LOG_H

#include <stddef.h>
#include <stdint.h>
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
#define LOG_ID_STARTED	     "8a1e5e2b4f6c4c0e9d3f7a21c6b04e11"
#define LOG_ID_STOPPING	     "3c7d9b1a0e5f4d2c8b6a4e19f7d23c52"
#define LOG_ID_STOPPED	     "5e2f8a7c1d3b4e6f9a0c2b48d1e67f93"
#define LOG_ID_RELOADED	     "b94d2e6a7c814f0e93a5d6c2e1f07a34"
#define LOG_ID_RELOAD_FAILED "e7a3c5d1b2f84096a8d4c3e2f1b05a75"
#define LOG_ID_WORKER_KILLED "4d6b8f2a9c1e4a7b8e3d5f60a2c19b86"
#define LOG_ID_CONN_REJECTED "9f1c3e5a7b2d4c6e8a0b1d3f5e7c9a97"
#define LOG_ID_CONN_CLOSED   "2a4c6e8f0b1d4e3a9c5b7d1f3e5a7ca8"
#define LOG_ID_STATS	     "6c8e0a2b4d6f4a1c9e3b5d7f9a1c3eb9"
#define LOG_ID_RESOURCE	     "71b3d5f7a9c24e6b8d0f2a4c6e8b0dca"

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

/* "debug", "info", "notice", "warning", "err" <-> LOG_*; -EINVAL if unknown. */
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
