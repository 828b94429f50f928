/* Entering the sandbox costs a worker two or three system calls: the filter
 * was compiled at build time (sandbox-gen), and the kernel only checks and
 * attaches it. */
#include "sandbox.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "build-config.h"
#include "err.h"
#if ECHOD_SANDBOX
#include "sandbox-filter.h"
#else
/* Built with -Dsandbox=false: the workers still drop their capabilities
 * and set no_new_privs, but install no filter. */
static const struct sock_filter sandbox_filter[1];
#endif

/* capget/capset have no wrapper in the C library. */
static int sandbox_drop_caps(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};
	bool any = false;

	if (syscall(SYS_capget, &hdr, data) < 0)
		return err_last();
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		any = any || data[i].effective || data[i].permitted || data[i].inheritable;
	/* The usual case (the master switched to its user) costs no capset. */
	if (!any)
		return 0;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		data[i] = (struct __user_cap_data_struct){0};
	return syscall(SYS_capset, &hdr, data) < 0 ? err_last() : 0;
}

/* The program the kernel copies in: by default the generated array itself,
 * after sandbox_init a copy on the master's heap. */
static struct sock_fprog sandbox_prog = {
    .len = sizeof(sandbox_filter) / sizeof(sandbox_filter[0]),
    .filter = (struct sock_filter *)sandbox_filter,
};

int sandbox_init(void)
{
	struct sock_filter *copy;

	if (!ECHOD_SANDBOX)
		return 0;
	copy = malloc(sizeof(sandbox_filter));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, sandbox_filter, sizeof(sandbox_filter));
	sandbox_prog.filter = copy;
	return 0;
}

int sandbox_enter(void)
{
	int r = sandbox_drop_caps();

	if (r < 0)
		return r;
	/* Required for an unprivileged process to install a filter, and it
	 * keeps an exec (which the filter forbids anyway) from gaining any. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_last();
	if (ECHOD_SANDBOX && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &sandbox_prog) < 0)
		return err_last();
	return 0;
}

const char *sandbox_kind(void)
{
	return ECHOD_SANDBOX ? "seccomp" : "off";
}
