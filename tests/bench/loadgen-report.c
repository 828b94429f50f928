/* The report of a run: text for people, one JSON object for scripts. */
#include "loadgen.h"

#include <stdio.h>

const char *const lg_mode_names[] = {"rate", "stream", "latency", "hold"};
static const char *const err_names[LG_ERR_KINDS] = {"refused", "reset",	   "eof",
						    "timeout", "mismatch", "other"};

uint64_t lg_total_errors(const struct lg_result *res)
{
	uint64_t n = 0;

	for (int k = 0; k < LG_ERR_KINDS; k++)
		n += res->errors[k];
	return n;
}

static double per_s(uint64_t n, uint64_t ns)
{
	return ns ? (double)n * LG_NSEC / (double)ns : 0;
}

static double us(uint64_t ns)
{
	return (double)ns / 1000;
}

static void json_samples(const char *name, struct lg_samples *s, uint64_t ns, bool comma)
{
	lg_samples_sort(s);
	printf("\"%s\":{\"count\":%llu,\"per_s\":%.1f,\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
	       "\"max\":%.1f}%s",
	       name, (unsigned long long)s->seen, per_s(s->seen, ns),
	       us(lg_samples_permille(s, 500)), us(lg_samples_permille(s, 990)),
	       us(lg_samples_permille(s, 999)), us(lg_samples_permille(s, 1000)), comma ? "," : "");
}

void lg_report_json(const struct lg_opts *o, struct lg_result *res, bool ok)
{
	const struct lg_mem *m = &res->mem;

	printf("{\"mode\":\"%s\",\"host\":\"%s\",\"port\":%u,\"clients\":%zu,\"size\":%zu,"
	       "\"block\":%zu,\"duration_s\":%.3f,\"elapsed_s\":%.6f,\"completed\":%llu,"
	       "\"bytes\":%llu,",
	       lg_mode_names[o->mode], o->host, o->port, o->clients, o->size, o->block,
	       (double)o->duration_ns / LG_NSEC, (double)res->elapsed_ns / LG_NSEC,
	       (unsigned long long)res->completed, (unsigned long long)res->bytes);
	if (o->mode == LG_MODE_RATE)
		printf("\"connections_per_s\":%.1f,", per_s(res->completed, res->elapsed_ns));
	if (o->mode == LG_MODE_STREAM) {
		double bps = per_s(res->bytes, res->elapsed_ns);

		printf("\"bytes_per_s\":%.0f,\"mb_per_s\":%.1f,\"gb_per_s\":%.3f,", bps, bps / 1e6,
		       bps / 1e9);
	}
	if (res->rtt.v || res->cycle.v) {
		printf("\"latency_us\":{");
		if (res->rtt.v)
			json_samples("rtt", &res->rtt, res->rtt_ns, res->cycle.v);
		if (res->cycle.v)
			json_samples("cycle", &res->cycle, res->cycle_ns, false);
		printf("},");
	}
	if (o->mode == LG_MODE_HOLD) {
		printf("\"hold\":{\"requested\":%zu,\"opened\":%llu,\"open_s\":%.3f,"
		       "\"echoed\":%llu,\"check_s\":%.3f,\"echoed_after_hold\":%llu,"
		       "\"hold_s\":%.3f},",
		       o->clients, (unsigned long long)res->opened, (double)res->open_ns / LG_NSEC,
		       (unsigned long long)res->echoed, (double)res->check_ns / LG_NSEC,
		       (unsigned long long)res->echoed_after, (double)o->hold_ns / LG_NSEC);
		if (o->server_pid)
			printf("\"server\":{\"pid\":%d,\"master_rss_kib_before\":%lld,"
			       "\"master_rss_kib_open\":%lld,\"master_rss_kib_after\":%lld,"
			       "\"workers\":%lld,\"worker_private_kib\":%.1f},",
			       o->server_pid, m->rss_before, m->rss_open, m->rss_after, m->workers,
			       m->workers > 0 ? (double)m->worker_private / (double)m->workers : 0);
	}
	printf("\"loadgen_cpu_s\":%.3f,\"loadgen_cpu_share\":%.3f,", (double)res->cpu_ns / LG_NSEC,
	       res->elapsed_ns ? (double)res->cpu_ns / (double)res->elapsed_ns : 0);
	printf("\"errors\":{");
	for (int k = 0; k < LG_ERR_KINDS; k++)
		printf("\"%s\":%llu,", err_names[k], (unsigned long long)res->errors[k]);
	printf("\"total\":%llu},\"unfinished\":%s,\"ok\":%s}\n",
	       (unsigned long long)lg_total_errors(res), res->unfinished ? "true" : "false",
	       ok ? "true" : "false");
}

