/* Reading the configuration files through inih, and what can only be
 * checked once all of them are read. The keys themselves are in
 * config-keys.c. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-int.h"
#include "err.h"

static const char *config_file_type(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return "a directory";
	case S_IFIFO:
		return "a FIFO";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	case S_IFSOCK:
		return "a socket";
	default:
		return "not a file";
	}
}

__attribute__((format(printf, 3, 4))) static int config_report(struct config_loader *ld, int rc,
							       const char *fmt, ...)
{
	va_list ap;

	if (ld->rc)
		return ld->rc;
	va_start(ap, fmt);
	vsnprintf(ld->err, ld->errlen, fmt, ap);
	va_end(ap);
	ld->rc = rc;
	ld->err_line = ld->line;
	return rc;
}

int config_fail(struct config_loader *ld, const struct config_key *k, const char *fmt, ...)
{
	char msg[CONFIG_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (k)
		return config_report(ld, -EINVAL, "%s:%u: [%s] %s: %s", ld->file, ld->line,
				     k->section, k->name, msg);
	return config_report(ld, -EINVAL, "%s:%u: %s", ld->file, ld->line, msg);
}

int config_fail_sys(struct config_loader *ld, int rc, const char *path)
{
	return config_report(ld, rc, "%s: %s", path, strerror(-rc));
}

static int config_handle(void *user, const char *section, const char *name, const char *value)
{
	struct config_loader *ld = user;

	if (ld->rc)
		return 0;
	if (!*section)
		return !config_fail(ld, NULL, "\"%s\" comes before any [section]", name);
	return !config_key_set(ld, section, name, value);
}

static int config_check_section(struct config_loader *ld, const char *p)
{
	const char *end = strchr(p, ']');
	size_t len;

	if (!end)
		return config_fail(ld, NULL, "missing \"]\" in section header");
	len = (size_t)(end - p - 1);
	end++;
	end += strspn(end, " \t\r\n");
	if (*end && *end != ';' && *end != '#')
		return config_fail(ld, NULL, "unexpected text after section header");
	if (!config_section_known(p + 1, len))
		return config_fail(ld, NULL, "unknown section [%.*s]", (int)len, p + 1);
	return 0;
}

/* inih gives its handler no line number, so this fgets-style reader counts
 * lines. It also refuses what inih would quietly misread: a line longer
 * than inih's buffer (it would be split in two), and a line that starts
 * with whitespace, which inih appends to the previous value as a Python-
 * style continuation; echod has no multi-line values, so such a line is an
 * error rather than a silent join. Returning NULL ends the parse. */
