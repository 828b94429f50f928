/* Logging to the journal or to stderr. Entries are built on the stack and
 * written with one call, so concurrent workers never interleave lines and a
 * full disk or a missing journal cannot make an allocation fail here.
 *
 * Journal entries use journald's native protocol directly: one datagram of
 * FIELD=value lines to its socket (systemd documents it as a stable
 * interface, "Native Journal Protocol"), so that libsystemd and what it
 * links stay out of a process that forks for every connection. */
#include "log.h"

#include "log-sink.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_MSG_MAX  1024
#define LOG_LINE_MAX 2048

static struct {
	int level;
	bool journal;
	bool stderr_to_journal; /* stderr is a journal stream: prefix <N> */
} log_state = {.level = LOG_INFO};

static const char *const log_level_names[] = {
    [LOG_ERR] = "err",	 [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int log_level_parse(const char *s)
{
	for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
		if (log_level_names[i] && strcasecmp(s, log_level_names[i]) == 0)
			return i;
	/* syslog's long spellings, as admins type them from habit */
	if (strcasecmp(s, "error") == 0)
		return LOG_ERR;
	if (strcasecmp(s, "warn") == 0)
		return LOG_WARNING;
	return -EINVAL;
}

const char *log_level_name(int level)
{
	if (level < LOG_EMERG)
		return "?";
	if (level <= LOG_ERR)
		return "err";
	if (level > LOG_DEBUG)
		return "debug";
	return log_level_names[level];
}

/* systemd sets JOURNAL_STREAM to "DEV:INODE" of the stream it connected to
 * stderr; a match means our stderr really goes to journald (and was not
 * redirected by a shell in between). */
static bool log_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(enum log_target target, int level)
{
	int saved = errno;
	bool stream = log_stderr_is_journal();

	log_state.level = level;
	log_state.journal = target == LOG_TARGET_JOURNAL || (target == LOG_TARGET_AUTO && stream);
	log_state.stderr_to_journal = stream;
	/* Before the first fork, so that workers inherit the socket: their
	 * sandbox has no connect(). A failure falls back to stderr. */
	if (log_state.journal) {
		int r = log_sink_journal_open();
		/* Said once per setup (start, reload), not per entry: the
		 * admin asked for the journal and gets stderr. */
		if (r < 0)
			log_warning("cannot reach the journal at %s: %s; logging to standard error",
				    LOG_SINK_JOURNAL_SOCKET, strerror(-r));
	}
	/* gmtime_r reads the time zone files the first time it runs; done
	 * here, that first time never falls in a sandboxed worker, which may
	 * not open files. */
	tzset();
	errno = saved;
}

void log_init(void)
{
	log_sink_init();
}

int log_poll_fd(void)
{
	return log_sink_poll_fd();
}

void log_flush(void)
{
	unsigned long long n = log_sink_flush();

	if (n)
		log_warning("%llu log entr%s dropped: the log's output was not taking %s", n,
			    n == 1 ? "y" : "ies", n == 1 ? "it" : "them");
}

void log_forked(void)
{
	log_sink_forked();
}

int log_to_journal(void)
{
	return log_state.journal;
}

int log_enabled(int prio)
{
	return prio <= log_state.level;
}

/* Appends one field in the native protocol: KEY=value and a newline, or,
 * for a value that holds a newline, KEY, a newline, the length as 64-bit
 * little endian, the value and a newline. Returns the new length, or cap+1
 * when it does not fit. */
static size_t log_journal_field(char *buf, size_t used, size_t cap, const char *key,
				const char *val)
{
	size_t kl = strlen(key), vl = strlen(val);
	bool binary = memchr(val, '\n', vl) != NULL;
	size_t need = kl + 1 + (binary ? 8 : 0) + vl + 1;

	if (used + need > cap)
		return cap + 1;
	memcpy(buf + used, key, kl);
	used += kl;
	if (binary) {
		uint64_t le = vl;
		buf[used++] = '\n';
		for (int i = 0; i < 8; i++, le >>= 8)
			buf[used++] = (char)(le & 0xff);
	} else {
		buf[used++] = '=';
	}
	memcpy(buf + used, val, vl);
	used += vl;
	buf[used++] = '\n';
	return used;
}

static int log_journal(int prio, const char *msgid, const struct log_kv *kv, size_t n,
		       const char *msg)
{
	char buf[LOG_LINE_MAX + LOG_MSG_MAX], num[4];
	size_t used = 0, cap = sizeof(buf);

	snprintf(num, sizeof(num), "%d", prio);
	used = log_journal_field(buf, used, cap, "MESSAGE", msg);
	used = log_journal_field(buf, used, cap, "PRIORITY", num);
	used = log_journal_field(buf, used, cap, "SYSLOG_IDENTIFIER", "echod");
	if (msgid)
		used = log_journal_field(buf, used, cap, "MESSAGE_ID", msgid);
	for (size_t i = 0; i < n && used <= cap; i++)
		used = log_journal_field(buf, used, cap, kv[i].key, kv[i].val);
	if (used > cap)
		return -1;
	return log_sink_write(LOG_DEST_JOURNAL, buf, used);
}

/* Appends s to the line, quoted when it holds spaces, quotes or nothing,
 * with control characters escaped so that bytes from the network or a
 * config file can never forge a second line. */
/* Bytes written as \xNN wherever a message or a value is printed. */
static bool log_is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static size_t log_append_value(char *line, size_t used, size_t cap, const char *s, bool quote)
{
	bool need = quote && (*s == '\0' || strpbrk(s, " \"=\\") != NULL);

	if (need && used < cap)
		line[used++] = '"';
	for (; *s && used + 5 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (log_is_control(c))
			used += (size_t)snprintf(line + used, cap - used, "\\x%02x", c);
		else if (need && (c == '"' || c == '\\')) {
			line[used++] = '\\';
			line[used++] = (char)c;
		} else
			line[used++] = (char)c;
	}
	if (need && used < cap)
		line[used++] = '"';
	return used;
}

int log_print_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (log_is_control(c) ? fprintf(f, "\\x%02x", c) < 0 : putc(c, f) == EOF)
			return -EIO;
	}
	return putc('\n', f) == EOF ? -EIO : 0;
}

