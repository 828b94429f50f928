"""SIGTERM/SIGINT drain, drain_timeout, a second SIGTERM, SIGQUIT."""

import os
import signal
import socket
import time

import harness as h

HOST = "127.0.0.1"


class DrainTest(h.TestCase):
    def start(self, drain_timeout="60s"):
        self.port = h.free_port()
        return self.daemon(
            h.config_text(
                listen=[f"{HOST}:{self.port}"],
                server={"drain_timeout": drain_timeout},
                limits={"max_connections_per_source": 0},
            )
        )

    def live(self, n):
        out = []
        for i in range(n):
            c = self.client(HOST, self.port)
            self.assertEqual(h.echo(c, b"live %d" % i), b"live %d" % i)
            out.append(c)
        return out

    def begin_drain(self, d, sig=signal.SIGTERM):
        before = d.notify.count()
        d.signal(sig)
        d.notify.wait("STOPPING", "1", after=before)

    def assert_still_running(self, d, why):
        time.sleep(0.5)
        self.assertTrue(d.alive(), f"echod exited ({d.proc.returncode}) but {why}")

    def drain_with_live_connections(self, sig):
        d = self.start()
        c1, c2 = self.live(2)
        self.begin_drain(d, sig)
        h.assert_not_listening(self, HOST, self.port, timeout=2.0)
        for c in (c1, c2):
            self.assertEqual(h.echo(c, b"draining" * 512), b"draining" * 512, "a live connection must keep echoing while draining")
        c1.close()
        d.wait_children(1)
        self.assert_still_running(d, "a connection is still open")
        self.assertEqual(h.echo(c2, b"last one"), b"last one")
        c2.close()
        rc = d.wait_exit(timeout=5.0)
        self.assertEqual(rc, 0, "echod should exit 0 after a clean drain")

    def test_sigterm_closes_listener_and_waits_for_live_connections(self):
        self.drain_with_live_connections(signal.SIGTERM)

    def test_sigint_drains_like_sigterm(self):
        self.drain_with_live_connections(signal.SIGINT)

    def test_ctrl_c_to_the_process_group_drains(self):
        """Ctrl-C in a terminal signals the master and every worker at once;
        the workers leave it to the master, which drains them."""
        d = self.start()
        c = self.live(1)[0]
        before = d.notify.count()
        os.killpg(d.pid, signal.SIGINT)
        d.notify.wait("STOPPING", "1", after=before)
        self.assertEqual(h.echo(c, b"after ctrl-c"), b"after ctrl-c", "a worker must survive a group SIGINT")
        os.killpg(d.pid, signal.SIGHUP)
        os.killpg(d.pid, signal.SIGUSR1)
        self.assertEqual(h.echo(c, b"after hup+usr1"), b"after hup+usr1", "a worker must survive a group SIGHUP/SIGUSR1")
        c.close()
        self.assertEqual(d.wait_exit(timeout=5.0), 0)

    def test_sigterm_without_connections_exits_promptly(self):
        d = self.start()
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(timeout=3.0)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 3.0)
        # the reader thread may not have taken the datagram yet: wait, bounded
        d.notify.wait("STOPPING", "1", timeout=3.0)

    def test_drain_timeout_ends_idle_connection_with_eof(self):
        d = self.start(drain_timeout="1s")
        c = self.client(HOST, self.port)
        cport = c.getsockname()[1]
        data = os.urandom(100000)
        self.assertTrue(h.echo(c, data) == data)
        mark = d.log_mark()
        t0 = time.monotonic()
        self.begin_drain(d)
        got, end = h.pump(c, b"", until_eof=True, timeout=8.0)
        waited = time.monotonic() - t0
        self.assertEqual((got, end), (b"", "eof"), "after drain_timeout the client should see EOF")
        self.assertGreater(waited, 0.7, f"EOF after {waited:.2f}s, before drain_timeout=1s")
        self.assertLess(waited, 6.0, f"EOF after {waited:.2f}s, long after drain_timeout=1s")
        self.assertEqual(d.wait_exit(timeout=5.0), 0)
        e = d.wait_closed_entry(cport, since=0)
        self.assertEqual(e.fields.get("close_reason"), "drained", e.raw)
        self.assertEqual(e.fields.get("bytes_in"), str(len(data)), e.raw)
        self.assertEqual(e.fields.get("bytes_out"), str(len(data)), e.raw)

    def drain_owing(self, send):
        """Starts a drain with drain_timeout=1s while the client has sent
        without reading (send(sock) does it and returns what it sent), reads
        only after the timeout struck, and checks that it got back exactly
        what the worker logged as written, then EOF."""
        d = self.start(drain_timeout="1s")
        c = self.client(HOST, self.port)
        cport = c.getsockname()[1]
        data = send(c)
        time.sleep(0.2)
        t0 = time.monotonic()
        self.begin_drain(d)
        time.sleep(max(0.0, 1.3 - (time.monotonic() - t0)))
        got, end = h.pump(c, b"", until_eof=True, timeout=8.0)
        self.assertEqual(d.wait_exit(timeout=5.0), 0)
        e = d.wait_closed_entry(cport, since=0)
        self.assertEqual(e.fields.get("close_reason"), "drained", e.raw)
        self.assertEqual(e.fields.get("bytes_out"), e.fields.get("bytes_in"), f"everything read must be written back: {e.raw}")
        self.assertTrue(got == data[: len(got)], "what came back must be exactly a prefix of what was sent")
        self.assertEqual(
            (end, len(got)),
            ("eof", int(e.fields.get("bytes_out", -1))),
            f"the client must receive every byte the worker wrote (bytes_out) and then EOF; it had sent {len(data)}: {e.raw}",
        )

    def test_drain_timeout_delivers_bytes_in_flight_then_eof(self):
        def send(c):
            data = os.urandom(128 << 10)  # fits the buffers: the worker reads it all
            c.sendall(data)
            return data

        self.drain_owing(send)

    def test_drain_timeout_delivers_owed_bytes_while_client_still_sending(self):
        def send(c):
            # Fill every buffer on the way and back: the worker still has
            # unread input when it is told to finish.
            data = os.urandom(8 << 20)
            sent = 0
            c.setblocking(False)
            deadline = time.monotonic() + 1.0
            while sent < len(data) and time.monotonic() < deadline:
                try:
                    sent += c.send(data[sent : sent + 65536])
                except BlockingIOError:
                    time.sleep(0.01)
            c.setblocking(True)
            return data[:sent]

        self.drain_owing(send)

    def test_second_sigterm_skips_the_wait(self):
        d = self.start(drain_timeout="60s")
        c = self.live(1)[0]
        cport = c.getsockname()[1]
        self.begin_drain(d)
        self.assert_still_running(d, "drain_timeout=60s has not passed and a connection is open")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        got, end = h.pump(c, b"", until_eof=True, timeout=5.0)
        self.assertEqual((got, end), (b"", "eof"), "a second SIGTERM should end the connection with EOF")
        self.assertEqual(d.wait_exit(timeout=5.0), 0)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(d.wait_closed_entry(cport).fields.get("close_reason"), "drained")

    def test_sigquit_stops_now_and_kills_workers(self):
        d = self.start(drain_timeout="60s")
        clients = self.live(2)
        workers = d.wait_children(2)
        t0 = time.monotonic()
        d.signal(signal.SIGQUIT)
        d.wait_exit(timeout=3.0)
        self.assertLess(time.monotonic() - t0, 3.0)
        h.wait_until(lambda: all(h.is_dead(p) for p in workers), 3.0, f"workers {workers} to die after SIGQUIT")
        for c in clients:
            got, end = h.pump(c, b"x", timeout=3.0)
            self.assertIn(end, ("eof", "reset"), f"a client of a killed worker should see EOF or reset, observed {end}")
            self.assertEqual(got, b"")

    def test_new_connections_refused_while_draining(self):
        d = self.start()
        self.live(1)
        self.begin_drain(d)
        h.assert_not_listening(self, HOST, self.port, timeout=2.0)
        # and it stays that way, nothing was reopened
        time.sleep(0.3)
        with socket.socket() as s:
            s.settimeout(2)
            self.assertNotEqual(s.connect_ex((HOST, self.port)), 0)
        self.assertEqual(len(d.children()), 1)

    def test_listener_stops_even_if_a_worker_holds_it(self):
        d = self.start()
        self.live(1)
        # as a worker forked just before the SIGTERM would, for a moment
        held = h.hold_listener(d.pid, self.port)
        self.addCleanup(held.close)
        self.begin_drain(d)
        h.assert_not_listening(self, HOST, self.port, timeout=1.0)


