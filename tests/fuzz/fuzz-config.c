/* libFuzzer target for the configuration loader (config.c, config-keys.c)
 * through config_load.
 *
 * The input is the main file; each "#@drop-in\n" in it ends a file and
 * starts the next drop-in, PATH.d/00.conf, 01.conf and so on, up to
 * MAX_DROPINS (further marks stay in the last one, as comments). A load
 * that fails must leave nothing to free and name one of the files, with a
 * line inside it. A load that succeeds must have read files without NUL
 * bytes or over-long lines, give values within their documented ranges,
 * and come back unchanged through config_dump and a second load. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_DROPINS 4
/* echod.conf(5): "A line may hold at most 198 characters." */
#define MAX_LINE 198

static const char dropin_mark[] = "#@drop-in\n";
#define MARK_LEN (sizeof(dropin_mark) - 1)

struct file {
	char path[PATH_MAX];
	const uint8_t *data;
	size_t len;
};

/* [0] is the main file, then the drop-ins of the input being run. */
static struct file files[1 + MAX_DROPINS];
static size_t n_files;
static char dir[PATH_MAX / 2];
static char dropin_dir[PATH_MAX];
static char dump_path[PATH_MAX];

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *p = data;

	FUZZ_CHECK(fd >= 0, "cannot create %s: %s", path, strerror(errno));
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		FUZZ_CHECK(w > 0, "cannot write %s: %s", path, strerror(errno));
		p += w;
		len -= (size_t)w;
	}
	close(fd);
}

static void cleanup(void)
{
	for (size_t i = 1; i <= MAX_DROPINS; i++)
		unlink(files[i].path);
	unlink(files[0].path);
	unlink(dump_path);
	rmdir(dropin_dir);
	rmdir(dir);
}

/* Files go to a directory of this process, under $TMPDIR, so that fuzzers
 * running side by side do not share them. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/echod-fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	FUZZ_CHECK(mkdtemp(dir), "mkdtemp %s: %s", dir, strerror(errno));
	snprintf(files[0].path, sizeof(files[0].path), "%s/echod.conf", dir);
	snprintf(dropin_dir, sizeof(dropin_dir), "%s.d", files[0].path);
	for (size_t i = 1; i <= MAX_DROPINS; i++)
		snprintf(files[i].path, sizeof(files[i].path), "%s/%02zu.conf", dropin_dir, i - 1);
	/* Its PATH.d does not exist: the dump is read alone. */
	snprintf(dump_path, sizeof(dump_path), "%s/dump.conf", dir);
	FUZZ_CHECK(mkdir(dropin_dir, 0700) == 0, "mkdir %s: %s", dropin_dir, strerror(errno));
	atexit(cleanup);
	return 0;
}

static void split(const uint8_t *data, size_t size)
{
	const uint8_t *mark;

	n_files = 0;
	for (;;) {
		struct file *f = &files[n_files++];

		mark = n_files <= MAX_DROPINS ? memmem(data, size, dropin_mark, MARK_LEN) : NULL;
		f->data = data;
		f->len = mark ? (size_t)(mark - data) : size;
		if (!mark)
			return;
		size -= f->len + MARK_LEN;
		data = mark + MARK_LEN;
	}
}

static unsigned count_lines(const struct file *f)
{
	unsigned n = 0;

	for (size_t i = 0; i < f->len; i++)
		n += f->data[i] == '\n';
	return n + (f->len > 0 && f->data[f->len - 1] != '\n');
}

/* The loader's own comments promise to refuse both: inih would silently
 * cut a line at a NUL byte, or split a long line in two. */
static void check_accepted_bytes(void)
{
	for (size_t i = 0; i < n_files; i++) {
		const struct file *f = &files[i];
		size_t start = 0;

		FUZZ_CHECK(!memchr(f->data, '\0', f->len), "%s was accepted with a NUL byte",
			   f->path);
		for (size_t j = 0; j <= f->len; j++) {
			if (j < f->len && f->data[j] != '\n')
				continue;
			FUZZ_CHECK(j - start <= MAX_LINE,
				   "%s was accepted with a line of %zu characters", f->path,
				   j - start);
			start = j + 1;
		}
	}
}

static void check_values(const struct config *c)
{
	struct passwd *pw;

	/* No listen address loads (socket activation needs none); then the
	 * check that start and reload make must refuse it. */
	if (c->n_listen == 0) {
		char err[CONFIG_ERR_MAX];

		FUZZ_CHECK(c->listen == NULL &&
			       config_need_listen(c, "x", err, sizeof(err)) == -EINVAL,
			   "a config without listen passes config_need_listen");
	}
	for (size_t i = 0; i < c->n_listen; i++) {
		unsigned port = addr_port((const struct sockaddr *)&c->listen[i].ss);
		int family = c->listen[i].ss.ss_family;

		FUZZ_CHECK((family == AF_INET || family == AF_INET6) && port >= 1,
			   "listen[%zu]: family %d, port %u", i, family, port);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(!addr_equal(&c->listen[i], &c->listen[j]),
				   "listen[%zu] and listen[%zu] are the same address", j, i);
	}
	FUZZ_CHECK(c->backlog >= 1 && c->backlog <= 65535, "backlog %u", c->backlog);
	FUZZ_CHECK(c->max_connections >= 1 && c->max_connections <= 1000000, "max_connections %u",
		   c->max_connections);
	FUZZ_CHECK(c->max_connections_per_source <= 1000000, "max_connections_per_source %u",
		   c->max_connections_per_source);
	if (c->user) {
		pw = getpwnam(c->user);
		FUZZ_CHECK(pw && pw->pw_uid == c->uid && pw->pw_gid == c->gid,
			   "user \"%s\" resolved to %u:%u", c->user, (unsigned)c->uid,
			   (unsigned)c->gid);
	}
	for (size_t i = 0; i < c->access.n_allow + c->access.n_deny; i++) {
		const struct cidr *r = i < c->access.n_allow
					   ? &c->access.allow[i]
					   : &c->access.deny[i - c->access.n_allow];

		FUZZ_CHECK((r->family == AF_INET && r->prefix <= 32) ||
			       (r->family == AF_INET6 && r->prefix <= 128),
			   "access rule %zu: family %d, prefix %u", i, r->family, r->prefix);
	}
	FUZZ_CHECK(c->log_level >= LOG_ERR && c->log_level <= LOG_DEBUG, "level %d", c->log_level);
	FUZZ_CHECK(c->log_target == LOG_TARGET_AUTO || c->log_target == LOG_TARGET_JOURNAL ||
		       c->log_target == LOG_TARGET_STDERR,
		   "target %d", (int)c->log_target);
}

