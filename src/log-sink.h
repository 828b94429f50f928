/* Where finished log entries go: stderr or the journal's socket, without
 * ever blocking. A sink that is not keeping up (a pipe nobody reads, a
 * stuck journald, a terminal on hold) makes the master queue entries in a
 * bounded buffer, flushed when its loop sees the sink writable, and drop
 * what does not fit; once the queue is empty again an entry says how many
 * were dropped. A worker does not queue: it drops. Every function keeps
 * errno. */
#ifndef ECHOD_LOG_SINK_H
#define ECHOD_LOG_SINK_H

#include <stdbool.h>
#include <stddef.h>

/* Where journald takes native entries. */
#define LOG_SINK_JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Bytes of entries the master may hold back; one entry is at most ~3 KiB. */
#define LOG_SINK_QUEUE (64 * 1024)

enum log_dest {
	LOG_DEST_STDERR,
	LOG_DEST_JOURNAL,
};

/* Takes stderr as it is at start: a pipe, FIFO or terminal is reopened
 * through /proc/self/fd/2 as a file description of our own with
 * O_NONBLOCK, so that neither the shell's nor anyone else's sharing it
 * changes; a socket (a journal stream) is written with MSG_DONTWAIT; a
 * regular file as it is. Call once, before dropping privileges. */
void log_sink_init(void);

/* Connects the journal's socket, if it is not yet: a connected datagram
 * socket polls writable only when journald's queue has room. Done by the
 * master before forking, so that workers inherit it. 0 or -errno. */
int log_sink_journal_open(void);

/* Sends one entry, or queues it (master) when the sink is busy. Returns 0
 * (sent, queued or dropped: nothing more can be done) or -1 when the
 * journal cannot be reached at all, so that the caller tries stderr. */
int log_sink_write(enum log_dest d, const char *buf, size_t len);

/* The descriptor to wait on for POLLOUT while entries are queued or a
 * count of entries dropped on a busy sink is still to be told, else -1. */
int log_sink_poll_fd(void);

/* Sends what is queued, as far as the sink takes it. Returns how many
 * entries were dropped since the last time it returned non-zero, once the
 * queue is empty again (the caller logs that), else 0. */
unsigned long long log_sink_flush(void);

/* In a new worker: forgets the master's queue (its copy is the master's to
 * send) and turns queueing off. */
void log_sink_forked(void);

#endif
