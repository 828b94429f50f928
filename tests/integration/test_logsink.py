"""Logging never blocks: with stderr a pipe nobody reads, or a journal
socket whose reader is stuck, echod keeps serving, stops on SIGTERM within
its drain timeout, and says how many entries it dropped once the output
takes entries again."""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness as h

HOST = "127.0.0.1"
CONNECTIONS = 600  # ~250 bytes of log each: several times a 64 KiB pipe
UNSHARE = shutil.which("unshare")


def conf(port, target):
    return h.config_text(
        listen=[f"{HOST}:{port}"],
        server={"drain_timeout": "3s"},
        limits={"max_connections_per_source": 0},
        log={"target": target, "level": "debug"},
    )


def serve_many(tc, port, n=CONNECTIONS):
    for i in range(n):
        msg = b"entry %d" % i
        with h.connect(HOST, port) as c:
            tc.assertEqual(h.echo(c, msg), msg, f"connection {i} of {n}")


class Reader:
    """Reads a descriptor into memory in a thread, once started."""

    def __init__(self, fd, recv=None):
        self.fd, self.recv, self.data, self.chunks = fd, recv, b"", []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        while True:
            try:
                d = self.recv(65536) if self.recv else os.read(self.fd, 65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not d and not self.recv:
                return
            self.chunks.append(d)

    def text(self):
        return b"".join(self.chunks).decode("utf-8", "replace")


class LogSinkTest(h.TestCase):
    def spawn(self, port, target, stderr, wrapper=()):
        path = os.path.join(self.tmp, "echod.conf")
        with open(path, "w") as f:
            f.write(conf(port, target))
        notify = h.NotifyReader(os.path.join(self.tmp, "notify.sock"))
        self.addCleanup(notify.close)
        env = {k: v for k, v in os.environ.items() if k not in h._MANAGER_ENV}
        env["NOTIFY_SOCKET"] = notify.path
        p = subprocess.Popen([*wrapper, h.ECHOD, "-c", path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True)

        def kill():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            h.reap_orphans()

        self.addCleanup(kill)
        notify.wait("READY", "1", timeout=10)
        return p, notify

    def stop_within_drain(self, p, notify):
        before = notify.count()
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        notify.wait("STOPPING", "1", after=before, timeout=5)
        try:
            rc = p.wait(timeout=3 + 5)
        except subprocess.TimeoutExpired:
            self.fail("echod did not stop on SIGTERM with its log output blocked")
        self.assertEqual(rc, 0)
        return time.monotonic() - t0

    def test_stderr_pipe_never_read(self):
        port = h.free_port()
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        p, notify = self.spawn(port, "stderr", w)
        os.close(w)
        live = self.client(HOST, port)
        self.assertEqual(h.echo(live, b"live"), b"live")
        serve_many(self, port)
        self.assertEqual(h.echo(live, b"still live"), b"still live")
        took = self.stop_within_drain(p, notify)
        print(f"logsink: {CONNECTIONS} connections served with stderr an unread pipe; stopped {took:.2f}s after SIGTERM")

    def test_stderr_pipe_read_late_gets_whole_lines_and_a_drop_count(self):
        port = h.free_port()
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        p, notify = self.spawn(port, "stderr", w)
        os.close(w)
        serve_many(self, port)
        reader = Reader(r)
        reader.start()
        found = h.wait_until(lambda: [e for e in map(h.parse_log_line, reader.text().splitlines())
                                      if e and "log entries dropped" in e.message],
                             timeout=10, what="the dropped-entries entry")
        dropped = int(found[0].message.split()[0])
        self.assertGreater(dropped, 0)
        lines = reader.text().splitlines()
        bad = [l for l in lines if h.parse_log_line(l) is None]
        self.assertEqual(bad, [], "every line written is whole")
        closed = sum(1 for l in lines if "closed (eof)" in l)
        print(f"logsink: pipe read late: {len(lines)} whole lines, {closed} close entries, {dropped} entries dropped")
        self.assertLess(closed, CONNECTIONS, "some close entries had to be dropped")
        self.stop_within_drain(p, notify)

    @unittest.skipIf(UNSHARE is None or os.geteuid() != 0, "needs root and unshare (util-linux)")
    def test_journal_socket_never_read(self):
        """A journal socket whose reader is stuck: a datagram socket of
        the test's own, mounted over /run/systemd/journal in a mount
        namespace of echod's own, read only at the end."""
        port = h.free_port()
        jdir = os.path.join(self.tmp, "journal")
        os.mkdir(jdir)
        js = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(js.close)
        js.bind(os.path.join(jdir, "socket"))
        script = ('mount --make-rprivate / && mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal'
                  f' && mount --bind {jdir} /run/systemd/journal && exec "$@"')
        errf = open(os.path.join(self.tmp, "stderr"), "wb")
        self.addCleanup(errf.close)
        p, notify = self.spawn(port, "journal", errf, wrapper=[UNSHARE, "-m", "sh", "-c", script, "sh"])
        serve_many(self, port)
        took = self.stop_within_drain(p, notify)
        js.setblocking(False)
        got = []
        try:
            while True:
                got.append(js.recv(65536))
        except BlockingIOError:
            pass
        self.assertGreater(len(got), 0, "entries reached the journal socket")
        self.assertTrue(all(b"MESSAGE=" in g and b"PRIORITY=" in g for g in got))
        print(f"logsink: {CONNECTIONS} connections served with the journal socket stuck: {len(got)} entries"
              f" queued in it, stopped {took:.2f}s after SIGTERM")

    @unittest.skipIf(UNSHARE is None or os.geteuid() != 0, "needs root and unshare (util-linux)")
    def test_journal_socket_read_late_gets_a_drop_count(self):
        port = h.free_port()
        jdir = os.path.join(self.tmp, "journal")
        os.mkdir(jdir)
        js = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(js.close)
        js.bind(os.path.join(jdir, "socket"))
        script = ('mount --make-rprivate / && mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal'
                  f' && mount --bind {jdir} /run/systemd/journal && exec "$@"')
        errf = open(os.path.join(self.tmp, "stderr"), "wb")
        self.addCleanup(errf.close)
        p, notify = self.spawn(port, "journal", errf, wrapper=[UNSHARE, "-m", "sh", "-c", script, "sh"])
        serve_many(self, port)
        js.settimeout(0.2)
        reader = Reader(None, recv=js.recv)
        reader.start()
        h.wait_until(lambda: "log entries dropped" in reader.text(), timeout=10,
                     what="a MESSAGE=N log entries dropped datagram")
        with open(os.path.join(self.tmp, "stderr"), "rb") as f:
            self.assertNotIn(b"dropped", f.read(), "the journal's entries stay in the journal")
        self.stop_within_drain(p, notify)

    def test_closed_standard_descriptors_are_put_on_dev_null(self):
        """Started with 0, 1 and 2 closed (`2>&-`, a careless init script),
        echod's first sockets would take those numbers and its stderr
        writes would go to a listener or a client; each is opened on
        /dev/null first."""
        port = h.free_port()
        p, notify = self.spawn(port, "stderr", subprocess.DEVNULL,
                               wrapper=["sh", "-c", 'exec "$@" 0<&- 1>&- 2>&-', "sh"])
        targets = {fd: os.readlink(f"/proc/{p.pid}/fd/{fd}") for fd in (0, 1, 2)}
        self.assertEqual(targets, {0: "/dev/null", 1: "/dev/null", 2: "/dev/null"})
        for i in range(20):
            with h.connect(HOST, port) as c:
                msg = b"closed fds %d" % i
                self.assertEqual(h.echo(c, msg), msg)
                c.shutdown(socket.SHUT_WR)
                c.settimeout(5)
                self.assertEqual(c.recv(65536), b"", "nothing but the echo reaches a client")
        self.stop_within_drain(p, notify)


if __name__ == "__main__":
    h.main(budget=170)
