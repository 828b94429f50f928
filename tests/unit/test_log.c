/* Log formatting on stderr, levels, the journal-stream check and the rate
 * limiter. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

/* Runs fn with stderr redirected into a pipe and returns what it wrote. */
static char *capture(void (*fn)(void))
{
	static char buf[8192];
	int p[2], saved = dup(STDERR_FILENO);
	ssize_t n;

	if (pipe(p) < 0)
		abort();
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void emit_fields(void)
{
	const struct log_kv kv[] = {
	    {"REMOTE_ADDR", "192.0.2.1"},
	    {"NOTE", "a b"},
	    {"EMPTY", ""},
	    {"EVIL", "x\ny"},
	};
	log_setup(LOG_TARGET_STDERR, LOG_INFO);
	log_struct(LOG_INFO, NULL, kv, 4, "hello %d", 42);
	log_debug("debug is below the threshold");
}

static void test_stderr_line(void)
{
	const char *out = capture(emit_fields);

	CHECK(strstr(out, " info: hello 42 remote_addr=192.0.2.1 note=\"a b\" empty=\"\" "
			  "evil=x\\x0ay\n") != NULL);
	CHECK(strstr(out, "echod[") != NULL);
	CHECK(strstr(out, "below the threshold") == NULL);
	/* one entry, one line: the newline in a value was escaped */
	CHECK_INT(strchr(out, '\n') - out + 1, (long long)strlen(out));
}

static void emit_errno(void)
{
	log_setup(LOG_TARGET_STDERR, LOG_DEBUG);
	errno = ENOSPC;
	log_info("keeps errno");
	CHECK_INT(errno, ENOSPC);
}

static void test_errno_preserved(void)
{
	CHECK(strstr(capture(emit_errno), "keeps errno") != NULL);
}

static void emit_journal_stream(void)
{
	struct stat st;
	char v[64];

	/* stderr is the capture pipe now: pretend systemd connected it */
	fstat(STDERR_FILENO, &st);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
	log_setup(LOG_TARGET_AUTO, LOG_INFO);
	CHECK_INT(log_to_journal(), 1);
	log_setup(LOG_TARGET_STDERR, LOG_INFO);
	CHECK_INT(log_to_journal(), 0);
	log_warning("prefixed");
	/* a stale JOURNAL_STREAM (stderr redirected since) is not the journal */
	setenv("JOURNAL_STREAM", "1:2", 1);
	log_setup(LOG_TARGET_AUTO, LOG_INFO);
	CHECK_INT(log_to_journal(), 0);
	unsetenv("JOURNAL_STREAM");
}

static void test_journal_stream(void)
{
	const char *out = capture(emit_journal_stream);
	/* Where no journald listens (this machine may have none), the setup
	 * for the journal says so first, and that line is prefixed too. */
	const char *gone = "<4>cannot reach the journal at /run/systemd/journal/socket: ";

	if (strncmp(out, gone, strlen(gone)) == 0)
		out = strchr(out, '\n') + 1;
	CHECK_STR(out, "<4>prefixed\n");
}

static void emit_journal_gone(void)
{
	log_info("still written");
}

static void test_levels(void)
{
	CHECK_INT(log_level_parse("debug"), LOG_DEBUG);
	CHECK_INT(log_level_parse("INFO"), LOG_INFO);
	CHECK_INT(log_level_parse("notice"), LOG_NOTICE);
	CHECK_INT(log_level_parse("warning"), LOG_WARNING);
	CHECK_INT(log_level_parse("err"), LOG_ERR);
	CHECK_INT(log_level_parse("error"), LOG_ERR);
	CHECK_INT(log_level_parse("loud"), -EINVAL);
	CHECK_INT(log_level_parse(""), -EINVAL);
	CHECK_STR(log_level_name(LOG_WARNING), "warning");
	CHECK_STR(log_level_name(LOG_CRIT), "err");
	log_setup(LOG_TARGET_STDERR, LOG_NOTICE);
	CHECK(log_enabled(LOG_WARNING));
	CHECK(log_enabled(LOG_NOTICE));
	CHECK(!log_enabled(LOG_INFO));
}

static void test_ratelimit(void)
{
	struct ratelimit rl = {.interval_usec = 1000, .burst = 3};
	unsigned sup = 99, passed = 0;

	for (int i = 0; i < 10; i++)
		passed += (unsigned)ratelimit_pass(&rl, 5000 + (uint64_t)i, &sup);
	CHECK_INT(passed, 3);
	CHECK_INT(sup, 0);
	/* next interval: the first entry carries the count of what was dropped */
	CHECK_INT(ratelimit_pass(&rl, 6000, &sup), 1);
	CHECK_INT(sup, 7);
	CHECK_INT(ratelimit_pass(&rl, 6001, &sup), 1);
	CHECK_INT(sup, 0);
}

/* In a private mount namespace with a tmpfs on /run, the test's own socket
 * stands where journald's would: the entry must arrive in the native
 * protocol, byte for byte. Without the socket, the entry goes to stderr. */
static void journal_child(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/socket"};
	const struct log_kv kv[] = {{"REMOTE_ADDR", "192.0.2.1"}, {"EVIL", "x\ny"}};
	static const char want[] = "MESSAGE=hello 42\nPRIORITY=6\nSYSLOG_IDENTIFIER=echod\n"
				   "MESSAGE_ID=0123456789abcdef0123456789abcdef\n"
				   "REMOTE_ADDR=192.0.2.1\nEVIL\n\3\0\0\0\0\0\0\0x\ny\n";
	char got[512];
	int fd;

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/run", "tmpfs", 0, NULL) < 0 || mkdir("/run/systemd", 0755) < 0 ||
	    mkdir("/run/systemd/journal", 0755) < 0)
		exit(2);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		exit(2);
	log_setup(LOG_TARGET_JOURNAL, LOG_INFO);
	CHECK_INT(log_to_journal(), 1);
	log_struct(LOG_INFO, "0123456789abcdef0123456789abcdef", kv, 2, "hello %d", 42);
	log_debug("below the threshold: not sent");
	CHECK_INT(recv(fd, got, sizeof(got), MSG_DONTWAIT), sizeof(want) - 1);
	CHECK(memcmp(got, want, sizeof(want) - 1) == 0);
	CHECK_INT(recv(fd, got, sizeof(got), MSG_DONTWAIT), -1);
	/* journald gone: the entry must not be lost */
	close(fd);
	unlink(sa.sun_path);
	CHECK(strstr(capture(emit_journal_gone), "still written\n") != NULL);
	exit(check_failures ? 1 : 0);
}