static bool same_cidrs(const struct cidr *a, size_t na, const struct cidr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		if (a[i].family != b[i].family || a[i].prefix != b[i].prefix ||
		    memcmp(a[i].addr, b[i].addr, sizeof(a[i].addr)) != 0)
			return false;
	}
	return true;
}

static bool same_config(const struct config *a, const struct config *b)
{
	if (a->n_listen != b->n_listen)
		return false;
	for (size_t i = 0; i < a->n_listen; i++) {
		if (!addr_equal(&a->listen[i], &b->listen[i]))
			return false;
	}
	if (!a->user != !b->user || (a->user && strcmp(a->user, b->user) != 0))
		return false;
	return a->backlog == b->backlog && a->uid == b->uid && a->gid == b->gid &&
	       a->drain_timeout_usec == b->drain_timeout_usec &&
	       a->max_connections == b->max_connections &&
	       a->max_connections_per_source == b->max_connections_per_source &&
	       a->idle_timeout_usec == b->idle_timeout_usec &&
	       same_cidrs(a->access.allow, a->access.n_allow, b->access.allow, b->access.n_allow) &&
	       same_cidrs(a->access.deny, a->access.n_deny, b->access.deny, b->access.n_deny) &&
	       a->log_level == b->log_level && a->log_connections == b->log_connections &&
	       a->log_target == b->log_target;
}

static char *dump(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	FUZZ_CHECK(f, "open_memstream: %s", strerror(errno));
	config_dump(c, f);
	fclose(f);
	return text;
}

static void check_round_trip(const struct config *a)
{
	char err[CONFIG_ERR_MAX];
	char *first = dump(a), *second;
	struct config b;
	int r;

	write_file(dump_path, first, strlen(first));
	r = config_load(dump_path, &b, err, sizeof(err));
	FUZZ_CHECK(r == 0, "the dump does not load again (%d): %s\n---- dump\n%s----", r, err,
		   first);
	second = dump(&b);
	FUZZ_CHECK(same_config(a, &b),
		   "the dump loads to another configuration\n---- dump\n%s---- its dump\n%s----",
		   first, second);
	FUZZ_CHECK(strcmp(first, second) == 0,
		   "dumping the reloaded dump changes it\n---- dump\n%s---- its dump\n%s----",
		   first, second);
	free(first);
	free(second);
	config_free(&b);
}

/* "FILE:LINE: message" for what is wrong in a file, "FILE: reason" for
 * what could not be read. */
static void check_error(int r, const char *err, const struct config *c)
{
	const struct file *f = NULL;
	size_t named = 0;
	unsigned long line;
	const char *p;
	char *end;

	FUZZ_CHECK(!c->listen && c->n_listen == 0 && !c->user && !c->access.allow &&
		       !c->access.deny && c->access.n_allow == 0 && c->access.n_deny == 0,
		   "a failed load (%d) left something in the config", r);
	FUZZ_CHECK(r < 0 && memchr(err, '\0', CONFIG_ERR_MAX) && err[0],
		   "config_load = %d with an empty or unterminated message", r);
	for (size_t i = 0; i < n_files; i++) {
		size_t len = strlen(files[i].path);

		if (len > named && strncmp(err, files[i].path, len) == 0 && err[len] == ':') {
			f = &files[i];
			named = len;
		}
	}
	FUZZ_CHECK(f, "the error names none of the files: %s", err);
	p = err + named + 1;
	if (r != -EINVAL) {
		FUZZ_CHECK(*p == ' ', "config_load = %d, error \"%s\"", r, err);
		return;
	}
	line = strtoul(p, &end, 10);
	FUZZ_CHECK(*p >= '0' && *p <= '9' && *end == ':' && line >= 1 && line <= count_lines(f),
		   "the error does not name a line of its file (%u lines): %s", count_lines(f),
		   err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONFIG_ERR_MAX];
	struct config c;
	int r;

	split(data, size);
	for (size_t i = 0; i < n_files; i++)
		write_file(files[i].path, files[i].data, files[i].len);
	r = config_load(files[0].path, &c, err, sizeof(err));
	if (r == 0) {
		check_accepted_bytes();
		check_values(&c);
		check_round_trip(&c);
		config_free(&c);
	} else {
		check_error(r, err, &c);
	}
	for (size_t i = 1; i < n_files; i++)
		unlink(files[i].path);
	return 0;
}
