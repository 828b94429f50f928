/* The worker's sandbox: no capability, no_new_privs, a seccomp filter that
 * lets the echo loop's system calls through and kills on anything else. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
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

#include "check.h"

enum forbidden { TRY_NOTHING, TRY_OPEN, TRY_INET_SOCKET, TRY_FIONREAD, TRY_FORK, TRY_GETUID };

static const char *const forbidden_name[] = {"nothing",	       "open", "AF_INET socket",
					     "ioctl FIONREAD", "fork", "getuid"};

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

int main(void)
{
	alarm(30);
	for (enum forbidden w = TRY_NOTHING; w <= TRY_GETUID; w++)
		run(w);
	return check_done();
}