static char *config_read_line(char *buf, int size, void *stream)
{
	struct config_loader *ld = stream;
	const char *p = buf;
	size_t len = 0;
	bool nul = false;
	int ch;

	if (ld->rc)
		return NULL;
	/* Byte by byte rather than fgets, which hides how much it read: a NUL
	 * would cut the line short unseen, anywhere in it. */
	while (len + 1 < (size_t)size && (ch = getc(ld->f)) != EOF) {
		/* A file may grow after config_open looked at its size (a log
		 * written to by mistake, /proc): the limit holds as it is read. */
		if (++ld->bytes > CONFIG_FILE_MAX) {
			config_report(ld, -EFBIG, "%s: file is too large (more than %d KiB)",
				      ld->file, CONFIG_FILE_MAX >> 10);
			return NULL;
		}
		nul = nul || ch == '\0';
		buf[len++] = (char)ch;
		if (ch == '\n')
			break;
	}
	buf[len] = '\0';
	if (ferror(ld->f)) {
		ld->read_errno = errno;
		return NULL;
	}
	if (len == 0)
		return NULL;
	ld->line++;
	if (nul) {
		config_fail(ld, NULL, "line contains a NUL byte");
		return NULL;
	}
	/* The buffer filled up before a newline: the same limit whether or not
	 * the file ends there. */
	if (len + 1 == (size_t)size && buf[len - 1] != '\n') {
		config_fail(ld, NULL, "line is too long (at most %d characters)", size - 2);
		return NULL;
	}
	if (ld->line == 1 && strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	if (*p == ' ' || *p == '\t') {
		p += strspn(p, " \t\r\n");
		if (*p && *p != ';' && *p != '#') {
			config_fail(
			    ld, NULL,
			    "line starts with whitespace: continuation lines are not supported, "
			    "write each setting on its own line");
			return NULL;
		}
	} else if (*p == '[' && config_check_section(ld, p) < 0) {
		return NULL;
	}
	return buf;
}

/* Opens path for reading only if it is a regular file of at most
 * CONFIG_FILE_MAX bytes. O_NONBLOCK so that a FIFO put where the file
 * should be cannot hang the open (and with it a running master's reload);
 * fstat on what was opened, not a stat before, so that nothing can be
 * swapped in between. */
static int config_open(struct config_loader *ld, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return config_fail_sys(ld, err_last(), path);
	if (fstat(fd, &st) < 0) {
		int r = err_last();
		close(fd);
		return config_fail_sys(ld, r, path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return config_report(ld, -EINVAL, "%s: not a regular file (%s)", path,
				     config_file_type(st.st_mode));
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		close(fd);
		return config_report(ld, -EFBIG,
				     "%s: file is too large (%lld bytes, at most %d KiB)", path,
				     (long long)st.st_size, CONFIG_FILE_MAX >> 10);
	}
	ld->f = fdopen(fd, "r");
	if (!ld->f) {
		int r = err_last();
		close(fd);
		return config_fail_sys(ld, r, path);
	}
	ld->bytes = 0;
	return 0;
}

/* Adds path to c->files. Returns 0 or -ENOMEM. */
static int config_note_file(struct config_loader *ld, const char *path)
{
	char *files;

	if (asprintf(&files, "%s%s%s", ld->c->files ? ld->c->files : "", ld->c->files ? ", " : "",
		     path) < 0)
		return config_fail_sys(ld, -ENOMEM, path);
	free(ld->c->files);
	ld->c->files = files;
	return 0;
}

static int config_load_file(struct config_loader *ld, const char *path)
{
	int r;

	r = config_open(ld, path);
	if (r < 0)
		return r;
	ld->file = path;
	ld->line = 0;
	memset(ld->seen, 0, sizeof(ld->seen));
	r = ini_parse_stream(config_read_line, ld, config_handle, ld);
	fclose(ld->f);
	ld->f = NULL;
	if (ld->read_errno)
		return config_fail_sys(ld, -ld->read_errno, path);
	/* inih returns the first line it could not parse, which may come before
	 * the first error the handler or the reader found. */
	if (r > 0 && (!ld->rc || (unsigned)r < ld->err_line)) {
		ld->rc = 0;
		ld->line = (unsigned)r;
		return config_fail(
		    ld, NULL, "syntax error: expected \"key = value\", \"[section]\" or a comment");
	}
	if (r < 0)
		return config_fail_sys(ld, -ENOMEM, path);
	if (ld->rc == 0)
		return config_note_file(ld, path);
	return ld->rc;
}

static int config_dropin_name(const struct dirent *de)
{
	size_t len = strlen(de->d_name);

	return de->d_name[0] != '.' && len > 5 && strcmp(de->d_name + len - 5, ".conf") == 0;
}

/* strcmp, not the locale's collation: the order must not depend on the
 * environment echod starts in. */
static int config_dropin_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int config_load_dropins(struct config_loader *ld, const char *dir)
{
	struct dirent **list;
	char *path;
	int n = scandir(dir, &list, config_dropin_name, config_dropin_cmp), r = 0;

	if (n < 0)
		return errno == ENOENT ? 0 : config_fail_sys(ld, err_last(), dir);
	for (int i = 0; i < n; i++) {
		if (r == 0 && asprintf(&path, "%s/%s", dir, list[i]->d_name) < 0) {
			r = config_fail_sys(ld, -ENOMEM, dir);
		} else if (r == 0) {
			/* A *.conf that is a directory, a FIFO or a device is a
			 * mistake to report (config_open), as is a dangling
			 * link: each was meant to be read. */
			r = config_load_file(ld, path);
			free(path);
		}
		free(list[i]);
	}
	free(list);
	return r;
}

/* What can only be judged once every file has been read. */
static int config_check(struct config_loader *ld)
{
	struct config *c = ld->c;
	struct passwd *pw;

	if (c->n_listen == 0 && ld->listen_cleared_at)
		return config_report(
		    ld, -EINVAL,
		    "%s: [server] listen: no listen address is left after this empty value",
		    ld->listen_cleared_at);
	if (!c->user)
		return 0;
	errno = 0;
	pw = getpwnam(c->user);
	if (!pw && errno && errno != ENOENT && errno != ESRCH && errno != EBADF && errno != EPERM)
		return config_report(ld, err_last(), "%s: [server] user: cannot look up \"%s\": %s",
				     ld->user_at, c->user, strerror(errno));
	if (!pw)
		return config_report(ld, -EINVAL, "%s: [server] user: unknown user \"%s\"",
				     ld->user_at, c->user);
	c->uid = pw->pw_uid;
	c->gid = pw->pw_gid;
	return 0;
}

int config_load(const char *path, struct config *c, char *err, size_t errlen)
{
	struct config_loader ld = {.c = c, .err = err, .errlen = errlen};
	char *dir = NULL;
	int r;

	if (errlen > 0)
		err[0] = '\0';
	r = config_defaults(c);
	if (r < 0)
		return config_fail_sys(&ld, r, path);
	r = config_load_file(&ld, path);
	if (r == 0 && asprintf(&dir, "%s.d", path) < 0) {
		dir = NULL;
		r = config_fail_sys(&ld, -ENOMEM, path);
	}
	if (r == 0)
		r = config_load_dropins(&ld, dir);
	if (r == 0)
		r = config_check(&ld);
	free(dir);
	free(ld.listen_cleared_at);
	free(ld.user_at);
	if (r < 0)
		config_free(c);
	return r;
}

int config_need_listen(const struct config *c, const char *path, char *err, size_t errlen)
{
	if (c->n_listen > 0)
		return 0;
	snprintf(err, errlen,
		 "%s: [server] listen: no listen address is set (and no socket was passed by "
		 "systemd)",
		 path);
	return -EINVAL;
}

void config_free(struct config *c)
{
	free(c->listen);
	free(c->user);
	free(c->files);
	access_rules_free(&c->access);
	memset(c, 0, sizeof(*c));
}
