/* Socket addresses: parsing of listen addresses and formatting of peers. */
#ifndef ECHOD_ADDR_H
#define ECHOD_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Enough for "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%ifname]:65535". */
#define ADDR_STRLEN 80
/* An interface name and its NUL: IF_NAMESIZE, without net/if.h here. */
#define ADDR_IFNAMESIZE 16

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Parses one listen value: "HOST:PORT", "[V6]:PORT" or "*:PORT". HOST must
 * be a numeric IPv4 or IPv6 address (no name resolution at config time).
 * "*" stands for every address of both families and yields two addresses,
 * 0.0.0.0 and [::]. Fills out[0..] (room for 2) and returns the count, or
 * -EINVAL with a short reason in *why (a static string). */
int addr_parse_listen(const char *s, struct addr out[2], const char **why);

/* "192.0.2.1:7", "[2001:db8::1]:7" or "[fe80::1%eth0]:7". An IPv4-mapped
 * IPv6 address is shown as IPv4. Returns 0 or -errno. A scoped address
 * costs an ioctl (addr_scope_name): a sandboxed worker uses addr_format_as. */
int addr_format(const struct sockaddr *sa, char *buf, size_t len);

/* The host part alone ("192.0.2.1", "2001:db8::1", "fe80::1%eth0"; mapped
 * shown as IPv4) and the port. Returns 0 or -errno. As addr_format, it asks
 * the kernel for the name of a scope. */
int addr_host_port(const struct sockaddr *sa, char *host, size_t len, unsigned *port);

/* The name of the interface of a scoped (link-local) IPv6 address into
 * name: "" when the address has none or the interface is gone. It asks the
 * kernel (if_indextoname: a socket and an ioctl), which the worker's sandbox
 * forbids: a worker looks it up before it enters the sandbox. */
void addr_scope_name(const struct sockaddr *sa, char name[ADDR_IFNAMESIZE]);

/* As addr_format and addr_host_port, with the scope shown as ifname (the
 * index when ifname is NULL or ""): no system call, so a sandboxed worker
 * may call them. */
int addr_format_as(const struct sockaddr *sa, const char *ifname, char *buf, size_t len);
int addr_host_port_as(const struct sockaddr *sa, const char *ifname, char *host, size_t len,
		      unsigned *port);

/* The port in host order, 0 for a family without ports. No formatting: a
 * forked worker calls it, and stdio would fault in pages it need not. */
unsigned addr_port(const struct sockaddr *sa);

/* Same family, address and port. */
bool addr_equal(const struct addr *a, const struct addr *b);

/* Rewrites an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as AF_INET in place;
 * anything else is left alone. */
void addr_unmap(struct addr *a);

/* Copies an AF_INET or AF_INET6 address into *a, IPv4-mapped made IPv4.
 * Returns 0, or -EAFNOSUPPORT for any other family. */
int addr_ip_from(struct addr *a, const struct sockaddr *sa);

#endif