class DrainBacklogTest(h.TestCase):
    def test_queued_connections_are_served_not_reset(self):
        """Clients whose handshake completed but that still sit in the
        backlog when SIGTERM comes are served in the drain."""
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], server={"backlog": 16, "drain_timeout": "10s"},
                                      limits={"max_connections_per_source": 0}))
        # A stopped master accepts nothing: the kernel queues them.
        os.kill(d.pid, signal.SIGSTOP)
        self.addCleanup(lambda: d.alive() and os.kill(d.pid, signal.SIGCONT))
        queued = []
        for i in range(12):
            c = self.client(HOST, port)
            c.sendall(b"queued %d" % i)
            queued.append(c)
        before = d.notify.count()
        os.kill(d.pid, signal.SIGTERM)
        os.kill(d.pid, signal.SIGCONT)
        d.notify.wait("STOPPING", "1", after=before)
        results = []
        for c in queued:
            try:
                c.shutdown(socket.SHUT_WR)
                results.append(h.pump(c, until_eof=True))
            except OSError as e:  # reset already: ENOTCONN, ECONNRESET
                results.append((b"", e.strerror))
        self.assertEqual(results, [(b"queued %d" % i, "eof") for i in range(len(queued))],
                         "every queued client is served, none reset")
        self.assertEqual(d.wait_exit(timeout=10), 0)
        h.assert_not_listening(self, HOST, port, timeout=1.0)

    def test_a_thousand_listeners_stop_at_once(self):
        """Each listener gets a moment for handshakes under way before it
        is closed: one moment for all of them, not one each (1000
        listeners took 20 s to stop, 1000 times 20 ms)."""
        port = h.free_port()
        addrs = [f"127.0.{1 + i // 250}.{1 + i % 250}:{port}" for i in range(1000)]
        d = self.daemon(h.config_text(listen=addrs))
        c = self.client("127.0.4.250", port)
        self.assertEqual(h.echo(c, b"last"), b"last")
        c.close()
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGTERM)
        self.assertEqual(d.wait_exit(timeout=30), 0)
        took = time.monotonic() - t0
        print(f"drain: 1000 listeners closed and echod gone {took:.2f}s after SIGTERM")
        self.assertLess(took, 5.0, "stopping must not wait per listener")


if __name__ == "__main__":
    h.main(budget=170)
