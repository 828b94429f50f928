/* loadgen: a load generator for echo servers, for the benchmarks of issue 4.
 *
 * One process, one epoll loop, non-blocking sockets, many connections at
 * once. Every byte that comes back is checked, without keeping what was sent:
 * the bytes of a connection are a pure function of (key, offset), so the
 * receiving side regenerates them. Every loop is bounded by a deadline. */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define LG_NSEC	       1000000000ull
#define LG_MAX_SOURCES 64
/* Samples kept per latency figure; beyond this, a uniform reservoir sample. */
#define LG_SAMPLES_CAP (1u << 19)
#define LG_EVENTS      256

enum lg_mode {
	LG_MODE_RATE,
	LG_MODE_STREAM,
	LG_MODE_LATENCY,
	LG_MODE_HOLD,
};

struct lg_opts {
	enum lg_mode mode;
	char host[64]; /* numeric, as connected to */
	unsigned port;
	struct sockaddr_storage dst;
	socklen_t dst_len;
	struct sockaddr_storage src[LG_MAX_SOURCES];
	socklen_t src_len;
	size_t n_src;
	size_t clients;
	size_t size;  /* message bytes: rate, latency, hold */
	size_t block; /* write size: stream */
	uint64_t duration_ns;
	uint64_t timeout_ns; /* per operation */
	uint64_t hold_ns;
	uint64_t count;	     /* 0: run for the duration */
	uint64_t max_errors; /* mismatches fail the run whatever this says */
	int server_pid;	     /* 0: no memory report */
	bool json;
};

enum lg_err_kind {
	LG_ERR_REFUSED,
	LG_ERR_RESET,
	LG_ERR_EOF, /* the server closed before echoing everything */
	LG_ERR_TIMEOUT,
	LG_ERR_MISMATCH,
	LG_ERR_OTHER,
	LG_ERR_KINDS,
};

struct lg_samples {
	uint64_t *v; /* nanoseconds */
	size_t cap, len;
	uint64_t seen;
	uint64_t rng;
};

/* Kibibytes; -1 where not measured. */
struct lg_mem {
	long long rss_before, rss_open, rss_after;
	long long workers, worker_private;
};

struct lg_result {
	uint64_t completed; /* cycles, round trips, streams or held connections */
	uint64_t bytes;	    /* received and verified */
	uint64_t elapsed_ns;
	uint64_t cpu_ns; /* this process's own, user and system */
	uint64_t errors[LG_ERR_KINDS];
	struct lg_samples rtt, cycle;
	uint64_t rtt_ns, cycle_ns; /* duration of each latency phase */
	uint64_t opened, echoed, echoed_after;
	uint64_t open_ns, check_ns; /* hold: opening all, one round trip on all */
	struct lg_mem mem;
	bool unfinished;
};

enum lg_state {
	LG_ST_IDLE,	  /* no socket */
	LG_ST_RETRY,	  /* no socket: opening failed at once, try again later */
	LG_ST_CONNECTING, /* waiting for the handshake */
	LG_ST_BUSY,	  /* a request or a stream in flight */
	LG_ST_READY,	  /* connected, nothing owed */
	LG_ST_DRAIN,	  /* stream: no more writes, reading what is owed */
	LG_ST_DONE,
};

struct lg_conn {
	int fd;
	enum lg_state state;
	uint32_t gen; /* tells events of a closed socket from its successor's */
	bool warm;    /* the next round trip warms up a new worker: not timed */
	uint64_t key;
	uint64_t sent, recvd, want; /* pattern offsets; want ends the request */
	uint64_t t0;		    /* start of what is being timed */
	uint64_t deadline;	    /* of the current operation; 0: none */
	uint64_t cycle;
};

struct lg_run {
	const struct lg_opts *o;
	struct lg_result *res;
	int ep;
	struct lg_conn *c;
	size_t n;
	unsigned char *sbuf, *rbuf;
	size_t sbuf_cap, rbuf_cap;
	uint64_t seed;
	size_t next_src;
	uint64_t deadline; /* nothing runs past this */
	uint64_t grace;	   /* for what is in flight when a phase ends */
	unsigned reports;  /* diagnostics printed */
	struct epoll_event ev[LG_EVENTS];
};

/* loadgen-pattern.c */
uint64_t lg_mix(uint64_t key, uint64_t idx);
uint64_t lg_key(const struct lg_run *r, size_t slot, uint64_t cycle);
void lg_pattern_init(uint64_t seed);
unsigned char lg_pattern_byte(uint64_t key, uint64_t off);
void lg_pattern_fill(uint64_t key, uint64_t off, unsigned char *buf, size_t len);
/* The index of the first byte of buf that differs from the pattern, or len. */
size_t lg_pattern_check(uint64_t key, uint64_t off, const unsigned char *buf, size_t len);

/* loadgen-net.c */
uint64_t lg_now(void);
int lg_samples_init(struct lg_samples *s, size_t cap);
void lg_samples_add(struct lg_samples *s, uint64_t v);
void lg_samples_sort(struct lg_samples *s);
uint64_t lg_samples_permille(const struct lg_samples *s, unsigned q);
void lg_samples_free(struct lg_samples *s);

int lg_run_init(struct lg_run *r, const struct lg_opts *o, struct lg_result *res);
void lg_run_free(struct lg_run *r);
int lg_conn_open(struct lg_run *r, size_t i);
void lg_conn_close(struct lg_run *r, size_t i, enum lg_state next);
int lg_conn_connected(const struct lg_conn *c);
int lg_conn_send(struct lg_run *r, size_t i, uint64_t limit);
int lg_conn_recv(struct lg_run *r, size_t i, uint64_t stop);
void lg_count_error(struct lg_run *r, int err);
int lg_wait(struct lg_run *r, uint64_t until, int max_ms);
size_t lg_event_slot(const struct lg_run *r, int k, uint32_t *events);
bool lg_timed_out(const struct lg_conn *c, uint64_t now);

/* loadgen-report.c */
extern const char *const lg_mode_names[];
uint64_t lg_total_errors(const struct lg_result *res);
void lg_report_json(const struct lg_opts *o, struct lg_result *res, bool ok);
void lg_report_text(const struct lg_opts *o, struct lg_result *res, bool ok);

/* loadgen-echo.c */
int lg_mode_rate(struct lg_run *r);
int lg_mode_latency(struct lg_run *r);

/* loadgen-stream.c */
int lg_mode_stream(struct lg_run *r);

/* loadgen-hold.c */
int lg_mode_hold(struct lg_run *r);
long long lg_proc_rss_kib(int pid);
int lg_proc_workers(int pid, long long *count, long long *private_kib);

#endif
