/* The worker's sandbox: no capability, no_new_privs, a seccomp filter that
 * lets the echo loop's system calls through and kills on anything else. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "check.h"
#include "log.h"
#include "peer.h"
#include "worker.h"

/* The last two are traps of the C library that the worker's code avoids:
 * if_indextoname asks with an ioctl (addr_scope_name runs before the
 * sandbox), and the first gmtime_r reads the time zone file (log_setup
 * calls tzset in the master). They show the test would catch either. */
enum forbidden {
	TRY_NOTHING,
	TRY_OPEN,
	TRY_INET_SOCKET,
	TRY_FIONREAD,
	TRY_FORK,
	TRY_GETUID,
	TRY_IF_INDEXTONAME,
	TRY_GMTIME_UNSET,
};

static const char *const forbidden_name[] = {
    "nothing", "open",	 "AF_INET socket", "ioctl FIONREAD",
    "fork",    "getuid", "if_indextoname", "gmtime_r before tzset",
};

/* Reads one line of /proc/PID/status, e.g. "Seccomp". */
static char *status_field(pid_t pid, const char *key)
{
	static char value[64];
	char path[64], line[256];
	size_t klen = strlen(key);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	value[0] = '\0';
	f = fopen(path, "r");
	if (!f)
		return value;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			snprintf(value, sizeof(value), "%s",
				 line + klen + 1 + strspn(line + klen + 1, "\t "));
			value[strcspn(value, "\n")] = '\0';
		}
	fclose(f);
	return value;
}

/* In the child: enters the sandbox, tells the parent, waits for a byte,
 * does what the echo loop does (the allowed calls), then what it is told. */
static void child(int in, int out, enum forbidden what)
{
	int p[2], u;
	char b;
	struct timespec ts;

	if (sandbox_enter() < 0)
		_exit(10);
	if (write(out, "r", 1) != 1 || read(in, &b, 1) != 1)
		_exit(11);
	/* allowed: a pipe for splice, the clock, SIOCOUTQ, a unix socket */
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0 || close(p[0]) < 0 || close(p[1]) < 0)
		_exit(12);
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0 || getpid() <= 0)
		_exit(13);
	u = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (u < 0 || ioctl(u, SIOCOUTQ, &(int){0}) < 0 || close(u) < 0)
		_exit(14);
	free(malloc(256 * 1024)); /* the fallback buffer's memory */
	switch (what) {
	case TRY_NOTHING:
		break;
	case TRY_OPEN:
		open("/etc/hostname", O_RDONLY);
		break;
	case TRY_INET_SOCKET:
		socket(AF_INET, SOCK_STREAM, 0);
		break;
	case TRY_FIONREAD:
		ioctl(in, FIONREAD, &(int){0});
		break;
	case TRY_FORK:
		syscall(SYS_fork);
		break;
	case TRY_GETUID:
		syscall(SYS_getuid);
		break;
	case TRY_IF_INDEXTONAME:
		if_indextoname(1, (char[IF_NAMESIZE]){0});
		break;
	case TRY_GMTIME_UNSET:
		gmtime_r(&(time_t){0}, &(struct tm){0});
		break;
	}
	_exit(write(out, "d", 1) == 1 ? 0 : 15);
}

static void run(enum forbidden what)
{
	int to[2], from[2], status = 0;
	char b = 0;
	pid_t pid;

	if (pipe(to) < 0 || pipe(from) < 0) {
		perror("pipe");
		exit(1);
	}
	pid = fork();
	if (pid == 0) {
		close(to[1]);
		close(from[0]);
		child(to[0], from[1], what);
	}
	close(to[0]);
	close(from[1]);
	CHECK(pid > 0);
	CHECK_INT(read(from[0], &b, 1), 1);
	CHECK_INT(b, 'r');
	/* Observable as issue 5 asks: CapEff 0, NoNewPrivs 1, Seccomp 2. */
	CHECK_STR(status_field(pid, "CapEff"), "0000000000000000");
	CHECK_STR(status_field(pid, "CapPrm"), "0000000000000000");
	CHECK_STR(status_field(pid, "NoNewPrivs"), "1");
	CHECK_STR(status_field(pid, "Seccomp"), "2");
	CHECK_INT(write(to[1], "g", 1), 1);
	CHECK_INT(waitpid(pid, &status, 0), pid);
	if (what == TRY_NOTHING) {
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHECK_INT(read(from[0], &b, 1), 1);
	} else {
		fprintf(stderr, "%s: %s\n", forbidden_name[what],
			WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "not killed");
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS);
	}
	close(to[1]);
	close(from[0]);
}

