#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

#define SEC UINT64_C(1000000)

/* Sized so that every path and message built below fits. */
static char tmpdir[160];
static char last_path[200]; /* the main file of the last case */
static int n_cases;

static void write_bytes(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_INT(fwrite(data, 1, len, f), len);
	CHECK_INT(fclose(f), 0);
}

static void write_file(const char *path, const char *text)
{
	write_bytes(path, text, strlen(text));
}

/* A fresh directory for one case; last_path becomes DIR/echod.conf. */
static const char *new_case(void)
{
	char dir[180];

	snprintf(dir, sizeof(dir), "%s/%d", tmpdir, ++n_cases);
	CHECK_INT(mkdir(dir, 0700), 0);
	snprintf(last_path, sizeof(last_path), "%s/echod.conf", dir);
	return last_path;
}

/* Writes a drop-in of the current case, creating echod.conf.d/ if needed. */
static void put_dropin(const char *name, const char *text)
{
	char path[300];

	snprintf(path, sizeof(path), "%s.d", last_path);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s.d/%s", last_path, name);
	write_file(path, text);
}

static int load_text(const char *text, struct config *c, char *err)
{
	write_file(new_case(), text);
	return config_load(last_path, c, err, CONFIG_ERR_MAX);
}

static void check_empty(const struct config *c)
{
	CHECK(c->listen == NULL && c->n_listen == 0);
	CHECK(c->user == NULL);
	CHECK(c->access.allow == NULL && c->access.n_allow == 0);
	CHECK(c->access.deny == NULL && c->access.n_deny == 0);
}

/* The whole message, with the path of the case and the line. */
#define EXPECT_ERR(text, line, msg) expect_err(__LINE__, (text), (line), (msg), false)
/* Only the start: the rest comes from another module's wording. */
#define EXPECT_ERR_PREFIX(text, line, msg) expect_err(__LINE__, (text), (line), (msg), true)

static void expect_err(int at, const char *text, unsigned line, const char *msg, bool prefix)
{
	int before = check_failures;
	char err[CONFIG_ERR_MAX], want[1024];
	struct config c;

	CHECK_INT(load_text(text, &c, err), -EINVAL);
	check_empty(&c);
	snprintf(want, sizeof(want), "%s:%u: %s", last_path, line, msg);
	if (prefix) {
		CHECK(strncmp(err, want, strlen(want)) == 0 && strlen(err) > strlen(want));
		if (check_failures != before)
			fprintf(stderr, "  got \"%s\"\n  want \"%s...\"\n", err, want);
	} else {
		CHECK_STR(err, want);
	}
	if (check_failures != before)
		fprintf(stderr, "  (case on line %d)\n", at);
}

#define EXPECT_OK(text, c) expect_ok(__LINE__, (text), (c))

static void expect_ok(int at, const char *text, struct config *c)
{
	char err[CONFIG_ERR_MAX];

	CHECK_INT(load_text(text, c, err), 0);
	CHECK_STR(err, "");
	if (err[0])
		fprintf(stderr, "  (case on line %d)\n", at);
}

static void check_listen(const struct config *c, size_t i, const char *want)
{
	char buf[ADDR_STRLEN] = "";

	CHECK(i < c->n_listen);
	if (i < c->n_listen)
		addr_format((const struct sockaddr *)&c->listen[i].ss, buf, sizeof(buf));
	CHECK_STR(buf, want);
}

static void check_same_cidrs(const struct cidr *a, size_t na, const struct cidr *b, size_t nb)
{
	CHECK_INT(na, nb);
	for (size_t i = 0; i < na && i < nb; i++) {
		CHECK_INT(a[i].family, b[i].family);
		CHECK_INT(a[i].prefix, b[i].prefix);
		CHECK(memcmp(a[i].addr, b[i].addr, a[i].family == AF_INET ? 4 : 16) == 0);
	}
}

static void check_same(const struct config *a, const struct config *b)
{
	CHECK_INT(a->n_listen, b->n_listen);
	for (size_t i = 0; i < a->n_listen && i < b->n_listen; i++)
		CHECK(addr_equal(&a->listen[i], &b->listen[i]));
	CHECK_INT(a->backlog, b->backlog);
	CHECK((a->user == NULL) == (b->user == NULL));
	if (a->user && b->user) {
		CHECK_STR(a->user, b->user);
		CHECK_INT(a->uid, b->uid);
		CHECK_INT(a->gid, b->gid);
	}
	CHECK(a->drain_timeout_usec == b->drain_timeout_usec);
	CHECK_INT(a->max_connections, b->max_connections);
	CHECK_INT(a->max_connections_per_source, b->max_connections_per_source);
	CHECK(a->idle_timeout_usec == b->idle_timeout_usec);
	CHECK_INT(a->rate_per_source, b->rate_per_source);
	CHECK(a->rate_period_usec == b->rate_period_usec);
	CHECK_INT(a->burst_per_source, b->burst_per_source);
	CHECK_INT(a->source_prefix_v4, b->source_prefix_v4);
	CHECK_INT(a->source_prefix_v6, b->source_prefix_v6);
	CHECK(a->max_lifetime_usec == b->max_lifetime_usec);
	check_same_cidrs(a->access.allow, a->access.n_allow, b->access.allow, b->access.n_allow);
	check_same_cidrs(a->access.deny, a->access.n_deny, b->access.deny, b->access.n_deny);
	CHECK_INT(a->log_level, b->log_level);
	CHECK_INT(a->log_connections, b->log_connections);
	CHECK_INT(a->log_target, b->log_target);
}

