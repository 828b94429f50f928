/* Debug entries of the master. Built only when asked for (master-debug.h),
 * so they may spend a few formatting calls each. */
#include "master-debug.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "master-int.h"

void master_peer_text(const struct sockaddr *sa, struct master_peer *p)
{
	unsigned port = 0;

	/* host:port, [v6]:port, as every other message writes a peer */
	if (addr_format(sa, p->name, sizeof(p->name)) < 0)
		snprintf(p->name, sizeof(p->name), "?");
	if (addr_host_port(sa, p->host, sizeof(p->host), &port) < 0)
		snprintf(p->host, sizeof(p->host), "?");
	snprintf(p->port, sizeof(p->port), "%u", port);
}

const char *master_wait_text(int st, char *buf, size_t len)
{
	if (WIFSIGNALED(st)) {
		const char *abbrev = sigabbrev_np(WTERMSIG(st));
		snprintf(buf, len, "SIG%s", abbrev ? abbrev : "?");
		return "SIGNAL";
	}
	snprintf(buf, len, "%d", WEXITSTATUS(st));
	return "EXIT_STATUS";
}

void master_debug_accepted(const struct addr *peer, const struct listener *l)
{
	struct master_peer p;
	char on[ADDR_STRLEN], lport[8];

	master_peer_text((const struct sockaddr *)&peer->ss, &p);
	addr_format((const struct sockaddr *)&l->addr.ss, on, sizeof(on));
	snprintf(lport, sizeof(lport), "%u", addr_port((const struct sockaddr *)&l->addr.ss));
	const struct log_kv kv[] = {
	    {"REMOTE_ADDR", p.host},
	    {"REMOTE_PORT", p.port},
	    {"LOCAL_PORT", lport},
	};
	log_struct(LOG_DEBUG, NULL, kv, 3, "accepted connection from %s on %s", p.name, on);
}

void master_debug_access(const struct addr *peer, const struct access_rules *r,
			 enum access_verdict v, const struct cidr *rule)
{
	static const char *const verdicts[] = {
	    [ACCESS_OK] = "allowed",
	    [ACCESS_DENIED] = "denied",
	    [ACCESS_NOT_ALLOWED] = "not_allowed",
	};
	struct master_peer p;
	char cidr[ADDR_STRLEN], text[ADDR_STRLEN + 8] = "";
	const char *why;

	master_peer_text((const struct sockaddr *)&peer->ss, &p);
	if (rule && access_cidr_format(rule, cidr, sizeof(cidr)) == 0)
		snprintf(text, sizeof(text), "%s %s", v == ACCESS_DENIED ? "deny" : "allow", cidr);
	if (text[0])
		why = v == ACCESS_DENIED ? "denied by" : "allowed by";
	else if (v == ACCESS_NOT_ALLOWED)
		why = "not allowed: no allow rule matches";
	else if (r->n_deny)
		why = "allowed: no deny rule matches";
	else
		why = "allowed: no allow or deny rules";
	const struct log_kv kv[] = {
	    {"REMOTE_ADDR", p.host},
	    {"REMOTE_PORT", p.port},
	    {"ACCESS", verdicts[v]},
	    {"ACCESS_RULE", text},
	};
	log_struct(LOG_DEBUG, NULL, kv, text[0] ? 4 : 3, "access for %s: %s%s%s", p.name, why,
		   text[0] ? " " : "", text);
}

