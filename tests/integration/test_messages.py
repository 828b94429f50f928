"""Log wording (issue 11 item 7): one way to write a peer, numbers that
agree with their nouns, and each further stop request named for what it
does."""

import os
import shutil
import signal
import socket
import unittest

import harness as h

HOST = "127.0.0.1"


def rel_zombies(d):
    return [p for p in h.children(d.pid) if (h.proc_stat(p) or ("gone",))[0] == "Z"]


class MessagesTest(h.TestCase):
    def refusal(self, host, listen, deny):
        """The message of the refusal of one connection from host (a
        daemon of its own: refusals are logged once per reason and
        interval)."""
        port = h.free_port(listen)
        d = self.daemon(h.config_text(listen=[h.fmt_addr(listen, port)], access={"deny": [deny]}))
        mark = d.log_mark()
        c = socket.create_connection((listen, port), source_address=(host, 0), timeout=5)
        sport = c.getsockname()[1]
        c.close()
        e = d.wait_entry(lambda e: "reject_reason" in e.fields, since=mark, what="a refusal")
        return e.message, sport

    def test_peers_are_written_host_colon_port(self):
        msg, sport = self.refusal("127.0.0.9", HOST, "127.0.0.9")
        self.assertEqual(msg, f"refused connection from 127.0.0.9:{sport}: denied")
        if h.ipv6_available():
            msg, sport = self.refusal("::1", "::1", "::1")
            self.assertEqual(msg, f"refused connection from [::1]:{sport}: denied")

    def test_one_byte_is_one_byte(self):
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"]))
        for data, words in ((b"x", "1 byte in, 1 out"), (b"xy", "2 bytes in, 2 out"), (b"", "0 bytes in, 0 out")):
            mark = d.log_mark()
            with h.connect(HOST, port) as c:
                local = c.getsockname()[1]
                if data:
                    self.assertEqual(h.echo(c, data), data)
            e = d.wait_entry(lambda e: e.fields.get("remote_port") == str(local), since=mark, what="its close record")
            self.assertRegex(e.message, rf"^connection from {HOST}:{local} closed \(eof\): {words}, \d+\.\d{{3}}s$")

    def test_each_further_stop_request_says_what_it_does(self):
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], server={"drain_timeout": "1min"}))
        c = self.client(HOST, port)
        self.assertEqual(h.echo(c, b"live"), b"live")
        worker = d.worker_for(c)
        # Stopped, the worker outlasts the SIGTERM of the second request,
        # so the third has something left to do.
        os.kill(worker, signal.SIGSTOP)
        mark = d.log_mark()
        d.signal(signal.SIGTERM)
        d.wait_entry(lambda e: "draining" in e.message, since=mark, what="the drain")
        d.signal(signal.SIGTERM)
        d.wait_entry(lambda e: "again" in e.message, since=mark, what="the second request")
        d.signal(signal.SIGTERM)
        d.wait_entry(lambda e: "killing" in e.message, since=mark, what="the third request")
        self.assertEqual(d.wait_exit(timeout=15), 0)
        said = [e.message for e in d.entries(mark) if "received" in e.message]
        self.assertEqual(said[1:], ["SIGTERM received again: not waiting for the drain any longer",
                                    "SIGTERM received again: killing 1 worker now"], said)

    def test_the_drain_counts_only_open_connections(self):
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], server={"drain_timeout": "30s"}))
        ended = [self.client(HOST, port) for _ in range(10)]
        for s in ended:
            self.assertEqual(h.echo(s, b"soon gone"), b"soon gone")
        c = self.client(HOST, port)
        self.assertEqual(h.echo(c, b"live"), b"live")
        # With the master stopped, ten connections end and their workers
        # exit unreaped; SIGTERM then comes before SIGCHLD is read.
        os.kill(d.pid, signal.SIGSTOP)
        self.addCleanup(lambda: d.alive() and os.kill(d.pid, signal.SIGCONT))
        for s in ended:
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(h.pump(s, until_eof=True), (b"", "eof"))
        h.wait_until(lambda: len(rel_zombies(d)) == 10, what="ten exited workers")
        mark = d.log_mark()
        d.signal(signal.SIGTERM)
        os.kill(d.pid, signal.SIGCONT)
        e = d.wait_entry(lambda e: "draining" in e.message, since=mark, what="the drain")
        self.assertEqual((e.message, e.fields["active"]),
                         ("SIGTERM received: stopped listening, draining 1 connection", "1"))
        c.close()
        self.assertEqual(d.wait_exit(timeout=10), 0)

    def test_a_connection_killed_by_sigquit_has_its_record(self):
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], log={"connections": "no"}))
        c = self.client(HOST, port)
        self.assertEqual(h.echo(c, b"live"), b"live")
        local = c.getsockname()[1]
        worker = d.worker_for(c)
        mark = d.log_mark()
        d.signal(signal.SIGQUIT)
        self.assertEqual(d.wait_exit(timeout=10), 0)
        rec = [e for e in d.entries(mark) if e.fields.get("close_reason") == "killed"]
        self.assertEqual(len(rec), 1, d.log_text())
        f = rec[0].fields
        self.assertEqual((rec[0].level, f["remote_port"], f["local_port"], f["worker_pid"]),
                         ("warning", str(local), str(port), str(worker)))
        self.assertEqual(rec[0].message.split(":")[0], f"connection from {HOST}")

    @unittest.skipIf(shutil.which("unshare") is None or os.geteuid() != 0, "needs root and unshare (util-linux)")
    def test_journal_target_without_journald_says_so(self):
        """target = journal where no journald listens (a container
        without one): echod logs to stderr, and says so first."""
        port = h.free_port()
        script = 'mount --make-rprivate / && mount -t tmpfs tmpfs /run && exec "$@"'
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], log={"target": "journal"}),
                        wrapper=["unshare", "-m", "sh", "-c", script, "sh"])
        h.assert_served(self, HOST, port)
        first = d.entries()[0]
        self.assertEqual((first.level, first.message),
                         ("warning", "cannot reach the journal at /run/systemd/journal/socket:"
                                     " No such file or directory; logging to standard error"))
        d.wait_entry(lambda e: "closed (eof)" in e.message, what="a close record on stderr")


if __name__ == "__main__":
    h.main(budget=60)
