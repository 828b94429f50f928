"""SIGHUP: reload as a transaction. New config in, or old config kept whole;
listeners reconciled; live connections untouched."""

import collections
import signal
import socket
import threading
import unittest

import harness as h

HOST = "127.0.0.1"


def reloaded(e):
    return "reloaded" in e.message.lower()


def reload_failed(e):
    m = e.message.lower()
    return "reload" in m and "fail" in m


class ReloadTest(h.TestCase):
    def conf(self, ports, **kw):
        return h.config_text(listen=[f"{HOST}:{p}" for p in ports], **kw)

    def failed_reload(self, d):
        """Reloads d and returns the entry that says the reload failed."""
        mark = d.log_mark()
        d.reload()
        return d.wait_entry(reload_failed, since=mark, what="a reload-failed entry")

    def test_new_port_serves_old_refuses_live_connection_survives(self):
        a, b = h.free_port(), h.free_port()
        d = self.daemon(self.conf([a]))
        live = self.client(HOST, a)
        self.assertEqual(h.echo(live, b"before"), b"before")
        mark = d.log_mark()
        d.write_config(self.conf([b]))
        d.reload()
        d.wait_entry(reloaded, since=mark, what="a 'reloaded' entry")
        h.assert_served(self, HOST, b)
        h.assert_not_listening(self, HOST, a)
        self.assertEqual(h.echo(live, b"after reload"), b"after reload", "a connection opened before the reload must keep echoing")
        self.assertTrue(d.alive())

    def test_removed_listener_stops_even_if_a_worker_holds_it(self):
        a, b = h.free_port(), h.free_port()
        d = self.daemon(self.conf([a]))
        # as a worker forked just before the reload would, for a moment
        held = h.hold_listener(d.pid, a)
        self.addCleanup(held.close)
        d.write_config(self.conf([b]))
        mark = d.log_mark()
        d.reload()
        d.wait_entry(reloaded, since=mark, what="a 'reloaded' entry")
        h.assert_not_listening(self, HOST, a, timeout=1.0)

    def test_port_in_both_keeps_its_socket(self):
        a, b = h.free_port(), h.free_port()
        d = self.daemon(self.conf([a]))
        inode = h.listening_inode(a)
        self.assertIsNotNone(inode)
        h.assert_served(self, HOST, a)
        d.write_config(self.conf([a, b]))
        d.reload()
        self.assertEqual(h.listening_inode(a), inode, "the listener of an address present in both configs must be the same socket")
        h.assert_served(self, HOST, a)
        h.assert_served(self, HOST, b)

    def test_connection_queued_during_reload_is_served(self):
        a = h.free_port()
        d = self.daemon(self.conf([a]))
        d.write_config(self.conf([a], limits={"max_connections": 50}))
        # With the master stopped the kernel queues the connection in the
        # backlog; the master sees it and the SIGHUP together.
        d.signal(signal.SIGSTOP)
        try:
            before = d.notify.count()
            queued = self.client(HOST, a)
            queued.sendall(b"queued")
            d.signal(signal.SIGHUP)
        finally:
            d.signal(signal.SIGCONT)
        i = d.notify.wait("RELOADING", "1", after=before)
        d.notify.wait("READY", "1", after=i + 1)
        got, end = h.pump(queued, b"", expect=6)
        self.assertEqual((got, end), (b"queued", None), "a connection in the backlog during the reload must be served")

    def test_lowered_max_connections_applies_to_new_connections(self):
        a = h.free_port()
        d = self.daemon(self.conf([a], limits={"max_connections": 10, "max_connections_per_source": 0}))
        first = self.client(HOST, a)
        self.assertEqual(h.echo(first, b"one"), b"one")
        h.assert_served(self, HOST, a)  # with 10 a second one is fine
        d.wait_children(1)
        d.write_config(self.conf([a], limits={"max_connections": 1, "max_connections_per_source": 0}))
        mark = d.log_mark()
        d.reload()
        h.assert_rejected(self, HOST, a)
        d.wait_entry(lambda e: e.fields.get("reject_reason") == "max_connections", since=mark, what="reject_reason=max_connections")
        self.assertEqual(h.echo(first, b"live"), b"live", "the live connection is untouched by the lower limit")

    def test_broken_config_keeps_old_one_and_reports_file_line(self):
        a, b = h.free_port(), h.free_port()
        d = self.daemon(self.conf([a]))
        bad = "[server]\nlisten = %s:%d\n\n[limits]\nmax_connections = 5\nno_such_key = 1\n\n[log]\ntarget = stderr\n" % (HOST, b)
        line = h.line_of(bad, "no_such_key")
        d.write_config(bad)
        mark = d.log_mark()
        before = d.notify.count()
        d.signal(signal.SIGHUP)
        i = d.notify.wait("RELOADING", "1", after=before)
        self.assertIn("MONOTONIC_USEC", h.NotifyReader.assignments(d.notify.snapshot()[i]), "RELOADING=1 must come with MONOTONIC_USEC=")
        d.notify.wait("READY", "1", after=i + 1)
        e = d.wait_entry(reload_failed, since=mark, what="a reload-failed entry")
        self.assertIn(e.level, ("err", "error"), e.raw)
        self.assertIn(f"{d.conf_path}:{line}:", e.raw, "the failure must name the file and line of the error")
        self.assertFalse(d.find_entries(reloaded, since=mark), "a failed reload must not report 'reloaded'")
        self.assertTrue(d.alive(), "a bad config on reload must not stop echod")
        h.assert_served(self, HOST, a)
        h.assert_not_listening(self, HOST, b)

    def test_unbindable_address_fails_reload_as_a_whole(self):
        a, b = h.free_port(), h.free_port()
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind((HOST, 0))
        blocker.listen(1)
        c = blocker.getsockname()[1]
        d = self.daemon(self.conf([a]))
        inode = h.listening_inode(a)
        mark = d.log_mark()
        d.write_config(self.conf([a, b, c]))
        e = self.failed_reload(d)
        self.assertIn(f"{HOST}:{c}", e.raw, "the failure should name the address that could not bind")
        self.assertTrue(d.alive())
        h.assert_served(self, HOST, a)
        self.assertEqual(h.listening_inode(a), inode, "the old listener must stay as it was")
        h.assert_not_listening(self, HOST, b)
        self.assertFalse(d.find_entries(reloaded, since=mark))

    def switch_between(self, host_a, host_b, other, family_ok=True):
        """Reloads from host_a:P to host_b:P and back, three times, while a
        client connects to `other` without pause: each reload succeeds, and
        no connection is refused or reset."""
        port = h.free_port(other)
        d = self.daemon(h.config_text(listen=[h.fmt_addr(host_a, port)]))
        live = self.client(other, port)
        self.assertEqual(h.echo(live, b"live"), b"live")
        stop = threading.Event()
        outcomes = collections.Counter()

        def connect_loop():
            while not stop.is_set():
                outcomes[h.probe(other, port, timeout=3.0)[0]] += 1

        t = threading.Thread(target=connect_loop, daemon=True)
        t.start()
        self.addCleanup(stop.set)
        for i in range(3):
            for host in (host_b, host_a):
                mark = d.log_mark()
                d.write_config(h.config_text(listen=[h.fmt_addr(host, port)]))
                d.reload()
                d.wait_entry(lambda e: reloaded(e) or reload_failed(e), since=mark, what="the reload's outcome")
                self.assertFalse(d.find_entries(reload_failed, since=mark), d.log_text()[mark:])
                self.assertEqual(h.echo(live, b"after %d" % i), b"after %d" % i)
        stop.set()
        t.join(10)
        print(f"reload {host_a}:P <-> {host_b}:P six times: {dict(outcomes)}")
        self.assertEqual(set(outcomes), {"echoed"}, f"connections to {other}:{port} during the reloads: {dict(outcomes)}")
        self.assertGreater(outcomes["echoed"], 0)

    def test_specific_to_wildcard_and_back_on_same_port(self):
        self.switch_between(HOST, "0.0.0.0", HOST)

    def test_wildcard_to_specific_and_back_on_same_port(self):
        self.switch_between("0.0.0.0", HOST, HOST)

    @unittest.skipUnless(h.ipv6_available(), "no IPv6")
    def test_ipv6_loopback_to_wildcard_and_back_on_same_port(self):
        self.switch_between("::1", "::", "::1")

    def test_other_program_on_the_port_still_fails_the_reload(self):
        """SO_REUSEPORT lets echod bind beside its own sockets only: a port
        held by someone else (here 127.0.0.2:P) still fails the reload."""
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"]))
        other = socket.socket()
        self.addCleanup(other.close)
        other.bind(("127.0.0.2", port))
        other.listen(1)
        d.write_config(h.config_text(listen=[f"0.0.0.0:{port}"]))
        e = self.failed_reload(d)
        self.assertIn(f"0.0.0.0:{port}", e.message)
        h.assert_served(self, HOST, port)

    def test_second_instance_on_the_same_address_is_refused(self):
        port = h.free_port()
        self.daemon(h.config_text(listen=[f"{HOST}:{port}"]))
        second = self.daemon(h.config_text(listen=[f"0.0.0.0:{port}"]), start=False)
        second.start(wait_ready=False)
        self.assertEqual(second.wait_exit(timeout=10), 71, second.log_text())
        self.assertIn("Address already in use", second.log_text())

    def test_dropin_picked_up_on_reload(self):
        a, b = h.free_port(), h.free_port()
        d = self.daemon(self.conf([a]))
        h.assert_not_listening(self, HOST, b)
        d.write_dropin("50-extra.conf", f"[server]\nlisten = {HOST}:{b}\n")
        d.reload()
        h.assert_served(self, HOST, b)
        h.assert_served(self, HOST, a)  # a list key adds up across files

    def test_dropin_empty_value_clears_list_on_reload(self):
        a, b = h.free_port(), h.free_port()
        d = self.daemon(self.conf([a]))
        d.write_dropin("50-replace.conf", f"[server]\nlisten =\nlisten = {HOST}:{b}\n")
        d.reload()
        h.assert_served(self, HOST, b)
        h.assert_not_listening(self, HOST, a)

    def test_broken_dropin_names_the_dropin(self):
        a = h.free_port()
        d = self.daemon(self.conf([a]))
        text = "[limits]\nmax_connections = lots\n"
        path = d.write_dropin("70-bad.conf", text)
        e = self.failed_reload(d)
        self.assertIn(f"{path}:2:", e.raw)
        h.assert_served(self, HOST, a)

    def test_repeated_reloads_stay_healthy(self):
        a = h.free_port()
        d = self.daemon(self.conf([a]))
        live = self.client(HOST, a)
        for i in range(5):
            d.reload()
            self.assertEqual(h.echo(live, b"round %d" % i), b"round %d" % i)
        h.assert_served(self, HOST, a)
        d.wait_children(1)  # only the live one once the probe's worker is reaped
        self.assertTrue(d.alive())


if __name__ == "__main__":
    h.main(budget=170)