static char *dump(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	CHECK(f != NULL);
	if (!f)
		return NULL;
	config_dump(c, f);
	fclose(f);
	return text;
}

static void test_defaults(void)
{
	static const char want_dump[] = "[server]\n"
					"backlog = 511\n"
					"# user: not set, echod keeps the user it was started as\n"
					"drain_timeout = 30s\n"
					"\n"
					"[limits]\n"
					"max_connections = 1024\n"
					"max_connections_per_source = 64\n"
					"rate_per_source = 0\n"
					"burst_per_source = 0\n"
					"source_prefix_v4 = 32\n"
					"source_prefix_v6 = 64\n"
					"idle_timeout = 5min\n"
					"max_lifetime = 0\n"
					"\n"
					"[access]\n"
					"# allow: none\n"
					"# deny: none\n"
					"\n"
					"[log]\n"
					"level = info\n"
					"connections = yes\n"
					"target = auto\n";
	struct config d, c;
	char *text;

	CHECK_INT(config_defaults(&d), 0);
	CHECK_INT(d.n_listen, 0);
	CHECK(d.listen == NULL);
	CHECK_INT(d.backlog, 511);
	CHECK(d.user == NULL);
	CHECK(d.drain_timeout_usec == 30 * SEC);
	CHECK_INT(d.max_connections, 1024);
	CHECK_INT(d.max_connections_per_source, 64);
	CHECK(d.idle_timeout_usec == 300 * SEC);
	CHECK_INT(d.rate_per_source, 0);
	CHECK_INT(d.burst_per_source, 0);
	CHECK_INT(d.source_prefix_v4, 32);
	CHECK_INT(d.source_prefix_v6, 64);
	CHECK(d.max_lifetime_usec == 0);
	CHECK_INT(d.access.n_allow, 0);
	CHECK_INT(d.access.n_deny, 0);
	CHECK_INT(d.log_level, LOG_INFO);
	CHECK(d.log_connections);
	CHECK_INT(d.log_target, LOG_TARGET_AUTO);

	/* Comments and blank lines alone leave every default in place. */
	EXPECT_OK("; nothing\n# here\n\n[server]\n[limits]\n", &c);
	check_same(&c, &d);
	text = dump(&c);
	CHECK_STR(text, want_dump);
	free(text);
	config_free(&c);
	check_empty(&c);
	config_free(&c);
	config_free(&d);
}

static void test_every_key(void)
{
	static const char text[] = "; every key, each with a value other than its default\n"
				   "[server]\n"
				   "listen = 127.0.0.1:7001\n"
				   "listen = [::1]:7002 ; inline comment\n"
				   "listen = *:7003\n"
				   "backlog = 128\n"
				   "user = root\n"
				   "drain_timeout = 1min 30s\n"
				   "\n"
				   "[limits]\n"
				   "max_connections = 1000000\n"
				   "max_connections_per_source = 0\n"
				   "rate_per_source = 600/min\n"
				   "burst_per_source = 50\n"
				   "source_prefix_v4 = 24\n"
				   "source_prefix_v6 = 48\n"
				   "idle_timeout = 0\n"
				   "max_lifetime = 1h\n"
				   "\n"
				   "[access]\n"
				   "allow = 192.0.2.0/24\n"
				   "allow = 2001:db8::/32\n"
				   "deny = 192.0.2.7\n"
				   "\n"
				   "[log]\n"
				   "level = debug\n"
				   "connections = no\n"
				   "target = stderr\n";
	struct config c;

	EXPECT_OK(text, &c);
	CHECK_INT(c.n_listen, 4);
	check_listen(&c, 0, "127.0.0.1:7001");
	check_listen(&c, 1, "[::1]:7002");
	check_listen(&c, 2, "0.0.0.0:7003");
	check_listen(&c, 3, "[::]:7003");
	CHECK_INT(c.backlog, 128);
	CHECK_STR(c.user, "root");
	CHECK_INT(c.uid, 0);
	CHECK_INT(c.gid, 0);
	CHECK(c.drain_timeout_usec == 90 * SEC);
	CHECK_INT(c.max_connections, 1000000);
	CHECK_INT(c.max_connections_per_source, 0);
	CHECK(c.idle_timeout_usec == 0);
	CHECK_INT(c.rate_per_source, 600);
	CHECK(c.rate_period_usec == 60 * SEC);
	CHECK_INT(c.burst_per_source, 50);
	CHECK_INT(c.source_prefix_v4, 24);
	CHECK_INT(c.source_prefix_v6, 48);
	CHECK(c.max_lifetime_usec == 3600 * SEC);
	CHECK_INT(c.access.n_allow, 2);
	CHECK_INT(c.access.n_deny, 1);
	if (c.access.n_allow == 2 && c.access.n_deny == 1) {
		CHECK_INT(c.access.allow[0].family, AF_INET);
		CHECK_INT(c.access.allow[0].prefix, 24);
		CHECK_INT(c.access.allow[1].family, AF_INET6);
		CHECK_INT(c.access.allow[1].prefix, 32);
		CHECK_INT(c.access.deny[0].family, AF_INET);
		CHECK_INT(c.access.deny[0].prefix, 32);
	}
	CHECK_INT(c.log_level, LOG_DEBUG);
	CHECK(!c.log_connections);
	CHECK_INT(c.log_target, LOG_TARGET_STDERR);
	config_free(&c);

	/* The other accepted values and the ends of each range. */
	EXPECT_OK("[server]\nbacklog = 1\n[limits]\nmax_connections = 1\n"
		  "max_connections_per_source = 1000000\n[log]\nlevel = err\ntarget = journal\n"
		  "connections = on\n",
		  &c);
	CHECK_INT(c.backlog, 1);
	CHECK_INT(c.max_connections, 1);
	CHECK_INT(c.max_connections_per_source, 1000000);
	CHECK_INT(c.log_level, LOG_ERR);
	CHECK_INT(c.log_target, LOG_TARGET_JOURNAL);
	CHECK(c.log_connections);
	config_free(&c);
	EXPECT_OK("[server]\nbacklog = 65535\ndrain_timeout = 0\n[limits]\nidle_timeout = 2h\n"
		  "[log]\nlevel = warning\ntarget = auto\nconnections = false\n",
		  &c);
	CHECK_INT(c.backlog, 65535);
	CHECK(c.drain_timeout_usec == 0);
	CHECK(c.idle_timeout_usec == 7200 * SEC);
	CHECK_INT(c.log_level, LOG_WARNING);
	CHECK_INT(c.log_target, LOG_TARGET_AUTO);
	CHECK(!c.log_connections);
	config_free(&c);
	EXPECT_OK("[log]\nlevel = notice\n", &c);
	CHECK_INT(c.log_level, LOG_NOTICE);
	config_free(&c);
}

