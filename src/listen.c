/* Listening sockets. The reload path is a transaction: everything the new
 * config needs is in place before anything of the old set is closed. */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "log.h"
#include "notify.h"

/* First fd that systemd passes, as sd_listen_fds(3) documents. */
#define LISTEN_FDS_START 3

/* A socket bound to a, listening when backlog > 0. With reuseport, it may
 * be bound beside echod's own sockets on the same port (see
 * listen_bind_new); without, it is the plain test of whether a is free. */
static int listen_bind(const struct addr *a, unsigned backlog, bool reuseport)
{
	int one = 1, fd, r;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_last();
	/* A restart must not wait for TIME_WAIT of the previous instance. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	/* [::] serves IPv6 only, so that 0.0.0.0 can be listed beside it. */
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		goto fail;
	if (backlog && listen(fd, (int)backlog) < 0)
		goto fail;
	return fd;
fail:
	r = err_last();
	close(fd);
	return r;
}

static int listen_push(struct listen_set *s, int fd, const struct addr *a)
{
	struct listener *v = realloc(s->v, (s->n + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	s->v = v;
	v[s->n].fd = fd;
	v[s->n].addr = *a;
	s->n++;
	return 0;
}

static int listen_take_passed(int n, struct listen_set *out, char *err, size_t errlen)
{
	for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + n; fd++) {
		struct addr a = {.len = sizeof(a.ss)};
		int type = 0, acc = 0, r;
		socklen_t tl = sizeof(type), al = sizeof(acc);

		if (getsockname(fd, (struct sockaddr *)&a.ss, &a.len) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 ||
		    type != SOCK_STREAM || !acc ||
		    (a.ss.ss_family != AF_INET && a.ss.ss_family != AF_INET6)) {
			snprintf(err, errlen, "passed descriptor %d is not a listening TCP socket",
				 fd);
			return -EINVAL;
		}
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
		    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
			r = err_last();
			snprintf(err, errlen, "passed descriptor %d: %s", fd, strerror(-r));
			return r;
		}
		r = listen_push(out, fd, &a);
		if (r < 0)
			return r;
	}
	out->activated = true;
	return 0;
}

/* Whether old holds a socket of a's family on a's port: one that a plain
 * bind of a may collide with (127.0.0.1:P and 0.0.0.0:P). */
static bool listen_old_port(const struct listen_set *old, const struct addr *a)
{
	unsigned port = addr_port((const struct sockaddr *)&a->ss);

	for (size_t i = 0; old && i < old->n; i++)
		if (old->v[i].addr.ss.ss_family == a->ss.ss_family &&
		    addr_port((const struct sockaddr *)&old->v[i].addr.ss) == port)
			return true;
	return false;
}

/* Binds a new address. Every socket echod binds has SO_REUSEPORT, so that a
 * reload from 127.0.0.1:P to 0.0.0.0:P (or back) binds the new socket
 * beside the old one, with no moment without a listener on P. What
 * SO_REUSEPORT would also let in, a second echod (or another root program
 * using it) sharing the port unseen, is kept out by binding first without
 * it: that fails on anything already bound there, and only a collision with
 * one of our own sockets on that port (old) is let through. */
static int listen_bind_new(const struct listen_set *old, const struct addr *a, unsigned backlog)
{
	int probe = listen_bind(a, 0, false);

	if (probe >= 0)
		close(probe);
	else if (probe != -EADDRINUSE || !listen_old_port(old, a))
		return probe;
	return listen_bind(a, backlog, true);
}

/* Binds every address of cfg not found in old (NULL at start), reusing the
 * sockets of old for the others. */
static int listen_build(const struct listen_set *old, const struct config *cfg,
			struct listen_set *out, char *err, size_t errlen)
{
	size_t skipped = 0;
	int r, fd;

