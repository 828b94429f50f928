/* loadgen: command line, limits, and the verdict. The modes live in
 * loadgen-echo.c, loadgen-stream.c and loadgen-hold.c, the report in
 * loadgen-report.c. */
#include "loadgen.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define EXIT_FAILED 1  /* a byte differed, too many errors, or unfinished */
#define EXIT_USAGE  64 /* sysexits' EX_USAGE */
#define EXIT_OSERR  71 /* EX_OSERR: this machine refused (limits, memory) */

/* Descriptors beyond the connections: stdio, epoll, /proc files. */
#define FD_SPARE 32

static const size_t default_clients[] = {16, 4, 16, 100};

static void usage(void)
{
	fputs(
	    "Usage: loadgen [OPTIONS]\n"
	    "Load generator for echo servers; verifies every byte that comes back.\n"
	    "\n"
	    "  --mode MODE       rate (default): each client loops connect, send, receive, close\n"
	    "                    stream: long connections write blocks and read the echo\n"
	    "                    latency: percentiles of a round trip on a live connection\n"
	    "                      (first half of the duration; a connection's first round\n"
	    "                      trip, which waits for a new worker, is not timed) and of\n"
	    "                      a whole connect-to-close cycle (second half)\n"
	    "                    hold: open --clients connections, check each echoes, hold them\n"
	    "  --host ADDR       server address (default 127.0.0.1)\n"
	    "  --port PORT       server port (default 7)\n"
	    "  --clients N       concurrent connections (rate 16, stream 4, latency 16, hold 100)\n"
	    "  --size BYTES      message size for rate, latency and hold (default 64)\n"
	    "  --block BYTES     write size for stream (default 64K)\n"
	    "  --duration SECS   how long to run; hold: the limit for opening (default 10)\n"
	    "  --count N         rate, latency: stop after N requests (per latency phase)\n"
	    "  --source A[,A..]  bind clients to these addresses in turn\n"
	    "  --timeout SECS    per connect, request, or stream progress (default 5)\n"
	    "  --max-errors N    errors tolerated before failing (default 0)\n"
	    "  --server-pid PID  hold: report this master's RSS and its workers' memory\n"
	    "  --hold SECS       hold: how long to keep the connections (default 0)\n"
	    "  --json            one JSON object on stdout instead of text\n"
	    "\n"
	    "Sizes take K, M, G (1024); durations take s or ms. Exit status: 0 ok, 1 a\n"
	    "byte differed, errors above --max-errors, nothing completed, or work left\n"
	    "unfinished at the deadline; 64 bad usage; 71 a limit of this machine.\n",
	    stdout);
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned shift = 0;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M')
		shift = 20;
	else if (*end == 'G')
		shift = 30;
	if (shift)
		end++;
	if (*end || v == 0 || v > (16ull << 20) >> shift)
		return -EINVAL;
	*out = v << shift;
	return 0;
}

static int parse_seconds(const char *s, uint64_t *ns)
{
	char *end;

	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	if (!strcmp(end, "ms"))
		v /= 1000;
	else if (*end && strcmp(end, "s"))
		return -EINVAL;
	if (v > 86400)
		return -EINVAL;
	*ns = (uint64_t)(v * LG_NSEC);
	return 0;
}