static void test_bad_values(void)
{
	EXPECT_ERR("[server]\nbacklog = abc\n", 2, "[server] backlog: \"abc\" is not a number");
	EXPECT_ERR("[server]\nbacklog = -1\n", 2, "[server] backlog: \"-1\" is not a number");
	EXPECT_ERR("[server]\nbacklog = 0\n", 2,
		   "[server] backlog: \"0\" is out of range (1..65535)");
	EXPECT_ERR("[server]\nbacklog = 65536\n", 2,
		   "[server] backlog: \"65536\" is out of range (1..65535)");
	EXPECT_ERR("[server]\nbacklog =\n", 2, "[server] backlog: empty value");
	EXPECT_ERR("[server]\ndrain_timeout = soon\n", 2,
		   "[server] drain_timeout: \"soon\" is not a duration (as in 500ms, 30s, 5min, "
		   "1h 30min)");
	EXPECT_ERR("[server]\ndrain_timeout = -1s\n", 2,
		   "[server] drain_timeout: \"-1s\" is not a duration (as in 500ms, 30s, 5min, "
		   "1h 30min)");
	EXPECT_ERR("[server]\ndrain_timeout = 18446744073709551615s\n", 2,
		   "[server] drain_timeout: \"18446744073709551615s\" is too long a duration");
	EXPECT_ERR("[server]\ndrain_timeout =\n", 2, "[server] drain_timeout: empty value");
	/* Every duration stops at 365 days, so that now + duration cannot
	 * wrap: the largest value the parser takes used to end every
	 * connection at once as max_lifetime. */
	{
		static const char *const keys[][2] = {
		    {"server", "drain_timeout"},
		    {"limits", "idle_timeout"},
		    {"limits", "max_lifetime"},
		};
		char text[128], want[160];
		struct config c;

		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			snprintf(text, sizeof(text), "[%s]\n%s = 365d\n", keys[i][0], keys[i][1]);
			EXPECT_OK(text, &c);
			CHECK(c.drain_timeout_usec + c.idle_timeout_usec + c.max_lifetime_usec >=
			      CONFIG_DURATION_MAX_USEC);
			config_free(&c);
			snprintf(text, sizeof(text), "[%s]\n%s = 365d 1us\n", keys[i][0],
				 keys[i][1]);
			snprintf(want, sizeof(want),
				 "[%s] %s: \"365d 1us\" is out of range (at most 365d)", keys[i][0],
				 keys[i][1]);
			EXPECT_ERR(text, 2, want);
			snprintf(text, sizeof(text), "[%s]\n%s = 18446744073709551615us\n",
				 keys[i][0], keys[i][1]);
			snprintf(
			    want, sizeof(want),
			    "[%s] %s: \"18446744073709551615us\" is out of range (at most 365d)",
			    keys[i][0], keys[i][1]);
			EXPECT_ERR(text, 2, want);
		}
	}
	EXPECT_ERR("[server]\nuser =\n", 2, "[server] user: empty value");
	EXPECT_ERR("[server]\n\nuser = no-such-user-echod-test\n", 3,
		   "[server] user: unknown user \"no-such-user-echod-test\"");

	EXPECT_ERR("\n\n[limits]\n\nmax_connections = 1000001\n", 5,
		   "[limits] max_connections: \"1000001\" is out of range (1..1000000)");
	EXPECT_ERR("[limits]\nmax_connections = 0\n", 2,
		   "[limits] max_connections: \"0\" is out of range (1..1000000)");
	EXPECT_ERR("[limits]\nmax_connections = 1e3\n", 2,
		   "[limits] max_connections: \"1e3\" is not a number");
	EXPECT_ERR("[limits]\nmax_connections =\n", 2, "[limits] max_connections: empty value");
	EXPECT_ERR("[limits]\nmax_connections_per_source = 1000001\n", 2,
		   "[limits] max_connections_per_source: \"1000001\" is out of range (0..1000000)");
	EXPECT_ERR("[limits]\nmax_connections_per_source = none\n", 2,
		   "[limits] max_connections_per_source: \"none\" is not a number");
	EXPECT_ERR("[limits]\nmax_connections_per_source =\n", 2,
		   "[limits] max_connections_per_source: empty value");
	EXPECT_ERR(
	    "[limits]\nidle_timeout = 5 parsecs\n", 2,
	    "[limits] idle_timeout: \"5 parsecs\" is not a duration (as in 500ms, 30s, 5min, "
	    "1h 30min)");
	EXPECT_ERR("[limits]\nidle_timeout = 99999999999999999999min\n", 2,
		   "[limits] idle_timeout: \"99999999999999999999min\" is too long a duration");
	EXPECT_ERR("[limits]\nidle_timeout =\n", 2, "[limits] idle_timeout: empty value");
	EXPECT_ERR("[limits]\n\nrate_per_source = 20\n", 3,
		   "[limits] rate_per_source: \"20\" is not a rate (as in 20/s, 600/min, 1000/h; 0 "
		   "for no limit)");
	EXPECT_ERR("[limits]\nrate_per_source = 0/s\n", 2,
		   "[limits] rate_per_source: \"0/s\" is out of range (1..1000000 per unit, or 0)");
	EXPECT_ERR("[limits]\nburst_per_source = 1000001\n", 2,
		   "[limits] burst_per_source: \"1000001\" is out of range (0..1000000)");
	EXPECT_ERR("[limits]\nsource_prefix_v4 = 0\n", 2,
		   "[limits] source_prefix_v4: \"0\" is out of range (1..32)");
	EXPECT_ERR("[limits]\nsource_prefix_v4 = 33\n", 2,
		   "[limits] source_prefix_v4: \"33\" is out of range (1..32)");
	EXPECT_ERR("[limits]\nsource_prefix_v6 = 129\n", 2,
		   "[limits] source_prefix_v6: \"129\" is out of range (1..128)");
	EXPECT_ERR("[limits]\nmax_lifetime = forever\n", 2,
		   "[limits] max_lifetime: \"forever\" is not a duration (as in 500ms, 30s, 5min, "
		   "1h 30min)");

	EXPECT_ERR("[log]\nlevel = loud\n", 2,
		   "[log] level: \"loud\" is not a level (debug, info, notice, warning, err)");
	EXPECT_ERR("[log]\nlevel =\n", 2, "[log] level: empty value");
	EXPECT_ERR("[log]\nconnections = maybe\n", 2,
		   "[log] connections: \"maybe\" is not a boolean (yes/no, true/false, on/off, "
		   "1/0)");
	EXPECT_ERR("[log]\nconnections =\n", 2, "[log] connections: empty value");
	EXPECT_ERR("[log]\ntarget = syslog\n", 2,
		   "[log] target: \"syslog\" is not a target (auto, journal, stderr)");
	EXPECT_ERR("[log]\ntarget =\n", 2, "[log] target: empty value");
}

