"""Signals echod does not use are harmless; workers do not outlive a master
killed outright."""

import os
import signal
import socket
import time

import harness as h

HOST = "127.0.0.1"

# Every signal whose default action would end the process and that echod
# gives no meaning (SIGUSR2 gets one later; until then it must be harmless).
STRAY = [
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGIO,
    signal.SIGPROF,
    signal.SIGVTALRM,
    signal.SIGPWR,
    signal.SIGSTKFLT,
    signal.SIGXCPU,
    signal.SIGXFSZ,
    signal.SIGRTMIN + 2,
    signal.SIGRTMAX,
]


def alive(pid):
    st = h.proc_stat(pid)
    return st is not None and st[0] != "Z"


class SignalsTest(h.TestCase):
    def start(self):
        self.port = h.free_port()
        return self.daemon(h.config_text(listen=[f"{HOST}:{self.port}"]))

    def live(self):
        c = self.client(HOST, self.port)
        self.assertEqual(h.echo(c, b"hello"), b"hello")
        return c

    def test_stray_signals_leave_master_and_workers_serving(self):
        d = self.start()
        c = self.live()
        worker = d.worker_for(c)
        self.assertIsNotNone(worker)
        for sig in STRAY:
            name = signal.strsignal(sig) or str(int(sig))
            d.signal(sig)
            os.kill(worker, sig)
            time.sleep(0.05)
            self.assertTrue(d.alive(), f"{name} killed the master; log:\n{d.log_text()}")
            self.assertTrue(alive(worker), f"{name} killed the worker")
            self.assertEqual(h.echo(c, name.encode()), name.encode(), f"the live connection after {name}")
            h.assert_served(self, HOST, self.port)
        # The probes' workers end by themselves; the live one is still there.
        self.assertEqual(d.wait_children(1), [worker])

    def test_signals_ignored_by_the_caller_are_set_back(self):
        """Started with SIGCHLD, SIGHUP and SIGTERM ignored (dispositions
        survive exec: `trap '' CHLD`, nohup, a supervisor in Python): an
        ignored SIGCHLD made the kernel reap the workers itself, so the
        master never saw one end and a stop waited for ever."""
        ignore = ("import os, signal, sys\n"
                  "for s in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM):\n"
                  "    signal.signal(s, signal.SIG_IGN)\n"
                  "os.execvp(sys.argv[1], sys.argv[1:])\n")
        self.port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{self.port}"], server={"drain_timeout": "30s"}),
                        wrapper=["python3", "-c", ignore])
        for _ in range(5):
            h.assert_served(self, HOST, self.port)
        self.assertEqual(d.wait_children(0), [], "finished workers are reaped by the master")
        c = self.live()
        worker = d.worker_for(c)
        with open(f"/proc/{worker}/status") as f:
            ign = int(next(l for l in f if l.startswith("SigIgn:")).split()[1], 16)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD):
            self.assertFalse(ign & (1 << (sig - 1)), f"the worker must not inherit {sig.name} ignored")
        d.reload()
        c.close()
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, 5.0, "the drain ends once the last worker is reaped")

    def test_workers_end_when_master_is_killed(self):
        d = self.start()
        c1, c2 = self.live(), self.live()
        workers = [d.worker_for(c) for c in (c1, c2)]
        self.assertNotIn(None, workers)
        # Owed bytes in flight when the master dies are still handed back.
        c1.sendall(b"x" * 4096)
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(timeout=5)
        h.wait_until(lambda: not any(alive(w) for w in workers), timeout=5.0,
                     what="workers to end after their master was killed")
        self.assertEqual(h.pump(c1, until_eof=True), (b"x" * 4096, "eof"))
        self.assertEqual(h.pump(c2, until_eof=True), (b"", "eof"), "the idle client is closed, not left hanging")


if __name__ == "__main__":
    h.main(budget=100)
