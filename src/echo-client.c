/* echo-client: the interactive client of the original tutorial, done right.
 *
 * One full-duplex pump moves stdin to the socket and the socket to stdout at
 * the same time, so a large input cannot deadlock against the server's full
 * buffers, and nothing assumes one read holds one reply. At the end of the
 * input the write side is shut down and the rest of the echo is drained. */
#ifndef ECHOD_VERSION
#include "build-config.h"
#endif
#include "err.h"

#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* sysexits.h values; the usage one comes from err.h. */
#define CLIENT_EXIT_UNAVAILABLE 69 /* refused, unreachable, name not found */
#define CLIENT_EXIT_IOERR	74 /* the stream broke after connecting */
#define CLIENT_EXIT_TEMPFAIL	75 /* connect timeout, resolver temporarily down */

#define CLIENT_BUF_SIZE	     65536
#define CLIENT_MAX_TIMEOUT_S 86400
#define CLIENT_PEER_LEN	     (NI_MAXHOST * 2 + NI_MAXSERV + 16)

struct client_buf {
	char data[CLIENT_BUF_SIZE];
	size_t off;
	size_t len;
};

struct client_pump {
	int sock;
	const char *peer;
	/* On a terminal the next line is read only once the previous one has
	 * come back, so each echo appears right under the line typed. A server
	 * that sends more than it got must not stall this, hence >= not ==. */
	bool lockstep;
	bool in_eof;
	bool sock_eof;
	unsigned long long sent;
	unsigned long long received;
	struct client_buf up;	/* stdin -> socket */
	struct client_buf down; /* socket -> stdout */
};

static void client_help(void)
{
	printf(
	    "Usage: echo-client [OPTIONS] HOST PORT\n"
	    "       echo-client [OPTIONS] HOST:PORT\n"
	    "Send standard input to the echo server at HOST PORT and copy what it\n"
	    "sends back to standard output. HOST is an IPv4 or IPv6 address or a host\n"
	    "name (each address is tried in turn); an IPv6 address may be written in\n"
	    "brackets, [::1], and must be in HOST:PORT ([::1]:7). PORT is a number or a\n"
	    "service name.\n"
	    "On a terminal each line is sent as typed and its echo printed; Ctrl-D ends\n"
	    "the session. Otherwise the input is streamed as is, binary safe.\n"
	    "\n"
	    "Options:\n"
	    "  -t, --timeout SECONDS  connect timeout per address (default 10, fractions allowed)\n"
	    "  -h, --help             show this help and exit\n"
	    "  -V, --version          show the version and exit\n"
	    "\n"
	    "Exit status:\n"
	    "  0   the server echoed the whole input and closed the connection\n"
	    "  64  bad command line\n"
	    "  69  connection refused, host unreachable or name not found\n"
	    "  74  I/O error after connecting: reset, early close, stdin or stdout failure\n"
	    "  75  connect timed out or the resolver failed temporarily\n");
}

__attribute__((format(printf, 1, 2))) static int client_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("echo-client: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'echo-client --help' for more information.\n", stderr);
	return EXIT_USAGE;
}

static int client_parse_timeout(const char *s, int *ms)
{
	char *end;
	double sec;

	errno = 0;
	sec = strtod(s, &end);
	/* The negated comparison also rejects NaN. */
	if (errno != 0 || end == s || *end != '\0' || !(sec > 0) || sec > CLIENT_MAX_TIMEOUT_S)
		return -EINVAL;
	*ms = (int)(sec * 1000);
	if (*ms == 0)
		*ms = 1;
	return 0;
}

/* The host and port of the command line: HOST PORT, or HOST:PORT as one
 * word, HOST in brackets for an IPv6 address ([::1] 7, [::1]:7), as
 * ssh, curl and socat write them. host is a copy (brackets taken off) in
 * buf. Returns 0, or -EINVAL with the reason in *why. */