static void test_bad_addresses(void)
{
	EXPECT_ERR("[server]\nlisten = localhost:7\n", 2,
		   "[server] listen: \"localhost:7\": host must be a numeric IPv4 or IPv6 "
		   "address, or *");
	EXPECT_ERR("[server]\nlisten = 127.0.0.1:7\n\nlisten = 127.0.0.1:0\n", 4,
		   "[server] listen: \"127.0.0.1:0\": port must be 1..65535");
	EXPECT_ERR("[server]\nlisten = [::1]\n", 2, "[server] listen: \"[::1]\": missing :PORT");
	/* bind would fail on the second one: say so now, with its line. */
	EXPECT_ERR("[server]\nlisten = 127.0.0.1:7\nlisten = 127.0.0.1:7\n", 3,
		   "[server] listen: \"127.0.0.1:7\": 127.0.0.1:7 is already listed");
	EXPECT_ERR("[server]\nlisten = *:7\nlisten = [::]:7\n", 3,
		   "[server] listen: \"[::]:7\": [::]:7 is already listed");

	EXPECT_ERR_PREFIX("[access]\nallow = 192.0.2.1/24\n", 2,
			  "[access] allow: \"192.0.2.1/24\": ");
	EXPECT_ERR_PREFIX("[access]\nallow = 192.0.2.0/24\n\ndeny = not-an-address\n", 4,
			  "[access] deny: \"not-an-address\": ");
	EXPECT_ERR_PREFIX("[access]\ndeny = 10.0.0.0/33\n", 2, "[access] deny: \"10.0.0.0/33\": ");
	EXPECT_ERR_PREFIX("[access]\ndeny = 2001:db8::/129\n", 2,
			  "[access] deny: \"2001:db8::/129\": ");
}

