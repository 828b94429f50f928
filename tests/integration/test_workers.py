"""One worker process per connection: counted, reaped, killed, timed out."""

import os
import signal
import socket
import struct
import subprocess
import time

import harness as h

HOST = "127.0.0.1"


class WorkersTest(h.TestCase):
    def start(self, limits=None, log=None):
        self.port = h.free_port()
        lim = {"max_connections_per_source": 0}
        lim.update(limits or {})
        self.d = self.daemon(h.config_text(listen=[f"{HOST}:{self.port}"], limits=lim, log=log))
        return self.d

    def open_clients(self, n):
        clients = [self.client(HOST, self.port) for _ in range(n)]
        for i, c in enumerate(clients):
            self.assertEqual(h.echo(c, b"hello %d" % i), b"hello %d" % i)
        return clients

    def test_one_worker_child_per_connection(self):
        d = self.start()
        self.assertEqual(d.children(), [], "a fresh echod has no workers")
        clients = self.open_clients(5)
        kids = d.wait_children(5)
        served = {d.worker_for(c) for c in clients}
        self.assertEqual(served, set(kids), "each connection should be served by its own child of echod")
        for c in clients:
            c.close()

    def test_worker_is_sandboxed(self):
        """Issue 5: before it touches client data a worker has no
        capability, no_new_privs and a seccomp filter (the master here runs
        as root, so the capabilities are really dropped)."""
        built = subprocess.run([h.ECHOD, "--version"], capture_output=True, text=True).stdout
        if "worker sandbox: off" in built:
            self.skipTest("built with -Dsandbox=false (valgrind or sanitizer build)")
        d = self.start()
        (c,) = self.open_clients(1)
        worker = d.worker_for(c)
        with open(f"/proc/{worker}/status") as f:
            st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        with open(f"/proc/{d.pid}/status") as f:
            master = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        print(f"worker {worker}: CapEff {st['CapEff']} NoNewPrivs {st['NoNewPrivs']} Seccomp {st['Seccomp']}")
        self.assertEqual(int(st["CapEff"], 16), 0, st)
        self.assertEqual(int(st["CapPrm"], 16), 0, st)
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(st["Seccomp"], "2")
        with open("/proc/self/status") as f:
            mine = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        # Under a container's own filter (systemd-nspawn) everything here
        # is in mode 2: what tells is the worker's filters beyond the
        # master's, and the master's being no more than the test's.
        if "Seccomp_filters" in st:
            self.assertGreater(int(st["Seccomp_filters"]), int(master["Seccomp_filters"]), "the worker has its own filter")
            self.assertEqual(master["Seccomp_filters"], mine["Seccomp_filters"], "the master itself is not confined")
        else:
            self.assertEqual(master["Seccomp"], mine["Seccomp"], "the master itself is not confined")
        self.assertEqual(h.echo(c, b"still echoing"), b"still echoing")

    def test_workers_reaped_after_clients_leave(self):
        d = self.start()
        clients = self.open_clients(5)
        kids = d.wait_children(5)
        for c in clients:
            c.close()
        d.wait_children(0, timeout=5)
        zombies = [p for p in kids if (h.proc_stat(p) or ("gone",))[0] == "Z"]
        self.assertEqual(zombies, [], "workers left as zombies")
        self.assertTrue(all(h.proc_stat(p) is None for p in kids), f"workers still exist: {[(p, h.proc_stat(p)) for p in kids]}")
        self.assertTrue(d.alive())

    def test_sigkilled_worker_is_reaped_logged_and_others_keep_echoing(self):
        d = self.start()
        clients = self.open_clients(3)
        d.wait_children(3)
        victim_client = clients[1]
        victim = d.worker_for(victim_client)
        self.assertIsNotNone(victim, "could not find the worker of the second connection")
        mark = d.log_mark()
        os.kill(victim, signal.SIGKILL)

        got, end = h.pump(victim_client, b"are you there", timeout=5.0)
        self.assertIn(end, ("eof", "reset"), f"the killed worker's client should see EOF or a reset, observed {end} with {got!r}")
        self.assertEqual(got, b"")

        e = d.wait_entry(
            lambda e: e.fields.get("worker_pid") == str(victim) and "signal" in e.fields,
            since=mark,
            what=f"a warning with worker_pid={victim} and signal=",
        )
        self.assertEqual(e.level, "warning", e.raw)
        self.assertEqual(e.fields["signal"], "SIGKILL", e.raw)

        remaining = d.wait_children(2)
        self.assertNotIn(victim, remaining)
        self.assertTrue(h.proc_stat(victim) is None, f"killed worker {victim} not reaped: {h.proc_stat(victim)}")
        for c in (clients[0], clients[2]):
            self.assertEqual(h.echo(c, b"still here" * 1000), b"still here" * 1000)
        self.assertTrue(d.alive())
        h.assert_served(self, HOST, self.port)

    def test_idle_connection_closed_with_reason_idle(self):
        d = self.start(limits={"idle_timeout": "1s"})
        mark = d.log_mark()
        s = self.client(HOST, self.port)
        cport = s.getsockname()[1]
        self.assertEqual(h.echo(s, b"x"), b"x")
        t0 = time.monotonic()
        got, end = h.pump(s, b"", until_eof=True, timeout=6.0)
        waited = time.monotonic() - t0
        self.assertEqual((got, end), (b"", "eof"), "the server should close an idle connection")
        self.assertGreater(waited, 0.7, f"closed after {waited:.2f}s, before idle_timeout=1s")
        self.assertLess(waited, 4.0, f"closed after {waited:.2f}s, long after idle_timeout=1s")
        e = d.wait_closed_entry(cport, since=mark)
        self.assertEqual(e.fields.get("close_reason"), "idle", e.raw)
        self.assertEqual(e.fields.get("bytes_in"), "1", e.raw)

    def test_busy_connection_outlives_idle_timeout(self):
        d = self.start(limits={"idle_timeout": "1s"})
        s = self.client(HOST, self.port)
        t_end = time.monotonic() + 2.5
        n = 0
        while time.monotonic() < t_end:
            self.assertEqual(h.echo(s, b"tick %d" % n), b"tick %d" % n, "a connection moving bytes must not be closed as idle")
            n += 1
            time.sleep(0.3)
        self.assertEqual(len(d.children()), 1)

    def test_no_close_entries_when_connections_logging_off(self):
        d = self.start(log={"connections": "no"})
        mark = d.log_mark()
        s = h.connect(HOST, self.port)
        cport = s.getsockname()[1]
        self.assertEqual(h.echo(s, b"quiet"), b"quiet")
        s.close()
        d.wait_children(0)  # the worker has exited, so it logged all it ever will
        closed = d.find_entries(lambda e: "closed" in e.message or "close_reason" in e.fields, since=mark)
        self.assertEqual(closed, [], "log.connections=no must not log connection closes")
        self.assertNotIn(f"remote_port={cport}", d.log_text())

    def test_client_reset_logged_as_reset(self):
        d = self.start()
        mark = d.log_mark()
        s = h.connect(HOST, self.port)
        cport = s.getsockname()[1]
        self.assertEqual(h.echo(s, b"bye"), b"bye")
        # linger 0: close() sends RST instead of FIN
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        e = d.wait_closed_entry(cport, since=mark)
        self.assertEqual(e.fields.get("close_reason"), "reset", e.raw)
        d.wait_children(0)


if __name__ == "__main__":
    h.main(budget=110)