static void test_journal_native(void)
{
	pid_t pid;
	int st;

	if (unshare(CLONE_NEWNS) < 0) {
		/* only root may; CI runs as root, so this runs there */
		fprintf(stderr, "journal protocol test needs root (unshare: %s): not run\n",
			strerror(errno));
		return;
	}
	pid = fork();
	if (pid == 0)
		journal_child();
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st));
	CHECK_INT(WEXITSTATUS(st), 0);
}

/* Reads what the pipe holds now, into out (truncated), never waiting. */
static size_t drain_pipe(int fd, char *out, size_t cap)
{
	static char tmp[65536];
	size_t used = 0;
	ssize_t n;

	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		for (ssize_t i = 0; i < n && used + 1 < cap; i++)
			out[used++] = tmp[i];
	out[used] = '\0';
	return used;
}

/* stderr a pipe nobody reads: entries queue, then drop. When the reader
 * comes back and an entry of the master's own empties the queue (not the
 * loop's flush), the count must still be told at the loop's next wake-up,
 * not held back until the next stall. A pipe with no reader (EPIPE) is no
 * reason to wake: that would spin. */
static void sink_child(void)
{
	static char out[1 << 20];
	int p[2], saved = dup(STDERR_FILENO);
	struct pollfd pfd;

	signal(SIGPIPE, SIG_IGN);
	if (saved < 0 || pipe2(p, O_NONBLOCK) < 0 || dup2(p[1], STDERR_FILENO) < 0)
		exit(2);
	log_init(); /* takes the pipe as the sink, through a description of its own */
	dup2(saved, STDERR_FILENO);
	close(p[1]);
	log_setup(LOG_TARGET_STDERR, LOG_INFO);
	for (int i = 0; i < 5000; i++)
		log_info("filler entry %d, long enough to fill a pipe and the queue soon", i);
	CHECK(log_poll_fd() >= 0);
	/* The reader is back; only entries of the master's own empty the queue. */
	for (int i = 0; i < 8; i++) {
		drain_pipe(p[0], out, sizeof(out));
		log_info("tick %d", i);
	}
	drain_pipe(p[0], out, sizeof(out));
	CHECK(strstr(out, "tick 7\n") != NULL);
	CHECK(strstr(out, "dropped") == NULL);
	pfd = (struct pollfd){.fd = log_poll_fd(), .events = POLLOUT};
	CHECK(pfd.fd >= 0);
	CHECK_INT(pfd.fd >= 0 ? poll(&pfd, 1, 1000) : -1, 1);
	log_flush();
	drain_pipe(p[0], out, sizeof(out));
	CHECK(strstr(out, " log entries dropped: the log's output was not taking them\n") != NULL);
	CHECK_INT(log_poll_fd(), -1);
	/* No reader at all: entries are lost, and nothing asks for a wake-up. */
	close(p[0]);
	for (int i = 0; i < 100; i++)
		log_info("into a pipe nobody can read %d", i);
	CHECK_INT(log_poll_fd(), -1);
	exit(check_failures ? 1 : 0);
}

static void test_sink_drop_count(void)
{
	pid_t pid = fork();
	int st;

	if (pid == 0)
		sink_child();
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st));
	CHECK_INT(WEXITSTATUS(st), 0);
}

int main(void)
{
	test_stderr_line();
	test_errno_preserved();
	test_journal_stream();
	test_levels();
	test_ratelimit();
	test_journal_native();
	test_sink_drop_count();
	return check_done();
}