static void text_samples(const char *name, struct lg_samples *s, uint64_t ns)
{
	lg_samples_sort(s);
	printf("  %-13s p50 %.1f us, p99 %.1f us, p999 %.1f us, max %.1f us"
	       " (%llu in %.3f s, %.0f/s)\n",
	       name, us(lg_samples_permille(s, 500)), us(lg_samples_permille(s, 990)),
	       us(lg_samples_permille(s, 999)), us(lg_samples_permille(s, 1000)),
	       (unsigned long long)s->seen, (double)ns / LG_NSEC, per_s(s->seen, ns));
}

void lg_report_text(const struct lg_opts *o, struct lg_result *res, bool ok)
{
	const struct lg_mem *m = &res->mem;
	double secs = (double)res->elapsed_ns / LG_NSEC;

	printf("%s %s port %u: %zu clients, %.3f s\n", lg_mode_names[o->mode], o->host, o->port,
	       o->clients, (double)o->duration_ns / LG_NSEC);
	if (o->mode == LG_MODE_RATE)
		printf("  %-13s %llu of %zu bytes each in %.3f s: %.0f connections/s\n", "cycles",
		       (unsigned long long)res->completed, o->size, secs,
		       per_s(res->completed, res->elapsed_ns));
	if (o->mode == LG_MODE_STREAM) {
		double bps = per_s(res->bytes, res->elapsed_ns);

		printf("  %-13s %.3f GB in %.3f s: %.3f GB/s (%.1f MB/s), %llu of %zu streams"
		       " complete\n",
		       "echoed", (double)res->bytes / 1e9, secs, bps / 1e9, bps / 1e6,
		       (unsigned long long)res->completed, o->clients);
	}
	if (res->rtt.v)
		text_samples("round trip", &res->rtt, res->rtt_ns);
	if (res->cycle.v)
		text_samples("cycle", &res->cycle, res->cycle_ns);
	if (o->mode == LG_MODE_HOLD) {
		printf("  %-13s %llu of %zu in %.3f s, each echoing once\n", "opened",
		       (unsigned long long)res->opened, o->clients, (double)res->open_ns / LG_NSEC);
		printf("  %-13s %llu echoing at once (in %.3f s); %llu after %.1f s held\n", "held",
		       (unsigned long long)res->echoed, (double)res->check_ns / LG_NSEC,
		       (unsigned long long)res->echoed_after, (double)o->hold_ns / LG_NSEC);
		if (o->server_pid)
			printf("  %-13s master RSS %lld KiB before, %lld open, %lld after the"
			       " hold; %lld workers, %.1f KiB private each\n",
			       "server", m->rss_before, m->rss_open, m->rss_after, m->workers,
			       m->workers > 0 ? (double)m->worker_private / (double)m->workers : 0);
	}
	/* A client that used a whole core measured itself as much as the
	 * server. */
	printf("  %-13s %.3f s, %.0f%% of one core\n", "loadgen cpu", (double)res->cpu_ns / LG_NSEC,
	       res->elapsed_ns ? 100.0 * (double)res->cpu_ns / (double)res->elapsed_ns : 0);
	printf("  %-13s %llu", "errors", (unsigned long long)lg_total_errors(res));
	for (int k = 0; k < LG_ERR_KINDS; k++)
		printf("%s%s %llu", k ? ", " : " (", err_names[k],
		       (unsigned long long)res->errors[k]);
	printf(")\n  %-13s %s%s\n", "result", ok ? "ok" : "FAILED",
	       res->unfinished ? " (unfinished at the deadline)" : "");
}