static void log_stderr(int prio, const struct log_kv *kv, size_t n, const char *msg)
{
	char line[LOG_LINE_MAX];
	size_t used;

	if (log_state.stderr_to_journal) {
		/* journald reads the priority from a <N> prefix and stamps the time */
		used = (size_t)snprintf(line, sizeof(line), "<%d>", prio);
	} else {
		struct timespec ts;
		struct tm tm;
		char when[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		used = (size_t)snprintf(line, sizeof(line), "%s.%03ldZ echod[%ld] %s: ", when,
					ts.tv_nsec / 1000000, (long)getpid(), log_level_name(prio));
	}
	used = log_append_value(line, used, sizeof(line) - 1, msg, false);
	for (size_t i = 0; i < n; i++) {
		if (used + 2 >= sizeof(line) - 1)
			break;
		line[used++] = ' ';
		for (const char *k = kv[i].key; *k && used + 2 < sizeof(line) - 1; k++)
			line[used++] = (char)(*k >= 'A' && *k <= 'Z' ? *k - 'A' + 'a' : *k);
		line[used++] = '=';
		used = log_append_value(line, used, sizeof(line) - 1, kv[i].val, true);
	}
	line[used++] = '\n';
	/* One write: concurrent workers sharing stderr never interleave a line. */
	(void)log_sink_write(LOG_DEST_STDERR, line, used);
}

void log_struct(int prio, const char *msgid, const struct log_kv *kv, size_t n, const char *fmt,
		...)
{
	int saved = errno;
	char msg[LOG_MSG_MAX];
	va_list ap;

	if (!log_enabled(prio))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* An entry the journal did not take still goes somewhere. */
	if (!log_state.journal || log_journal(prio, msgid, kv, n, msg) < 0)
		log_stderr(prio, kv, n, msg);
	errno = saved;
}

int ratelimit_pass(struct ratelimit *rl, uint64_t now_usec, unsigned *suppressed)
{
	if (rl->begin_usec == 0 || now_usec - rl->begin_usec >= rl->interval_usec) {
		rl->begin_usec = now_usec;
		rl->count = 0;
	}
	if (rl->count >= rl->burst) {
		rl->suppressed++;
		return 0;
	}
	rl->count++;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return 1;
}