static int parse_addr(const char *host, const char *port, int family, int flags,
		      struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {
	    .ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = flags};
	struct addrinfo *ai;

	int err = getaddrinfo(host, port, &hints, &ai);
	if (err) {
		fprintf(stderr, "loadgen: %s: %s\n", host, gai_strerror(err));
		return -EINVAL;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int parse_sources(struct lg_opts *o, char *list)
{
	for (char *save, *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		if (o->n_src == LG_MAX_SOURCES) {
			fprintf(stderr, "loadgen: at most %d source addresses\n", LG_MAX_SOURCES);
			return -EINVAL;
		}
		if (parse_addr(a, NULL, o->dst.ss_family, AI_NUMERICHOST, &o->src[o->n_src],
			       &o->src_len) < 0)
			return -EINVAL;
		o->n_src++;
	}
	return o->n_src ? 0 : -EINVAL;
}

enum {
	OPT_MODE = 256,
	OPT_HOST,
	OPT_PORT,
	OPT_CLIENTS,
	OPT_SIZE,
	OPT_BLOCK,
	OPT_DURATION,
	OPT_COUNT,
	OPT_SOURCE,
	OPT_TIMEOUT,
	OPT_MAX_ERRORS,
	OPT_SERVER_PID,
	OPT_HOLD,
	OPT_JSON
};

static const struct option long_opts[] = {
    {"mode", required_argument, NULL, OPT_MODE},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"clients", required_argument, NULL, OPT_CLIENTS},
    {"size", required_argument, NULL, OPT_SIZE},
    {"block", required_argument, NULL, OPT_BLOCK},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"count", required_argument, NULL, OPT_COUNT},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"max-errors", required_argument, NULL, OPT_MAX_ERRORS},
    {"server-pid", required_argument, NULL, OPT_SERVER_PID},
    {"hold", required_argument, NULL, OPT_HOLD},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Returns 0, or -EINVAL after saying what is wrong. */
static int parse_args(int argc, char **argv, struct lg_opts *o)
{
	const char *host = "127.0.0.1", *port = "7", *mode = "rate";
	char *sources = NULL;
	uint64_t clients = 0, v = 0;
	int opt, err = 0;

	*o = (struct lg_opts){
	    .size = 64, .block = 64 * 1024, .duration_ns = 10 * LG_NSEC, .timeout_ns = 5 * LG_NSEC};
	while (!err && (opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_MODE:
			mode = optarg;
			break;
		case OPT_HOST:
			host = optarg;
			break;
		case OPT_PORT:
			port = optarg;
			err = parse_uint(optarg, 65535, &v);
			o->port = (unsigned)v;
			break;
		case OPT_CLIENTS:
			err = parse_uint(optarg, 1000000, &clients);
			err = err ? err : clients ? 0 : -EINVAL;
			break;
		case OPT_SIZE:
			err = parse_size(optarg, &v);
			o->size = v;
			break;
		case OPT_BLOCK:
			err = parse_size(optarg, &v);
			o->block = v;
			break;
		case OPT_DURATION:
			err = parse_seconds(optarg, &o->duration_ns);
			break;
		case OPT_COUNT:
			err = parse_uint(optarg, UINT64_MAX, &o->count);
			break;
		case OPT_SOURCE:
			sources = optarg;
			break;
		case OPT_TIMEOUT:
			err = parse_seconds(optarg, &o->timeout_ns);
			err = err ? err : o->timeout_ns ? 0 : -EINVAL;
			break;
		case OPT_MAX_ERRORS:
			err = parse_uint(optarg, UINT64_MAX, &o->max_errors);
			break;
		case OPT_SERVER_PID:
			err = parse_uint(optarg, 1 << 22, &v);
			o->server_pid = (int)v;
			break;
		case OPT_HOLD:
			err = parse_seconds(optarg, &o->hold_ns);
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case 'h':
			usage();
			exit(0);
		default:
			return -EINVAL;
		}
		if (err)
			fprintf(stderr, "loadgen: bad value for --%s: %s\n",
				long_opts[opt - OPT_MODE].name, optarg);
	}
	if (err)
		return err;
	if (optind < argc) {
		fprintf(stderr, "loadgen: unexpected argument %s\n", argv[optind]);
		return -EINVAL;
	}
	for (o->mode = LG_MODE_RATE; o->mode <= LG_MODE_HOLD; o->mode++)
		if (!strcmp(mode, lg_mode_names[o->mode]))
			break;
	if (o->mode > LG_MODE_HOLD) {
		fprintf(stderr, "loadgen: unknown mode %s\n", mode);
		return -EINVAL;
	}
	if (o->count && (o->mode == LG_MODE_STREAM || o->mode == LG_MODE_HOLD)) {
		fprintf(stderr, "loadgen: --count applies to rate and latency\n");
		return -EINVAL;
	}
	if ((o->hold_ns || o->server_pid) && o->mode != LG_MODE_HOLD) {
		fprintf(stderr, "loadgen: --hold and --server-pid apply to hold\n");
		return -EINVAL;
	}
	if (o->duration_ns == 0 || !o->port) {
		fprintf(stderr, "loadgen: --duration and --port must be positive\n");
		return -EINVAL;
	}
	o->clients = clients ? clients : default_clients[o->mode];
	if (parse_addr(host, port, AF_UNSPEC, AI_NUMERICSERV, &o->dst, &o->dst_len) < 0 ||
	    getnameinfo((struct sockaddr *)&o->dst, o->dst_len, o->host, sizeof(o->host), NULL, 0,
			NI_NUMERICHOST))
		return -EINVAL;
	if (sources && parse_sources(o, sources) < 0) {
		fprintf(stderr, "loadgen: bad --source %s\n", sources);
		return -EINVAL;
	}
	return 0;
}

