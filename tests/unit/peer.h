/* A peer address as accept() would return it, from its text form: IPv4,
 * IPv6 or IPv4-mapped IPv6. A bad address is a bug in the test: abort. */
#ifndef ECHOD_TEST_PEER_H
#define ECHOD_TEST_PEER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

static inline struct sockaddr_storage test_peer(const char *s, unsigned port)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	if (inet_pton(AF_INET, s, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
	} else {
		fprintf(stderr, "bad test address %s\n", s);
		abort();
	}
	return ss;
}

#endif
