"""Socket activation: echod serves the socket systemd passes and ignores
[server] listen."""

import os
import re
import shutil
import signal
import unittest

import harness as h

HOST = "127.0.0.1"


def find_socket_activate():
    found = shutil.which("systemd-socket-activate")
    if found:
        return found
    for d in ("/usr/bin", "/lib/systemd", "/usr/lib/systemd"):
        p = os.path.join(d, "systemd-socket-activate")
        if os.access(p, os.X_OK):
            return p
    return None


SOCKET_ACTIVATE = find_socket_activate()


def says_listen_ignored(e):
    return re.search(r"(?i)ignor", e.message) is not None and "listen" in e.raw.lower()


@unittest.skipIf(SOCKET_ACTIVATE is None, "systemd-socket-activate not installed (package systemd)")
class ActivationTest(h.TestCase):
    def start_activated(self, listen=True):
        self.passed = h.free_port()
        self.configured = h.free_port()
        d = self.daemon(
            h.config_text(listen=[f"{HOST}:{self.configured}"] if listen else []),
            start=False,
            # without --accept it execs echod in place, on the first connection
            wrapper=[SOCKET_ACTIVATE, "-l", f"{HOST}:{self.passed}", "-E", "NOTIFY_SOCKET"],
        )
        d.start(wait_ready=False)
        h.wait_until(lambda: h.listening_inode(self.passed), what=f"systemd-socket-activate to listen on {self.passed}")
        self.first = self.client(HOST, self.passed)
        self.first.sendall(b"first")
        d.wait_ready()
        return d

    def test_needs_no_listen_when_activated(self):
        """Only a daemon that binds for itself needs a listen address
        (test_conffiles): passed sockets are enough, at start and reload."""
        d = self.start_activated(listen=False)
        self.assertEqual(h.pump(self.first, b"", expect=5), (b"first", None))
        mark = d.log_mark()
        d.reload()
        d.wait_log(r"reloaded configuration", since=mark)
        h.assert_served(self, HOST, self.passed)

    def test_serves_the_passed_socket(self):
        d = self.start_activated()
        got, end = h.pump(self.first, b"", expect=5)
        self.assertEqual((got, end), (b"first", None), "the connection that woke echod must be served")
        data = os.urandom(1 << 20)
        self.assertTrue(h.echo_roundtrip(HOST, self.passed, data) == data)
        self.assertEqual(len(d.children()), 1, "one worker for the first connection, still open")

    def test_ignores_listen_and_says_so(self):
        d = self.start_activated()
        h.assert_not_listening(self, HOST, self.configured)
        e = d.wait_entry(says_listen_ignored, what="an entry saying that listen is ignored")
        self.assertIn(e.level, ("info", "notice", "warning"), e.raw)

    def test_reload_keeps_passed_socket_and_says_so_again(self):
        d = self.start_activated()
        self.assertEqual(h.pump(self.first, b"", expect=5), (b"first", None))
        inode = h.listening_inode(self.passed)
        other = h.free_port()
        d.write_config(h.config_text(listen=[f"{HOST}:{other}"]))
        mark = d.log_mark()
        d.reload()
        d.wait_entry(says_listen_ignored, since=mark, what="the listen-ignored entry again on reload")
        self.assertEqual(h.listening_inode(self.passed), inode, "the passed socket must stay the same")
        h.assert_served(self, HOST, self.passed)
        h.assert_not_listening(self, HOST, other)
        self.assertEqual(h.echo(self.first, b"again"), b"again", "a live connection survives the reload")

    def test_stop_leaves_passed_socket_listening_for_the_next_start(self):
        d = self.start_activated()
        self.assertEqual(h.pump(self.first, b"", expect=5), (b"first", None))
        # systemd's own copy, which it keeps across a restart
        held = h.hold_listener(d.pid, self.passed)
        self.addCleanup(held.close)
        d.signal(signal.SIGTERM)
        self.first.close()
        self.assertEqual(d.wait_exit(timeout=5.0), 0)
        # A connection made while echod is down waits in the backlog for
        # the next start, here the holder of the copy.
        waiting = self.client(HOST, self.passed)
        held.settimeout(2.0)
        conn, _ = held.accept()
        conn.close()
        waiting.close()


if __name__ == "__main__":
    h.main(budget=110)