static int client_target(int n, char **args, char *buf, size_t size, const char **host,
			 const char **port, const char **why)
{
	const char *h = args[0], *close, *colon;
	size_t len;

	*why = NULL;
	if (n < 1 || n > 2) {
		*why = "expected HOST PORT or HOST:PORT";
		return -EINVAL;
	}
	if (h[0] == '[') {
		close = strchr(h, ']');
		if (!close) {
			*why = "an address opened with [ must be closed with ]";
			return -EINVAL;
		}
		if (close == h + 1) {
			*why = "no address between [ and ]";
			return -EINVAL;
		}
		if (n == 2 ? close[1] != '\0' : close[1] != ':' || close[2] == '\0') {
			*why = n == 2 ? "nothing may follow ] when PORT is given apart"
				      : "expected [ADDRESS]:PORT";
			return -EINVAL;
		}
		h++;
		len = (size_t)(close - h);
		*port = n == 2 ? args[1] : close + 2;
	} else if (n == 2) {
		len = strlen(h);
		*port = args[1];
	} else {
		colon = strrchr(h, ':');
		if (!colon || colon == h || colon[1] == '\0') {
			*why = "expected HOST PORT or HOST:PORT";
			return -EINVAL;
		}
		if (memchr(h, ':', (size_t)(colon - h))) {
			*why = "an IPv6 address with a port goes in brackets: [ADDRESS]:PORT";
			return -EINVAL;
		}
		len = (size_t)(colon - h);
		*port = colon + 1;
	}
	if (len >= size) {
		*why = "host name too long";
		return -EINVAL;
	}
	memcpy(buf, h, len);
	buf[len] = '\0';
	*host = buf;
	return 0;
}

/* Checked before any lookup so that a typo is a usage error, not a network
 * one, whatever the resolver would make of it. */
static int client_check_port(const char *s)
{
	char *end;
	long port;

	/* -ENOENT for a name the services database lacks: the admin then
	 * needs the number, or netbase's /etc/services, not a syntax hint. */
	if (*s < '0' || *s > '9')
		return getservbyname(s, "tcp") ? 0 : -ENOENT;
	errno = 0;
	port = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
		return -EINVAL;
	return 0;
}

/* Returns the connected socket or -errno; -ETIMEDOUT when timeout_ms passed. */
static int client_connect_one(const struct addrinfo *ai, int timeout_ms)
{
	struct pollfd pfd = {.events = POLLOUT};
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	int fd, r;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return err_last();
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		r = err_last();
		goto fail;
	}
	pfd.fd = fd;
	/* No signal handler is installed, so poll is never cut short by EINTR
	 * and the timeout holds as given. */
	r = poll(&pfd, 1, timeout_ms);
	if (r <= 0) {
		r = r == 0 ? -ETIMEDOUT : err_last();
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
		r = err_last();
		goto fail;
	}
	if (soerr != 0) {
		r = -soerr;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return r;
}

/* A peer as echod's log writes one, "192.0.2.1:7", "[::1]:7", with the
 * name first when HOST was one: "localhost ([::1]:7)". */
static void client_describe(const char *host, const struct addrinfo *ai, char *out, size_t size)
{
	char addr[NI_MAXHOST], serv[NI_MAXSERV];
	const bool v6 = ai->ai_family == AF_INET6;

	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(out, size, "%s", host);
	else if (strcmp(addr, host) == 0)
		snprintf(out, size, "%s%s%s:%s", v6 ? "[" : "", addr, v6 ? "]" : "", serv);
	else
		snprintf(out, size, "%s (%s%s%s:%s)", host, v6 ? "[" : "", addr, v6 ? "]" : "",
			 serv);
}

/* At most this many failed addresses are written out one by one; a name
 * with more says how many it left out. */
#define CLIENT_FAILS_SHOWN 8

/* Tries each address in the resolver's order. A failure is written only
 * when no address answers, one line each (as ssh and curl, a refused ::1
 * before a working 127.0.0.1 is not an error); the last one decides the
 * caller's exit status. */
