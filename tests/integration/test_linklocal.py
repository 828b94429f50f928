"""An IPv6 link-local client (fe80::2%d0) in a network namespace that this
file makes for itself: served, and logged with its interface's name, also by
a worker that writes its own entry because the master's report queue is
full (the worker names the interface before its sandbox, which forbids the
ioctl that asks). Skips (exit 77) where unshare, ip or a veth link cannot be
had; needs root."""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import harness as h

IF = "d0"
SERVER, CLIENT = "fe80::1", "fe80::2"
SKIP = 77  # meson's exit status for a skipped test


def skip(why):
    print(f"skipped: {why}")
    sys.exit(SKIP)


def enter_netns():
    """Runs this file again inside a new network namespace (unshare -n)."""
    if os.geteuid() != 0:
        skip("needs root for a network namespace")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            skip(f"{tool} is not installed (util-linux, iproute2)")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        skip(f"unshare -n fails here: {probe.stderr.strip()}")
    env = dict(os.environ, ECHOD_IN_NETNS="1")
    os.execvpe("unshare", ["unshare", "-n", "--", sys.executable, os.path.abspath(__file__)], env)


def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def make_link():
    """Link d0 up with both link-local addresses (nodad: usable at once):
    a dummy link, or a veth pair where the dummy module is missing."""
    ip("link", "set", "lo", "up")
    r = ip("link", "add", IF, "type", "dummy")
    if r.returncode != 0:
        r = ip("link", "add", IF, "type", "veth", "peer", "name", IF + "p")
        if r.returncode != 0:
            skip(f"neither a dummy nor a veth link: {r.stderr.strip()}")
        ip("link", "set", IF + "p", "up")
    for cmd in (("link", "set", IF, "up"),
                ("-6", "addr", "add", f"{SERVER}/64", "dev", IF, "nodad"),
                ("-6", "addr", "add", f"{CLIENT}/64", "dev", IF, "nodad")):
        r = ip(*cmd)
        if r.returncode != 0:
            skip(f"ip {' '.join(cmd)}: {r.stderr.strip()}")


def pipe_ends(pid):
    """(read fd, write fd) numbers in pid of the one pipe it holds both ends
    of: the master's report queue."""
    ends = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
        except (OSError, StopIteration):
            continue
        if target.startswith("pipe:"):
            ends.setdefault(target, {})[flags & 3] = int(fd)
    both = [e for e in ends.values() if 0 in e and 1 in e]
    assert len(both) == 1, f"expected one pipe held at both ends by {pid}: {ends}"
    return both[0][0], both[0][1]


def grab_fd(pid, fd):
    """A copy of another process's descriptor (pidfd_getfd(2))."""
    pidfd = os.pidfd_open(pid)
    try:
        got = ctypes.CDLL(None, use_errno=True).syscall(438, pidfd, fd, 0)
        if got < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd of fd {fd} of {pid}")
        return got
    finally:
        os.close(pidfd)


class LinkLocalTest(h.TestCase):
    def start(self):
        self.port = h.free_port("::1")
        self.d = self.daemon(h.config_text(listen=[f"[::]:{self.port}"]))
        return self.d

    def connect(self):
        """From fe80::2%d0 to fe80::1%d0 (the harness's connect takes no
        scope)."""
        idx = socket.if_nametoindex(IF)
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(h.TIMEOUT)
        s.bind((CLIENT, 0, 0, idx))
        s.connect((SERVER, self.port, 0, idx))
        return s

    def check_entry(self, e, cport):
        self.assertEqual(e.fields["remote_addr"], f"{CLIENT}%{IF}", e.raw)
        self.assertIn(f"connection from [{CLIENT}%{IF}]:{cport} closed (eof)", e.message)
        self.assertEqual((e.fields["bytes_in"], e.fields["bytes_out"]), ("11", "11"), e.raw)

    def test_served_and_logged_with_the_interface(self):
        d = self.start()
        mark = d.log_mark()
        s = self.connect()
        cport = s.getsockname()[1]
        self.assertEqual(h.echo(s, b"link-local\n"), b"link-local\n")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(h.pump(s, b"", until_eof=True)[0], b"")
        self.check_entry(d.wait_closed_entry(cport, since=mark), cport)
        d.wait_children(0)
        print(f"linklocal: [{CLIENT}%{IF}]:{cport} served and logged by the master")

    def test_worker_that_logs_itself(self):
        """The master stopped with its report queue full: the worker waits
        a second for room, then writes the entry itself, from its sandbox."""
        d = self.start()
        mark = d.log_mark()
        s = self.connect()
        cport = s.getsockname()[1]
        self.assertEqual(h.echo(s, b"link-local\n"), b"link-local\n")
        worker = d.worker_for(s)
        rfd, wfd = pipe_ends(d.pid)
        r, w = grab_fd(d.pid, rfd), grab_fd(d.pid, wfd)
        d.signal(signal.SIGSTOP)
        try:
            os.set_blocking(w, False)
            try:
                while True:
                    os.write(w, b"\0" * 4096)
            except BlockingIOError:
                pass
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(h.pump(s, b"", until_eof=True)[0], b"")
            e = d.wait_entry(lambda e: e.pid == worker and "closed" in e.message, since=mark,
                             what="the worker's own entry")
            self.check_entry(e, cport)
            # What the test put in the queue goes before the master sees it.
            os.set_blocking(r, False)
            try:
                while os.read(r, 1 << 16):
                    pass
            except BlockingIOError:
                pass
        finally:
            os.close(r)
            os.close(w)
            d.signal(signal.SIGCONT)
        d.wait_children(0)
        killed = d.find_entries(lambda e: "signal" in e.fields, since=mark)
        self.assertEqual(killed, [], "no worker may die of a signal")
        self.assertEqual(h.echo(self.connect(), b"still served"), b"still served")
        print(f"linklocal: with the report queue full, worker {worker} logged [{CLIENT}%{IF}]:{cport} itself")


if __name__ == "__main__":
    if os.environ.get("ECHOD_IN_NETNS") != "1":
        enter_netns()
    make_link()
    h.main(budget=60)