/* In a sandboxed child: every C library call that a worker makes on its
 * way out, on the paths where it writes its own entry: the report with a
 * link-local peer and an error (addr_format_as, strerror), the entry to
 * stderr (vsnprintf, gmtime_r, strftime) or to the journal's socket
 * (socket, sendto; stderr where there is none), and heap growth and
 * trimming. Its stderr goes to `log`. Exits 0 unless a call failed; a
 * forbidden one kills it. */
static void libc_child(int log, enum log_target target)
{
	struct worker_report rep = {.pid = 4242, .local_port = 7};
	struct sockaddr_storage ss = test_peer("fe80::7", 4242);
	char buf[ADDR_STRLEN];
	void *blocks[64];

	((struct sockaddr_in6 *)&ss)->sin6_scope_id = 1;
	memcpy(&rep.peer.ss, &ss, sizeof(ss));
	rep.peer.len = sizeof(struct sockaddr_in6);
	snprintf(rep.ifname, sizeof(rep.ifname), "eth9");
	rep.st.end = WORKER_ERROR;
	rep.st.error = -EBADF;
	/* Locale variables do not matter: echod never calls setlocale, so its
	 * messages are the C locale's, built in, and no catalog is opened. */
	setenv("LANGUAGE", "de", 1);
	setenv("LC_ALL", "de_DE.UTF-8", 1);
	if (dup2(log, STDERR_FILENO) < 0)
		_exit(10);
	/* As main() leaves it, time zone loaded (tzset), before the sandbox:
	 * log_setup itself makes calls that it forbids (fstat). */
	log_setup(target, LOG_INFO);
	if (sandbox_enter() < 0)
		_exit(10);
	if (addr_format_as((struct sockaddr *)&ss, "eth9", buf, sizeof(buf)) < 0 ||
	    strcmp(buf, "[fe80::7%eth9]:4242") != 0)
		_exit(11);
	if (strcmp(strerror(EBADF), "Bad file descriptor") != 0)
		_exit(12);
	worker_report_log(&rep, true);
	log_info("a second entry");
	/* Brk growth to a few MiB, a mapping, and both given back. */
	for (size_t i = 0; i < 64; i++)
		blocks[i] = malloc(64 * 1024);
	for (size_t i = 0; i < 64; i++)
		free(blocks[i]);
	free(malloc(4 * 1024 * 1024));
	_exit(0);
}

static void run_libc(enum log_target target)
{
	char log[4096] = "";
	int lp[2], status = -1;
	size_t used = 0;
	ssize_t r;
	pid_t pid;

	if (pipe(lp) < 0) {
		perror("pipe");
		exit(1);
	}
	pid = fork();
	if (pid == 0) {
		close(lp[0]);
		libc_child(lp[1], target);
	}
	close(lp[1]);
	while (used < sizeof(log) - 1 && (r = read(lp[0], log + used, sizeof(log) - 1 - used)) > 0)
		used += (size_t)r;
	close(lp[0]);
	CHECK_INT(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		fprintf(stderr, "libc calls: killed by %s\n", strsignal(WTERMSIG(status)));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (target == LOG_TARGET_JOURNAL)
		return; /* where a journal runs, the entries are there */
	CHECK(strstr(log, "connection from [fe80::7%eth9]:4242 closed (error: Bad file "
			  "descriptor)") != NULL);
	CHECK(strstr(log, "remote_addr=fe80::7%eth9 remote_port=4242") != NULL);
	CHECK(strstr(log, "a second entry") != NULL);
	/* the stderr form, with its time stamp from gmtime_r and strftime */
	CHECK(strstr(log, "Z echod[") != NULL);
}

int main(void)
{
	alarm(30);
	/* First: TRY_GMTIME_UNSET needs a process whose time zone is not yet
	 * loaded, which run_libc does. */
	unsetenv("TZ");
	for (enum forbidden w = TRY_NOTHING; w <= TRY_GMTIME_UNSET; w++)
		run(w);
	run_libc(LOG_TARGET_STDERR);
	run_libc(LOG_TARGET_JOURNAL);
	return check_done();
}
