/* The worker's sandbox: what a worker that an attacker took over could
 * still do is read and write its own socket, and exit. */
#ifndef ECHOD_SANDBOX_H
#define ECHOD_SANDBOX_H

/* Called once by the master before it forks: copies the filter to its heap.
 * Worth a page fault per worker: the kernel reads the filter from a page a
 * worker already has (the heap's page tables come with the fork), not from
 * the program's read-only data, which each worker would fault in. Returns 0
 * or -ENOMEM (then workers read the original). */
int sandbox_init(void);

/* In a new worker, before it reads a byte from the client: drops every
 * capability (when the master has any: it runs as root without a user
 * setting), sets no_new_privs, and installs the seccomp filter that
 * sandbox-gen built, under which any system call the echo loop does not
 * need kills the worker (SIGSYS). Returns 0 or -errno; a worker that cannot
 * enter the sandbox must not serve. */
int sandbox_enter(void);

/* "seccomp", or "off" in a build made with -Dsandbox=false. */
const char *sandbox_kind(void);

#endif