static void test_structure(void)
{
	struct config c;

	EXPECT_ERR("[server]\nbacklog = 5\n[serverr]\n", 3, "unknown section [serverr]");
	EXPECT_ERR("[server]\nbaklog = 5\n", 2, "unknown key \"baklog\" in section [server]");
	EXPECT_ERR("[server]\nidle_timeout = 5s\n", 2,
		   "unknown key \"idle_timeout\" in section [server]");
	EXPECT_ERR("backlog = 5\n", 1, "\"backlog\" comes before any [section]");
	EXPECT_ERR("[server]\nbacklog 5\n", 2,
		   "syntax error: expected \"key = value\", \"[section]\" or a comment");
	/* The first error in the file wins, whoever finds it. */
	EXPECT_ERR("[server]\nbacklog 5\nbacklog = x\n", 2,
		   "syntax error: expected \"key = value\", \"[section]\" or a comment");
	EXPECT_ERR("[server]\nbacklog = x\nbacklog 5\n", 2,
		   "[server] backlog: \"x\" is not a number");
	EXPECT_ERR("[server\nbacklog = 5\n", 1, "missing \"]\" in section header");
	EXPECT_ERR("[server] backlog = 5\n", 1, "unexpected text after section header");
	EXPECT_ERR("[server]\nlisten = 127.0.0.1:7\n  [::1]:7\n", 3,
		   "line starts with whitespace: continuation lines are not supported, write "
		   "each setting on its own line");
	EXPECT_ERR("[server]\n\tbacklog = 5\n", 2,
		   "line starts with whitespace: continuation lines are not supported, write "
		   "each setting on its own line");

	EXPECT_ERR("[server]\nbacklog = 1\n\nbacklog = 2\n", 4,
		   "[server] backlog: set twice in this file (first on line 2)");
	EXPECT_ERR("[server]\nuser = root\nuser = root\n", 3,
		   "[server] user: set twice in this file (first on line 2)");
	EXPECT_ERR("[server]\nbacklog = 1\n[log]\nlevel = info\n[server]\nbacklog = 2\n", 6,
		   "[server] backlog: set twice in this file (first on line 2)");
	EXPECT_ERR("[log]\nlevel = info\nlevel = debug\n", 3,
		   "[log] level: set twice in this file (first on line 2)");

	/* What is fine: comments after a header, indented comments, blank
	 * lines with spaces, CRLF line ends, a UTF-8 byte order mark. */
	EXPECT_OK("[server] ; main\n  # note\n\t; note\n   \nbacklog = 5\n", &c);
	CHECK_INT(c.backlog, 5);
	config_free(&c);
	EXPECT_OK("[server]\r\nbacklog = 7\r\n\r\n[log]\r\ntarget = stderr\r\n", &c);
	CHECK_INT(c.backlog, 7);
	CHECK_INT(c.log_target, LOG_TARGET_STDERR);
	config_free(&c);
	EXPECT_OK("\xef\xbb\xbf[server]\nbacklog = 8\n", &c);
	CHECK_INT(c.backlog, 8);
	config_free(&c);
}

/* Lines inih would split or misread are refused with their number. */
static void test_odd_lines(void)
{
	char text[600], err[CONFIG_ERR_MAX], want[1024];
	static const char nul[] = "[server]\nback\0log = 1\nbacklog = 2\n";
	struct config c;

	snprintf(text, sizeof(text), "[server]\nbacklog = 5\n; %0500d\n", 0);
	CHECK_INT(load_text(text, &c, err), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: line is too long", last_path);
	CHECK(strncmp(err, want, strlen(want)) == 0);
	check_empty(&c);

	write_bytes(new_case(), nul, sizeof(nul) - 1);
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: line contains a NUL byte", last_path);
	CHECK_STR(err, want);

	/* A NUL anywhere, even first on a line or in a last line without a
	 * newline, and a too-long last line without one: fgets would have hid
	 * each of these. */
	static const struct {
		const char *bytes;
		size_t len;
		unsigned line;
		const char *what;
	} odd[] = {
	    {"[server]\n\0listen = bogus\n", 25, 2, "line contains a NUL byte"},
	    {"[server]\nbacklog = 5\0junk", 25, 2, "line contains a NUL byte"},
	    {"\0AAAA\n", 6, 1, "line contains a NUL byte"},
	};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		write_bytes(new_case(), odd[i].bytes, odd[i].len);
		CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EINVAL);
		snprintf(want, sizeof(want), "%s:%u: %s", last_path, odd[i].line, odd[i].what);
		CHECK_STR(err, want);
	}
	/* 198 characters are the most, newline or not. */
	snprintf(text, sizeof(text), "[server]\n#%0197d", 0);
	EXPECT_OK(text, &c);
	config_free(&c);
	snprintf(text, sizeof(text), "[server]\n#%0198d", 0);
	CHECK_INT(load_text(text, &c, err), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: line is too long", last_path);
	CHECK(strncmp(err, want, strlen(want)) == 0);

	/* A short buffer truncates the message without overflowing. */
	memset(err, 'x', sizeof(err));
	write_file(new_case(), "[nope]\n");
	CHECK_INT(config_load(last_path, &c, err, 16), -EINVAL);
	CHECK_INT(strlen(err), 15);
	CHECK(err[16] == 'x');
}