static int client_connect(const char *host, const char *port, int timeout_ms, char *peer,
			  size_t peer_size)
{
	const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res, *ai, *failed[CLIENT_FAILS_SHOWN];
	int gai, fd = -ENOENT, why[CLIENT_FAILS_SHOWN];
	size_t nfailed = 0;

	gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0) {
		fd = gai == EAI_AGAIN ? -EAGAIN : gai == EAI_SYSTEM ? err_last() : -ENOENT;
		const bool v6 = strchr(host, ':') != NULL;
		fprintf(stderr, "echo-client: resolve %s%s%s:%s: %s\n", v6 ? "[" : "", host,
			v6 ? "]" : "", port, gai == EAI_SYSTEM ? strerror(-fd) : gai_strerror(gai));
		return fd;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = client_connect_one(ai, timeout_ms);
		if (fd >= 0)
			break;
		if (nfailed < CLIENT_FAILS_SHOWN) {
			failed[nfailed] = ai;
			why[nfailed] = fd;
		}
		nfailed++;
	}
	if (fd >= 0) {
		client_describe(host, ai, peer, peer_size);
	} else {
		for (size_t i = 0; i < nfailed && i < CLIENT_FAILS_SHOWN; i++) {
			client_describe(host, failed[i], peer, peer_size);
			fprintf(stderr, "echo-client: connect to %s: %s\n", peer,
				strerror(-why[i]));
		}
		if (nfailed > CLIENT_FAILS_SHOWN)
			fprintf(stderr, "echo-client: and %zu more address%s of %s failed\n",
				nfailed - CLIENT_FAILS_SHOWN,
				nfailed - CLIENT_FAILS_SHOWN == 1 ? "" : "es", host);
	}
	freeaddrinfo(res);
	return fd;
}

static int client_fail(const struct client_pump *p, const char *what, int r)
{
	fprintf(stderr, "echo-client: %s %s: %s\n", what, p->peer, strerror(-r));
	return r;
}

static int client_read_stdin(struct client_pump *p)
{
	ssize_t n = read(STDIN_FILENO, p->up.data, sizeof(p->up.data));

	if (n < 0) {
		int r = err_last();

		if (r == -EAGAIN)
			return 0;
		fprintf(stderr, "echo-client: read from standard input: %s\n", strerror(-r));
		return r;
	}
	if (n > 0) {
		p->up.off = 0;
		p->up.len = (size_t)n;
		return 0;
	}
	p->in_eof = true;
	/* The half-close is what tells the server the input is complete; it
	 * still sends back everything it owes before closing its side. */
	if (shutdown(p->sock, SHUT_WR) < 0)
		return client_fail(p, "shut down the connection to", err_last());
	return 0;
}

static int client_send(struct client_pump *p)
{
	ssize_t n = send(p->sock, p->up.data + p->up.off, p->up.len, MSG_NOSIGNAL);

	if (n < 0) {
		if (errno == EAGAIN)
			return 0;
		return client_fail(p, "send to", err_last());
	}
	p->up.off += (size_t)n;
	p->up.len -= (size_t)n;
	p->sent += (unsigned long long)n;
	return 0;
}

static int client_recv(struct client_pump *p)
{
	ssize_t n = recv(p->sock, p->down.data, sizeof(p->down.data), 0);

	if (n < 0) {
		if (errno == EAGAIN)
			return 0;
		return client_fail(p, "receive from", err_last());
	}
	if (n == 0) {
		p->sock_eof = true;
		return 0;
	}
	p->down.off = 0;
	p->down.len = (size_t)n;
	p->received += (unsigned long long)n;
	return 0;
}

static int client_write_stdout(struct client_pump *p)
{
	ssize_t n = write(STDOUT_FILENO, p->down.data + p->down.off, p->down.len);

	if (n < 0) {
		int r = err_last();

		if (r == -EAGAIN)
			return 0;
		fprintf(stderr, "echo-client: write to standard output: %s\n", strerror(-r));
		return r;
	}
	p->down.off += (size_t)n;
	p->down.len -= (size_t)n;
	return 0;
}

/* Called once the server's EOF is read and its last bytes are written out:
 * the echo contract is that everything sent came back. */
static int client_check_end(const struct client_pump *p)
{
	if (!p->in_eof || p->up.len > 0) {
		fprintf(stderr, "echo-client: %s closed the connection before the input ended\n",
			p->peer);
		return -EPIPE;
	}
	if (p->received < p->sent) {
		fprintf(stderr,
			"echo-client: %s closed the connection after echoing %llu of %llu bytes\n",
			p->peer, p->received, p->sent);
		return -EPIPE;
	}
	return 0;
}

