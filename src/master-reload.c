/* Reload as a transaction, and the statistics entry. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "master-debug.h"
#include "master-int.h"
#include "notify.h"

void master_reload(struct master *m)
{
	char err[CONFIG_ERR_MAX];
	struct config nc;
	struct listen_set nls;
	unsigned n = ++m->reloads;
	char sn[16];
	int r;

	snprintf(sn, sizeof(sn), "%u", n);
	const struct log_kv kv[] = {{"RELOAD", sn}};
	notify_reloading();
	log_struct(LOG_INFO, NULL, kv, 1, "reloading configuration from %s (reload %u)",
		   m->o->config_path, n);
	r = config_load(m->o->config_path, &nc, err, sizeof(err));
	if (r == 0 && !m->ls.activated &&
	    (r = config_need_listen(&nc, m->o->config_path, err, sizeof(err))) < 0)
		config_free(&nc);
	if (r == 0) {
		master_debug_reload(n, "configuration read from %s", nc.files);
		r = listen_reconcile(&m->ls, &nc, &nls, err, sizeof(err));
		if (r < 0)
			config_free(&nc);
	}
	/* The last step that can fail (memory): regrouping the live workers'
	 * sources by new prefixes. Rate state then starts afresh. */
	const bool regroup = r == 0 && (nc.source_prefix_v4 != m->cfg.source_prefix_v4 ||
					nc.source_prefix_v6 != m->cfg.source_prefix_v6);
	if (r == 0 &&
	    (r = children_set_prefixes(&m->kids, nc.source_prefix_v4, nc.source_prefix_v6)) < 0) {
		snprintf(err, sizeof(err), "cannot regroup sources: %s", strerror(-r));
		listen_abort(&nls, &m->ls);
		config_free(&nc);
	}
	if (r == 0 && regroup)
		master_debug_reload(
		    n, "sources regrouped by /%u and /%u: rate allowances start afresh",
		    nc.source_prefix_v4, nc.source_prefix_v6);
	if (r < 0) {
		snprintf(m->reload_status, sizeof(m->reload_status), "reload %u failed: %s", n,
			 err);
		log_struct(LOG_ERR, LOG_ID_RELOAD_FAILED, kv, 1,
			   "reload %u failed: %s; keeping the previous configuration", n, err);
		master_status(m);
		notify_ready();
		return;
	}

	/* Nothing can fail from here on: swap. A listener going away is
	 * emptied first, under the old rules: closing it would reset what its
	 * backlog holds. Its replacement listens already (listen_bind_new). */
	master_accept_queued(m, &nls);
	listen_commit(&m->ls, &nls);
	m->ls = nls;
	m->ls_gen++;
	if ((nc.user == NULL) != (m->cfg.user == NULL) ||
	    (nc.user && strcmp(nc.user, m->cfg.user) != 0))
		log_warning("user changed in the configuration: takes effect at the next restart");
	config_free(&m->cfg);
	m->cfg = nc;
	log_setup(m->cfg.log_target, m->o->debug ? LOG_DEBUG : m->cfg.log_level);
	master_debug_reload(n, "new settings in force for new connections; %zu open keep theirs",
			    children_open(&m->kids));
	snprintf(m->reload_status, sizeof(m->reload_status), "reload %u ok", n);
	log_struct(LOG_INFO, LOG_ID_RELOADED, kv, 1, "reloaded configuration (reload %u)", n);
	master_status(m);
	notify_ready();
}

void master_stats(struct master *m)
{
	char v[16][24];
	struct log_kv kv[16];
	uint64_t rejected = 0, up = clock_usec() - m->start_usec;
	uint64_t in = m->bytes_in, out = m->bytes_out;
	size_t k = 0;

#define STAT(key, val)                                                                             \
	do {                                                                                       \
		snprintf(v[k], sizeof(v[k]), "%" PRIu64, (uint64_t)(val));                         \
		kv[k] = (struct log_kv){(key), v[k]};                                              \
		k++;                                                                               \
	} while (0)

	for (int i = 0; i < MASTER_REJECT_N; i++)
		rejected += m->rejected[i];
	STAT("ACTIVE", children_open(&m->kids));
	STAT("SOURCES", children_sources(&m->kids));
	STAT("ACCEPTED", m->accepted);
	STAT("REJECTED", rejected);
	STAT("REJECTED_MAX_CONNECTIONS", m->rejected[MASTER_REJECT_MAX_CONN]);
	STAT("REJECTED_PER_SOURCE", m->rejected[MASTER_REJECT_PER_SOURCE]);
	STAT("REJECTED_DENIED", m->rejected[MASTER_REJECT_DENIED]);
	STAT("REJECTED_NOT_ALLOWED", m->rejected[MASTER_REJECT_NOT_ALLOWED]);
	STAT("REJECTED_FORK", m->rejected[MASTER_REJECT_FORK]);
	STAT("REJECTED_RATE", m->rejected[MASTER_REJECT_RATE]);
	STAT("REJECTED_NO_DESCRIPTORS", m->rejected[MASTER_REJECT_NOFILE]);
	STAT("ACCEPT_ERRORS", m->accept_errors);
	STAT("BYTES_IN", in);
	STAT("BYTES_OUT", out);
	STAT("UPTIME_USEC", up);
#undef STAT
	log_struct(LOG_INFO, LOG_ID_STATS, kv, k,
		   "statistics: %zu active, %" PRIu64 " accepted, %" PRIu64 " rejected, %" PRIu64
		   " bytes in and %" PRIu64 " out (finished connections), up %" PRIu64 "s",
		   children_open(&m->kids), m->accepted, rejected, in, out, up / 1000000u);
}