/* Raises the soft descriptor limit to the hard one; as root, the hard one
 * too if it is short. */
static int raise_nofile(size_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		fprintf(stderr, "loadgen: RLIMIT_NOFILE: %s\n", strerror(errno));
		return -errno;
	}
	rl.rlim_cur = rl.rlim_max;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		struct rlimit more = {need, need};

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			return 0;
		fprintf(
		    stderr,
		    "loadgen: RLIMIT_NOFILE: the hard limit of %llu descriptors is below the %zu"
		    " that %zu connections need, and raising it failed (%s): raise it"
		    " (ulimit -Hn as root, LimitNOFILE=) or use fewer --clients\n",
		    (unsigned long long)rl.rlim_max, need, need - FD_SPARE, strerror(errno));
		return -EMFILE;
	}
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		fprintf(stderr, "loadgen: RLIMIT_NOFILE: %s\n", strerror(errno));
		return -errno;
	}
	return 0;
}

static uint64_t timeval_ns(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * LG_NSEC + (uint64_t)tv->tv_usec * 1000;
}

int main(int argc, char **argv)
{
	struct lg_opts o;
	struct lg_result res = {.mem = {-1, -1, -1, -1, -1}};
	struct lg_run r;

	if (parse_args(argc, argv, &o) < 0) {
		fprintf(stderr, "Try 'loadgen --help'.\n");
		return EXIT_USAGE;
	}
	if (raise_nofile(o.clients + FD_SPARE) < 0)
		return EXIT_OSERR;
	int err = lg_run_init(&r, &o, &res);
	if (err < 0) {
		fprintf(stderr, "loadgen: %s\n", strerror(-err));
		lg_run_free(&r);
		return EXIT_OSERR;
	}
	r.grace = o.timeout_ns + LG_NSEC;
	r.deadline = lg_now() + o.duration_ns + o.hold_ns + 3 * r.grace;
	static int (*const modes[])(struct lg_run *) = {lg_mode_rate, lg_mode_stream,
							lg_mode_latency, lg_mode_hold};
	err = modes[o.mode](&r);
	lg_run_free(&r);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		res.cpu_ns = timeval_ns(&ru.ru_utime) + timeval_ns(&ru.ru_stime);
	if (err < 0) {
		fprintf(stderr, "loadgen: %s\n", strerror(-err));
		return EXIT_OSERR;
	}
	bool ok = !res.errors[LG_ERR_MISMATCH] && lg_total_errors(&res) <= o.max_errors &&
		  !res.unfinished && res.completed > 0;
	if (o.json)
		lg_report_json(&o, &res, ok);
	else
		lg_report_text(&o, &res, ok);
	lg_samples_free(&res.rtt);
	lg_samples_free(&res.cycle);
	return ok ? 0 : EXIT_FAILED;
}
