/* ref-fork: the bench's yardstick for fork-per-connection, the least such a
 * server can do: accept, fork, and in the child move the bytes through a pipe
 * with splice until EOF. No limits, no logging, no configuration: what the
 * kernel allows, against which echod's overhead is measured.
 *
 *   ref-fork ADDR PORT */
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static void echo(int fd)
{
	int p[2];

	if (pipe(p) < 0)
		return;
	for (;;) {
		ssize_t n = splice(fd, NULL, p[1], NULL, CHUNK, SPLICE_F_MOVE);
		if (n <= 0)
			return;
		while (n > 0) {
			ssize_t m = splice(p[0], NULL, fd, NULL, (size_t)n, SPLICE_F_MOVE);
			if (m <= 0)
				return;
			n -= m;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int one = 1, ls;

	if (argc != 3 || inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1) {
		fputs("usage: ref-fork ADDR PORT\n", stderr);
		return 64;
	}
	sin.sin_port = htons((uint16_t)atoi(argv[2]));
	/* Children are reaped by the kernel: the parent only accepts. */
	signal(SIGCHLD, SIG_IGN);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(ls, 511) < 0) {
		perror("ref-fork");
		return 71;
	}
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		if (fork() == 0) {
			close(ls);
			echo(fd);
			_exit(0);
		}
		close(fd);
	}
}