static void test_files(void)
{
	char err[CONFIG_ERR_MAX], want[1024], path[300];
	struct config c;

	snprintf(path, sizeof(path), "%s/no-such.conf", tmpdir);
	CHECK_INT(config_load(path, &c, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	CHECK_STR(err, want);
	check_empty(&c);

	/* What is not a regular file is refused at once, by what it is. A
	 * FIFO with no writer would block a plain open or read forever. */
	snprintf(path, sizeof(path), "%s/dir.conf", tmpdir);
	CHECK_INT(mkdir(path, 0700), 0);
	CHECK_INT(config_load(path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file (a directory)", path);
	CHECK_STR(err, want);
	snprintf(path, sizeof(path), "%s/fifo.conf", tmpdir);
	CHECK_INT(mkfifo(path, 0600), 0);
	CHECK_INT(config_load(path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file (a FIFO)", path);
	CHECK_STR(err, want);
	check_empty(&c);
	CHECK_INT(config_load("/dev/zero", &c, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "/dev/zero: not a regular file (a character device)");
	/* A link to one is judged by what it points to. */
	snprintf(want, sizeof(want), "%s/fifo.conf", tmpdir);
	snprintf(path, sizeof(path), "%s/link.conf", tmpdir);
	CHECK_INT(symlink(want, path), 0);
	CHECK_INT(config_load(path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file (a FIFO)", path);
	CHECK_STR(err, want);

	/* Size: up to CONFIG_FILE_MAX is read (here all comments), one byte
	 * more is refused from its size alone, even a sparse file of 4 GiB. */
	static const char head[] = "[server]\nlisten = 127.0.0.1:7\n";
	write_file(new_case(), head);
	{
		int fd = open(last_path, O_WRONLY);
		char pad[4096];
		off_t at = sizeof(head) - 1;

		memset(pad, '#', sizeof(pad));
		for (size_t i = 63; i < sizeof(pad); i += 64)
			pad[i] = '\n';
		CHECK(fd >= 0);
		while (fd >= 0 && at < CONFIG_FILE_MAX) {
			size_t n = sizeof(pad) < (size_t)(CONFIG_FILE_MAX - at)
				       ? sizeof(pad)
				       : (size_t)(CONFIG_FILE_MAX - at);
			CHECK_INT((int)pwrite(fd, pad, n, at), (int)n);
			at += (off_t)n;
		}
		if (fd >= 0)
			close(fd);
	}
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK_INT(c.n_listen, 1);
	config_free(&c);
	CHECK_INT(truncate(last_path, CONFIG_FILE_MAX + 1), 0);
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EFBIG);
	snprintf(want, sizeof(want), "%s: file is too large (%d bytes, at most %d KiB)", last_path,
		 CONFIG_FILE_MAX + 1, CONFIG_FILE_MAX >> 10);
	CHECK_STR(err, want);
	CHECK_INT(truncate(last_path, 4LL << 30), 0);
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EFBIG);
	check_empty(&c);

	/* PATH.d that is not a directory cannot be read as one. */
	write_file(new_case(), "[server]\n");
	snprintf(path, sizeof(path), "%s.d", last_path);
	write_file(path, "");
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -ENOTDIR);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOTDIR));
	CHECK_STR(err, want);
	check_empty(&c);

	/* So is every *.conf drop-in that is not a regular file: it too was
	 * meant to be read, and a FIFO must not hang the load. */
	write_file(new_case(), "[server]\n");
	put_dropin("10-a.conf", "[server]\n");
	snprintf(path, sizeof(path), "%s.d/20-pipe.conf", last_path);
	CHECK_INT(mkfifo(path, 0600), 0);
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file (a FIFO)", path);
	CHECK_STR(err, want);
	check_empty(&c);
	write_file(new_case(), "[server]\n");
	snprintf(path, sizeof(path), "%s.d", last_path);
	CHECK_INT(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s.d/30-dir.conf", last_path);
	CHECK_INT(mkdir(path, 0700), 0);
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file (a directory)", path);
	CHECK_STR(err, want);

	/* A dangling link among the drop-ins was meant to be read. */
	write_file(new_case(), "[server]\n");
	put_dropin("10-a.conf", "[server]\n");
	snprintf(path, sizeof(path), "%s.d/20-gone.conf", last_path);
	CHECK_INT(symlink("nowhere", path), 0);
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	CHECK_STR(err, want);
	check_empty(&c);
}

/* Loading accepts a config without listen (socket activation needs none);
 * config_need_listen is what refuses it to a daemon that binds itself. */
static void test_need_listen(void)
{
	char err[CONFIG_ERR_MAX], want[1024];
	struct config c;

	CHECK_INT(load_text("# emptied by mistake\n", &c, err), 0);
	CHECK_INT(c.n_listen, 0);
	CHECK_INT(config_need_listen(&c, last_path, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s: [server] listen: no listen address is set (and no socket was passed by "
		 "systemd)",
		 last_path);
	CHECK_STR(err, want);
	config_free(&c);
	CHECK_INT(load_text("[server]\nlisten = [::1]:7\n", &c, err), 0);
	err[0] = '\0';
	CHECK_INT(config_need_listen(&c, last_path, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	config_free(&c);
}

static void load_case(struct config *c, char *err)
{
	CHECK_INT(config_load(last_path, c, err, CONFIG_ERR_MAX), 0);
	CHECK_STR(err, "");
}

static void test_dropins(void)
{
	char err[CONFIG_ERR_MAX], want[1024], path[300];
	struct config c;

	/* A later file overrides a single key set in an earlier one. */
	write_file(new_case(), "[server]\nbacklog = 100\n");
	put_dropin("10-a.conf", "[server]\nbacklog = 200\n");
	load_case(&c, err);
	CHECK_INT(c.backlog, 200);
	config_free(&c);

	/* strcmp order, not numeric: 9-c.conf comes last. Hidden files and
	 * other suffixes are skipped, even with bad content. */
	write_file(new_case(), "[server]\nbacklog = 100\n");
	put_dropin("9-c.conf", "[server]\nbacklog = 9\n");
	put_dropin("20-b.conf", "[server]\nbacklog = 20\n");
	put_dropin("10-a.conf", "[server]\nbacklog = 10\n[log]\nlevel = debug\n");
	put_dropin(".hidden.conf", "garbage\n");
	put_dropin(".conf", "garbage\n");
	put_dropin("99-z.conf.bak", "garbage\n");
	put_dropin("README", "garbage\n");
	snprintf(path, sizeof(path), "%s.d/conf.d", last_path);
	CHECK_INT(mkdir(path, 0700), 0);
	load_case(&c, err);
	CHECK_INT(c.backlog, 9);
	CHECK_INT(c.log_level, LOG_DEBUG);
	config_free(&c);

	/* A symlinked drop-in is read. */
	write_file(new_case(), "[server]\n");
	snprintf(path, sizeof(path), "%s.real", last_path);
	write_file(path, "[server]\nbacklog = 33\n");
	put_dropin("README", "");
	snprintf(path, sizeof(path), "%s.d/50-link.conf", last_path);
	CHECK_INT(symlink("../echod.conf.real", path), 0);
	load_case(&c, err);
	CHECK_INT(c.backlog, 33);
	config_free(&c);

	/* An error in a drop-in names the drop-in and its line. */
	write_file(new_case(), "[limits]\nmax_connections = 5\n");
	put_dropin("10-a.conf", "\n[limits]\nmax_connections = lots\n");
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s.d/10-a.conf:3: [limits] max_connections: \"lots\" is not a number", last_path);
	CHECK_STR(err, want);
	check_empty(&c);

	/* Setting twice is an error within one drop-in too. */
	write_file(new_case(), "");
	put_dropin("10-a.conf", "[log]\nlevel = info\n");
	put_dropin("20-b.conf", "[log]\nlevel = info\nlevel = err\n");
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s.d/20-b.conf:3: [log] level: set twice in this file (first on line 2)",
		 last_path);
	CHECK_STR(err, want);

	/* Only the user in force must exist, and errors point at it. */
	write_file(new_case(), "[server]\nuser = no-such-user-echod-test\n");
	put_dropin("10-a.conf", "[server]\nuser = root\n");
	load_case(&c, err);
	CHECK_STR(c.user, "root");
	CHECK_INT(c.uid, 0);
	config_free(&c);
	write_file(new_case(), "[server]\nuser = root\n");
	put_dropin("10-a.conf", "\n[server]\nuser = no-such-user-echod-test\n");
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s.d/10-a.conf:3: [server] user: unknown user \"no-such-user-echod-test\"",
		 last_path);
	CHECK_STR(err, want);
}

static void test_lists(void)
{
	char err[CONFIG_ERR_MAX], want[1024];
	struct config c;

	/* The first explicit listen replaces both defaults. */
	EXPECT_OK("[server]\nlisten = 127.0.0.1:7007\n", &c);
	CHECK_INT(c.n_listen, 1);
	check_listen(&c, 0, "127.0.0.1:7007");
	config_free(&c);

	/* Lists add up across files... */
	write_file(new_case(), "[server]\nlisten = 127.0.0.1:7001\n[access]\nallow = 10.0.0.0/8\n");
	put_dropin("10-a.conf", "[server]\nlisten = 127.0.0.1:7002\n[access]\nallow = ::1\n");
	load_case(&c, err);
	CHECK_INT(c.n_listen, 2);
	check_listen(&c, 0, "127.0.0.1:7001");
	check_listen(&c, 1, "127.0.0.1:7002");
	CHECK_INT(c.access.n_allow, 2);
	config_free(&c);

	/* ...an empty value clears what came before, in this file or earlier... */
	write_file(new_case(), "[server]\nlisten = 127.0.0.1:7001\n[access]\ndeny = 10.0.0.0/8\n");
	put_dropin("10-a.conf", "[server]\nlisten =\nlisten = 127.0.0.1:7003\n[access]\ndeny =\n");
	load_case(&c, err);
	CHECK_INT(c.n_listen, 1);
	check_listen(&c, 0, "127.0.0.1:7003");
	CHECK_INT(c.access.n_deny, 0);
	CHECK(c.access.deny == NULL);
	config_free(&c);
	EXPECT_OK("[access]\nallow = 10.0.0.0/8\nallow =\nallow = 192.0.2.0/24\n", &c);
	CHECK_INT(c.access.n_allow, 1);
	if (c.access.n_allow == 1)
		CHECK_INT(c.access.allow[0].prefix, 24);
	config_free(&c);

	/* ...and a drop-in's first listen replaces the default too. */
	write_file(new_case(), "[log]\nlevel = info\n");
	put_dropin("10-a.conf", "[server]\nlisten = [::1]:7004\n");
	load_case(&c, err);
	CHECK_INT(c.n_listen, 1);
	check_listen(&c, 0, "[::1]:7004");
	config_free(&c);

	/* A listen list cleared and left empty cannot serve. */
	EXPECT_ERR("[server]\nlisten = 127.0.0.1:7\nlisten =\n", 3,
		   "[server] listen: no listen address is left after this empty value");
	write_file(new_case(), "[server]\nlisten = 127.0.0.1:7\n");
	put_dropin("10-a.conf", "[log]\nlevel = info\n\n[server]\nlisten =\n");
	CHECK_INT(config_load(last_path, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s.d/10-a.conf:5: [server] listen: no listen address is left after this empty "
		 "value",
		 last_path);
	CHECK_STR(err, want);
	write_file(new_case(), "[server]\nlisten =\n");
	put_dropin("10-a.conf", "[server]\nlisten = 127.0.0.1:7\n");
	load_case(&c, err);
	CHECK_INT(c.n_listen, 1);
	config_free(&c);

	/* Empty allow and deny lists are simply no rules. */
	EXPECT_OK("[access]\nallow =\ndeny =\n", &c);
	CHECK_INT(c.access.n_allow, 0);
	CHECK_INT(c.access.n_deny, 0);
	config_free(&c);
}

/* Dumping then loading the dump gives the same values, and the same dump. */
static void test_round_trip(void)
{
	static const char *const texts[] = {
	    "",
	    "[server]\nlisten = 127.0.0.1:7001\nlisten = [fe80::1%lo]:7002\nlisten = *:7003\n"
	    "backlog = 64\nuser = root\ndrain_timeout = 1h 30min 500ms\n"
	    "[limits]\nmax_connections = 10\nmax_connections_per_source = 0\n"
	    "rate_per_source = 7/h\nburst_per_source = 3\nsource_prefix_v4 = 1\n"
	    "source_prefix_v6 = 128\nidle_timeout = 0\nmax_lifetime = 2d 3s\n"
	    "[access]\nallow = 192.0.2.0/24\nallow = 2001:db8::/32\ndeny = 192.0.2.7\n"
	    "deny = ::1\n"
	    "[log]\nlevel = notice\nconnections = off\ntarget = journal\n",
	    "[limits]\nidle_timeout = 1w 1d 1h 1min 1s 1ms 1us\n[log]\nlevel = debug\n",
	};
	char err[CONFIG_ERR_MAX];
	struct config a, b;
	char *first, *second;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		EXPECT_OK(texts[i], &a);
		first = dump(&a);
		CHECK_INT(load_text(first, &b, err), 0);
		CHECK_STR(err, "");
		check_same(&a, &b);
		second = dump(&b);
		CHECK_STR(second, first);
		free(first);
		free(second);
		config_free(&a);
		config_free(&b);
	}
}

/* Turns the shipped file into its defaults: every "#key = value" line
 * uncommented, the package's "user = echod" and "listen = *:7" lines
 * dropped. */
static char *shipped_as_defaults(const char *path, unsigned *user_line)
{
	FILE *in = fopen(path, "r"), *out;
	char line[256], *text = NULL;
	size_t len = 0;
	unsigned n = 0;

	CHECK(in != NULL);
	if (!in)
		return NULL;
	out = open_memstream(&text, &len);
	while (fgets(line, sizeof(line), in)) {
		n++;
		if (strcmp(line, "user = echod\n") == 0)
			*user_line = n;
		else if (strcmp(line, "listen = *:7\n") == 0)
			continue;
		else if (line[0] == '#' && line[1] >= 'a' && line[1] <= 'z' && strstr(line, " ="))
			fputs(line + 1, out);
		else
			fputs(line, out);
	}
	fclose(in);
	fclose(out);
	return text;
}

static void test_shipped(void)
{
	/* user is the line found by shipped_as_defaults. */
	static const char *const keys[] = {
	    "backlog",
	    "drain_timeout",
	    "max_connections",
	    "max_connections_per_source",
	    "idle_timeout",
	    "allow",
	    "deny",
	    "level",
	    "connections",
	    "target",
	};
	static const char path[] = "../../conf/echod.conf";
	char err[CONFIG_ERR_MAX], want[1024], key[64];
	struct config c, d;
	unsigned user_line = 0;
	char *text = shipped_as_defaults(path, &user_line);
	int r;

	CHECK(text != NULL);
	CHECK(user_line > 0);
	if (!text)
		return;
	/* Every key is there, documented, with its default. */
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(key, sizeof(key), "\n%s =", keys[i]);
		CHECK(strstr(text, key) != NULL);
		if (!strstr(text, key))
			fprintf(stderr, "  %s is missing from %s\n", keys[i], path);
	}
	CHECK_INT(config_defaults(&d), 0);
	EXPECT_OK(text, &c);
	check_same(&c, &d);
	config_free(&c);
	free(text);

	/* As shipped, it differs from the defaults only by the package's user,
	 * which exists where the package is installed and not elsewhere, and
	 * its listen address, since there is no default one. */
	r = config_load(path, &c, err, sizeof(err));
	if (getpwnam("echod")) {
		CHECK_INT(r, 0);
		CHECK_STR(c.user, "echod");
		free(c.user);
		c.user = NULL;
		CHECK_INT(c.n_listen, 2);
		check_listen(&c, 0, "0.0.0.0:7");
		check_listen(&c, 1, "[::]:7");
		free(c.listen);
		c.listen = NULL;
		c.n_listen = 0;
		check_same(&c, &d);
		config_free(&c);
	} else {
		CHECK_INT(r, -EINVAL);
		snprintf(want, sizeof(want), "%s:%u: [server] user: unknown user \"echod\"", path,
			 user_line);
		CHECK_STR(err, want);
	}

	/* The development config loads as it says. */
	CHECK_INT(config_load("../../conf/echod-dev.conf", &c, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK_INT(c.n_listen, 2);
	check_listen(&c, 0, "127.0.0.1:7007");
	check_listen(&c, 1, "[::1]:7007");
	CHECK(c.user == NULL);
	CHECK_INT(c.log_level, LOG_INFO);
	CHECK_INT(c.log_target, LOG_TARGET_STDERR);
	CHECK_INT(c.backlog, d.backlog);
	CHECK_INT(c.max_connections, d.max_connections);
	config_free(&c);
	config_free(&d);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

int main(void)
{
	const char *base = getenv("TMPDIR");

	if ((size_t)snprintf(tmpdir, sizeof(tmpdir), "%s/echod-test-config-XXXXXX",
			     base ? base : "/tmp") >= sizeof(tmpdir) ||
	    !mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	test_defaults();
	test_every_key();
	test_bad_values();
	test_bad_addresses();
	test_structure();
	test_odd_lines();
	test_files();
	test_need_listen();
	test_dropins();
	test_lists();
	test_round_trip();
	test_shipped();
	nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_done();
}