static int client_pump(struct client_pump *p)
{
	int r = 0;

	while (!(p->sock_eof && p->down.len == 0)) {
		bool want_in = !p->in_eof && p->up.len == 0 &&
			       (!p->lockstep || (p->received >= p->sent && p->down.len == 0));
		short sock_events = (short)((p->up.len > 0 ? POLLOUT : 0) |
					    (!p->sock_eof && p->down.len == 0 ? POLLIN : 0));
		/* An fd with nothing to do leaves the set: a hang-up it reports
		 * while its peer buffer is full would otherwise make poll spin. */
		struct pollfd pfd[3] = {
		    {.fd = want_in ? STDIN_FILENO : -1, .events = POLLIN},
		    {.fd = sock_events ? p->sock : -1, .events = sock_events},
		    {.fd = p->down.len > 0 ? STDOUT_FILENO : -1, .events = POLLOUT},
		};

		if (poll(pfd, 3, -1) < 0) {
			r = err_last();
			fprintf(stderr, "echo-client: poll: %s\n", strerror(-r));
			return r;
		}
		if (pfd[0].revents)
			r = client_read_stdin(p);
		if (r == 0 && pfd[1].revents && (sock_events & POLLOUT))
			r = client_send(p);
		if (r == 0 && pfd[1].revents && (sock_events & POLLIN))
			r = client_recv(p);
		if (r == 0 && pfd[2].revents)
			r = client_write_stdout(p);
		if (r < 0)
			return r;
	}
	return client_check_end(p);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	/* Two 64 KiB buffers: too large for a comfortable stack frame. */
	static struct client_pump pump;
	char peer[CLIENT_PEER_LEN], hostbuf[NI_MAXHOST];
	const char *host, *port, *why;
	int timeout_ms = 10000;
	int c, fd, r;

	while ((c = getopt_long(argc, argv, "+t:hV", options, NULL)) != -1) {
		switch (c) {
		case 't':
			if (client_parse_timeout(optarg, &timeout_ms) < 0)
				return client_usage_error(
				    "invalid timeout '%s': seconds > 0 and <= %d", optarg,
				    CLIENT_MAX_TIMEOUT_S);
			break;
		case 'h':
			client_help();
			return fflush(stdout) == 0 ? 0 : CLIENT_EXIT_IOERR;
		case 'V':
			printf("echo-client %s\n", ECHOD_VERSION);
			return fflush(stdout) == 0 ? 0 : CLIENT_EXIT_IOERR;
		default:
			/* getopt_long has already said what was wrong. */
			fputs("Try 'echo-client --help' for more information.\n", stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind < 1 || argc - optind > 2)
		return client_usage_error("expected HOST PORT or HOST:PORT, got %d argument%s",
					  argc - optind, argc - optind == 1 ? "" : "s");
	if (client_target(argc - optind, argv + optind, hostbuf, sizeof(hostbuf), &host, &port,
			  &why) < 0)
		return client_usage_error("invalid target '%s': %s", argv[optind], why);
	r = client_check_port(port);
	if (r == -ENOENT)
		return client_usage_error("unknown service '%s': not in /etc/services; give its "
					  "port number",
					  port);
	if (r < 0)
		return client_usage_error("invalid port '%s': a number 1-65535 or a service name",
					  port);

	/* A peer that goes away must surface as EPIPE on the failing write,
	 * reported with its context, not as a silent death by signal. */
	signal(SIGPIPE, SIG_IGN);

	fd = client_connect(host, port, timeout_ms, peer, sizeof(peer));
	if (fd < 0)
		return fd == -ETIMEDOUT || fd == -EAGAIN ? CLIENT_EXIT_TEMPFAIL
							 : CLIENT_EXIT_UNAVAILABLE;

	pump.sock = fd;
	pump.peer = peer;
	pump.lockstep = isatty(STDIN_FILENO);
	if (pump.lockstep)
		fprintf(stderr, "echo-client: connected to %s; Ctrl-D ends the session\n", peer);
	r = client_pump(&pump);
	close(fd);
	return r < 0 ? CLIENT_EXIT_IOERR : 0;
}
