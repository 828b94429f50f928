"""Out of descriptors and out of tasks: the master keeps running, does not
spin, refuses or defers cleanly, and serves fully once resources return."""

import errno
import os
import subprocess
import threading
import time

import harness as h

HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")
# A system user on Debian and Fedora alike that the other tests leave alone.
USER = "daemon"


def cpu_seconds(pid):
    """User plus system CPU time of one process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def set_limit(pid, what, value):
    """Sets the soft limit only, so that it can be raised again."""
    subprocess.run(["prlimit", "--pid", str(pid), f"--{what}={value}:"], check=True)


class ExhaustionTest(h.TestCase):
    def test_out_of_descriptors_refuses_without_spinning_then_recovers(self):
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], log={"level": "info"}))
        # Leave the master no free descriptor but its spare: accept fails
        # with EMFILE, and the spare lets it take the connection and close it.
        # The fewest of a few looks: a status datagram briefly holds one more.
        nfds = len(os.listdir(f"/proc/{d.pid}/fd"))
        for _ in range(5):
            time.sleep(0.02)
            nfds = min(nfds, len(os.listdir(f"/proc/{d.pid}/fd")))
        set_limit(d.pid, "nofile", nfds)
        mark = d.log_mark()
        before = cpu_seconds(d.pid)
        refused = 0
        stop = time.monotonic() + 2.0
        while time.monotonic() < stop:
            state, _ = h.probe(HOST, port, timeout=2.0)
            self.assertIn(state, ("eof", "reset"), "out of descriptors a client must be refused at once, not left waiting")
            refused += 1
            time.sleep(0.01)  # a steady trickle: a spinning master would burn 2 s regardless
        used = cpu_seconds(d.pid) - before
        print(f"out of descriptors: {refused} connections refused in 2 s, master CPU {used:.3f}s")
        e = d.wait_entry(lambda e: e.fields.get("reject_reason") == "out_of_descriptors", since=mark,
                         what="reject_reason=out_of_descriptors")
        self.assertEqual(e.fields.get("remote_addr"), HOST, e.raw)
        # One line per interval however many were refused, with the count.
        lines = d.find_entries(lambda e: e.fields.get("reject_reason") == "out_of_descriptors", since=mark)
        self.assertLessEqual(len(lines), 1 + 2 // 5 + 1, [x.raw for x in lines])
        self.assertGreater(refused, len(lines))
        # Each refusal is a few system calls: nothing like a spinning loop.
        self.assertLess(used, 0.3, f"master used {used:.2f}s CPU in 2s while out of descriptors")
        self.assertTrue(d.alive(), "the master must survive EMFILE")
        set_limit(d.pid, "nofile", 1024)
        h.assert_served(self, HOST, port)

    def test_fork_failure_refuses_then_recovers(self):
        port = h.free_port()
        # RLIMIT_NPROC counts the processes of the real uid (USER, after the
        # switch): the master plus one worker fit, a second worker does not.
        # It is set before exec: a running process of another uid refuses
        # prlimit here. The user is one no other test runs echod as: the
        # tests run in parallel, and a worker of another test's echod as
        # nobody, forked after the count, once took the first worker's slot.
        conf = h.config_text(listen=[f"{HOST}:{port}"], server={"user": USER},
                             limits={"max_connections_per_source": 0})
        running = subprocess.run(["pgrep", "-c", "-u", USER], capture_output=True, text=True)
        limit = int(running.stdout.strip() or "0") + 2
        # After the switch the master cannot reach the test's NOTIFY_SOCKET
        # (a root-only directory): wait for its log instead.
        d = self.daemon(conf, start=False, notify=False, wrapper=["prlimit", f"--nproc={limit}:"])
        d.start(wait_ready=False)
        d.wait_log(r"started")
        first = self.client(HOST, port)
        self.assertEqual(h.echo(first, b"one\n"), b"one\n")
        mark = d.log_mark()
        h.assert_rejected(self, HOST, port)
        d.wait_entry(lambda e: e.fields.get("reject_reason") == "fork_failed", since=mark,
                     what="reject_reason=fork_failed")
        self.assertTrue(d.alive(), "the master must survive a failed fork")
        self.assertEqual(h.echo(first, b"still here\n"), b"still here\n")
        before = cpu_seconds(d.pid)
        stop = time.monotonic() + 1.0
        # A stream of connections while exhausted: each one refused, no spin.
        while time.monotonic() < stop:
            state, got = h.probe(HOST, port, timeout=1.0)
            self.assertNotEqual(state, "echoed", "no worker can exist while tasks are exhausted")
        self.assertLess(cpu_seconds(d.pid) - before, 0.8)
        # Every pause ended in another failed fork, but the log has one line
        # for them all (one per call and 5 s), with what failed and how.
        warned = d.find_entries(lambda e: e.fields.get("failed_call") == "fork", since=mark)
        self.assertEqual(len(warned), 1, [x.raw for x in warned])
        self.assertEqual(warned[0].fields.get("errno"), str(errno.EAGAIN), warned[0].raw)
        self.assertEqual(warned[0].fields.get("pause_usec"), "100000", warned[0].raw)
        # The worker ends: its task slot frees and service is full again.
        first.close()
        served = []

        def attempt():
            served[:] = [h.probe(HOST, port)[0]]
            return served[0] == "echoed"

        h.wait_until(attempt, 5.0, "service after tasks are free again", interval=0.1)


if __name__ == "__main__":
    h.main(budget=100)