void master_debug_source(const struct master *m, const struct addr *peer, uint64_t now)
{
	const struct sockaddr *sa = (const struct sockaddr *)&peer->ss;
	const struct sources *src = &m->kids.src;
	struct master_peer p;
	char source[ADDR_STRLEN], open[16], limit[16], left[16], burst[16];
	char limits[48], rate[64];
	unsigned b = m->cfg.burst_per_source ? m->cfg.burst_per_source : m->cfg.rate_per_source;
	size_t n = 5; /* the rate's two fields only with a rate rule */

	master_peer_text(sa, &p);
	if (sources_format(src, sa, source, sizeof(source)) < 0)
		snprintf(source, sizeof(source), "?");
	snprintf(open, sizeof(open), "%u", sources_count(src, sa));
	snprintf(limit, sizeof(limit), "%u", m->cfg.max_connections_per_source);
	if (m->cfg.max_connections_per_source)
		snprintf(limits, sizeof(limits), "limit %s", limit);
	else
		snprintf(limits, sizeof(limits), "no limit");
	snprintf(rate, sizeof(rate), "no rate rule");
	if (m->cfg.rate_per_source) {
		snprintf(left, sizeof(left), "%u",
			 sources_rate_left(src, sa, now,
					   m->cfg.rate_period_usec / m->cfg.rate_per_source, b));
		snprintf(burst, sizeof(burst), "%u", b);
		snprintf(rate, sizeof(rate), "rate allowance %s of %s left", left, burst);
		n = 7;
	}
	const struct log_kv kv[] = {
	    {"REMOTE_ADDR", p.host}, {"REMOTE_PORT", p.port}, {"SOURCE", source},
	    {"SOURCE_OPEN", open},   {"SOURCE_LIMIT", limit}, {"RATE_LEFT", left},
	    {"RATE_BURST", burst},
	};
	log_struct(LOG_DEBUG, NULL, kv, n, "source %s of %s: %s open (%s), %s", source, p.name,
		   open, limits, rate);
}

void master_debug_forked(pid_t pid, const struct addr *peer)
{
	struct master_peer p;
	char spid[16];

	master_peer_text((const struct sockaddr *)&peer->ss, &p);
	snprintf(spid, sizeof(spid), "%ld", (long)pid);
	const struct log_kv kv[] = {
	    {"WORKER_PID", spid},
	    {"REMOTE_ADDR", p.host},
	    {"REMOTE_PORT", p.port},
	};
	log_struct(LOG_DEBUG, NULL, kv, 3, "forked worker %s for %s", spid, p.name);
}

void master_debug_reaped(const struct child *c, int st, uint64_t now)
{
	struct master_peer p;
	char spid[16], how[32], dur[24];
	uint64_t usec = now > c->start_usec ? now - c->start_usec : 0;
	const char *key = master_wait_text(st, how, sizeof(how));

	master_peer_text(&c->peer.sa, &p);
	snprintf(spid, sizeof(spid), "%ld", (long)c->pid);
	snprintf(dur, sizeof(dur), "%" PRIu64, usec);
	const struct log_kv kv[] = {
	    {"WORKER_PID", spid}, {"REMOTE_ADDR", p.host}, {"REMOTE_PORT", p.port},
	    {key, how},		  {"DURATION_USEC", dur},
	};
	log_struct(LOG_DEBUG, NULL, kv, 5, "reaped worker %s for %s: %s %s after %" PRIu64 ".%03us",
		   spid, p.name, WIFSIGNALED(st) ? "killed by" : "exited with status", how,
		   usec / 1000000u, (unsigned)(usec / 1000u % 1000u));
}

void master_debug_retired(const struct listener *l, uint64_t taken)
{
	char name[ADDR_STRLEN], n[24];

	addr_format((const struct sockaddr *)&l->addr.ss, name, sizeof(name));
	snprintf(n, sizeof(n), "%" PRIu64, taken);
	const struct log_kv kv[] = {{"TAKEN", n}};
	log_struct(LOG_DEBUG, NULL, kv, 1,
		   "closing the socket listening on %s: new handshakes dropped, %s queued "
		   "connection%s taken",
		   name, n, taken == 1 ? "" : "s");
}

void master_debug_reload(unsigned n, const char *fmt, ...)
{
	char step[512], sn[16];
	va_list ap;

	if (!log_enabled(LOG_DEBUG))
		return;
	va_start(ap, fmt);
	vsnprintf(step, sizeof(step), fmt, ap);
	va_end(ap);
	snprintf(sn, sizeof(sn), "%u", n);
	const struct log_kv kv[] = {{"RELOAD", sn}};
	log_struct(LOG_DEBUG, NULL, kv, 1, "reload %u: %s", n, step);
}