	for (size_t i = 0; i < cfg->n_listen; i++) {
		const struct addr *a = &cfg->listen[i];
		char name[ADDR_STRLEN];
		bool reused = false;

		for (size_t j = 0; old && j < old->n && !reused; j++) {
			if (!addr_equal(&old->v[j].addr, a))
				continue;
			/* listen() on a listening socket only updates the backlog. */
			if (listen(old->v[j].fd, (int)cfg->backlog) < 0)
				log_warning("cannot change the backlog of %s: %s; keeping the "
					    "one it has",
					    addr_format((const struct sockaddr *)&a->ss, name,
							sizeof(name)) == 0
						? name
						: "?",
					    strerror(errno));
			r = listen_push(out, old->v[j].fd, a);
			if (r < 0)
				goto fail;
			reused = true;
			if (log_enabled(LOG_DEBUG)) {
				addr_format((const struct sockaddr *)&a->ss, name, sizeof(name));
				log_debug("keeping the socket listening on %s", name);
			}
		}
		if (reused)
			continue;
		addr_format((const struct sockaddr *)&a->ss, name, sizeof(name));
		fd = listen_bind_new(old, a, cfg->backlog);
		if (fd == -EAFNOSUPPORT) {
			log_warning("skipping %s: the kernel lacks this address family", name);
			skipped++;
			continue;
		}
		if (fd < 0) {
			r = fd;
			snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(-r));
			goto fail;
		}
		r = listen_push(out, fd, a);
		if (r < 0) {
			close(fd);
			goto fail;
		}
		log_info("listening on %s", name);
	}
	if (cfg->n_listen == 0) {
		/* The callers check first (config_need_listen); never bind
		 * nothing and call it serving. */
		snprintf(err, errlen, "no listen address is set");
		r = -EINVAL;
		goto fail;
	}
	if (out->n == 0) {
		snprintf(err, errlen, "no address could be bound (%zu skipped)", skipped);
		r = -EAFNOSUPPORT;
		goto fail;
	}
	return 0;
fail:
	if (err[0] == '\0')
		snprintf(err, errlen, "%s", strerror(-r));
	listen_abort(out, old);
	return r;
}

int listen_open(const struct config *cfg, struct listen_set *out, char *err, size_t errlen)
{
	int n = notify_listen_fds();

	*out = (struct listen_set){0};
	err[0] = '\0';
	if (n < 0) {
		snprintf(err, errlen, "cannot take passed sockets: %s", strerror(-n));
		return n;
	}
	if (n > 0) {
		int r = listen_take_passed(n, out, err, errlen);
		if (r < 0)
			listen_close(out);
		else
			log_notice("serving %d socket%s passed by systemd; listen in the config "
				   "is ignored",
				   n, log_s((unsigned)n));
		return r;
	}
	return listen_build(NULL, cfg, out, err, errlen);
}

int listen_reconcile(const struct listen_set *old, const struct config *cfg, struct listen_set *out,
		     char *err, size_t errlen)
{
	*out = (struct listen_set){0};
	err[0] = '\0';
	if (old->activated) {
		log_notice("sockets were passed by systemd; listen in the config is ignored");
		out->v = malloc(old->n * sizeof(*out->v));
		if (!out->v)
			return -ENOMEM;
		memcpy(out->v, old->v, old->n * sizeof(*out->v));
		out->n = old->n;
		out->activated = true;
		return 0;
	}
	return listen_build(old, cfg, out, err, errlen);
}

static bool listen_has_fd(const struct listen_set *s, int fd)
{
	for (size_t i = 0; s && i < s->n; i++)
		if (s->v[i].fd == fd)
			return true;
	return false;
}

/* A worker forked a moment ago still holds a copy of every listener until
 * it gets to close them: close() alone would leave the socket listening, and
 * connections queued in that window would be reset unserved. shutdown()
 * acts on the socket itself: it stops listening at once, whoever holds it.
 * A socket passed by systemd is only closed: systemd keeps it listening for
 * the next start, by design. */
static void listen_stop(const struct listener *l, bool activated)
{
	if (!activated)
		shutdown(l->fd, SHUT_RD);
	close(l->fd);
}

int listen_retire(const struct listener *l, bool activated)
{
	/* A classic BPF socket filter sees the TCP header at offset 0: byte 13
	 * holds the flags. SYN without ACK is dropped, anything else kept. */
	static const struct sock_filter drop_syn[] = {
	    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
	    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, 0),
	    BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
	};
	const struct sock_fprog prog = {.len = sizeof(drop_syn) / sizeof(drop_syn[0]),
					.filter = (struct sock_filter *)drop_syn};

	if (activated)
		return 0;
	if (setsockopt(l->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
		return err_last();
	return 0;
}

void listen_commit(struct listen_set *old, const struct listen_set *new)
{
	for (size_t i = 0; i < old->n; i++) {
		if (listen_has_fd(new, old->v[i].fd))
			continue;
		char name[ADDR_STRLEN];
		addr_format((const struct sockaddr *)&old->v[i].addr.ss, name, sizeof(name));
		log_info("stopped listening on %s", name);
		listen_stop(&old->v[i], old->activated);
	}
	free(old->v);
	*old = (struct listen_set){0};
}

void listen_abort(struct listen_set *new, const struct listen_set *old)
{
	for (size_t i = 0; i < new->n; i++)
		if (!listen_has_fd(old, new->v[i].fd))
			close(new->v[i].fd);
	free(new->v);
	*new = (struct listen_set){0};
}

void listen_close(struct listen_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		listen_stop(&s->v[i], s->activated);
	free(s->v);
	*s = (struct listen_set){0};
}
