"""max_connections, max_connections_per_source, rate_per_source and the
source prefixes: refuse at the limit, serve again when a slot frees, never
refuse one source for another's excess."""

import signal
import time

import harness as h

HOST = "127.0.0.1"


def rejected(reason):
    return lambda e: e.fields.get("reject_reason") == reason


class LimitsTest(h.TestCase):
    def start(self, **limits):
        self.port = h.free_port()
        self.d = self.daemon(h.config_text(listen=[f"{HOST}:{self.port}"], limits=limits))
        return self.d

    def open_served(self, n, source=None):
        out = []
        for i in range(n):
            c = self.client(HOST, self.port, source)
            self.assertEqual(h.echo(c, b"conn %d" % i), b"conn %d" % i, f"connection {i + 1} of {n} should be served")
            out.append(c)
        return out

    def close_and_wait(self, c, remaining):
        c.close()
        self.d.wait_children(remaining)

    def served_eventually(self, source=None):
        """Served, allowing the master a moment to account for a reaped worker."""
        last = []

        def attempt():
            last[:] = [h.probe(HOST, self.port, source)]
            return last[0][0] == "echoed"

        try:
            h.wait_until(attempt, 3.0, "a freed slot to serve a new connection", interval=0.1)
        except AssertionError:
            self.fail(f"expected a new connection to be served after a slot freed, observed {last}")

    def test_max_connections_refuses_the_one_over(self):
        d = self.start(max_connections=3, max_connections_per_source=0)
        clients = self.open_served(3)
        d.wait_children(3)
        mark = d.log_mark()
        h.assert_rejected(self, HOST, self.port)
        e = d.wait_entry(rejected("max_connections"), since=mark, what="reject_reason=max_connections")
        self.assertEqual(e.fields.get("remote_addr", HOST), HOST, e.raw)
        self.assertEqual(len(d.children()), 3, "a refused connection must not get a worker")
        for i, c in enumerate(clients):
            self.assertEqual(h.echo(c, b"still %d" % i), b"still %d" % i, "refusing a 4th must not disturb the 3")

    def test_max_connections_serves_again_after_a_close(self):
        d = self.start(max_connections=3, max_connections_per_source=0)
        clients = self.open_served(3)
        h.assert_rejected(self, HOST, self.port)
        self.close_and_wait(clients[0], 2)
        self.served_eventually()
        d.wait_children(2)
        self.assertTrue(d.alive())

    def test_per_source_limit_counts_each_source(self):
        d = self.start(max_connections=100, max_connections_per_source=2)
        self.open_served(2, source="127.0.0.1")
        mark = d.log_mark()
        h.assert_rejected(self, HOST, self.port, source="127.0.0.1")
        e = d.wait_entry(rejected("max_connections_per_source"), since=mark, what="reject_reason=max_connections_per_source")
        self.assertEqual(e.fields.get("remote_addr", "127.0.0.1"), "127.0.0.1", e.raw)
        # another source is counted on its own
        self.open_served(2, source="127.0.0.2")
        self.assertEqual(len(d.children()), 4)

    def test_per_source_limit_frees_after_a_close(self):
        d = self.start(max_connections=100, max_connections_per_source=2)
        clients = self.open_served(2, source="127.0.0.1")
        h.assert_rejected(self, HOST, self.port, source="127.0.0.1")
        self.close_and_wait(clients[0], 1)
        self.served_eventually(source="127.0.0.1")

    def test_per_source_zero_means_unlimited(self):
        d = self.start(max_connections=100, max_connections_per_source=0)
        self.open_served(12)
        self.assertEqual(len(d.children()), 12)

    def test_source_prefix_groups_addresses(self):
        d = self.start(max_connections=100, max_connections_per_source=2, source_prefix_v4=24)
        self.open_served(1, source="127.0.0.2")
        self.open_served(1, source="127.0.0.3")  # same /24: the source's second
        mark = d.log_mark()
        h.assert_rejected(self, HOST, self.port, source="127.0.0.4")
        d.wait_entry(rejected("max_connections_per_source"), since=mark, what="reject_reason=max_connections_per_source")
        self.open_served(2, source="127.0.1.2")  # another /24
        self.assertEqual(len(d.children()), 4)

    def test_rate_per_source_refuses_the_excess_of_one_source_only(self):
        d = self.start(max_connections=100, max_connections_per_source=0, rate_per_source="2/min", burst_per_source=3)
        for i in range(3):
            self.assertEqual(h.echo_roundtrip(HOST, self.port, b"burst %d" % i, source="127.0.0.2"), b"burst %d" % i)
        mark = d.log_mark()
        refused = 0
        for _ in range(20):
            state, _ = h.probe(HOST, self.port, "127.0.0.2")
            refused += state != "echoed"
        print(f"rate 2/min burst 3: 20 more from one source, {refused} refused")
        self.assertEqual(refused, 20, "past its burst a source gets nothing until its rate allows")
        e = d.wait_entry(rejected("rate_per_source"), since=mark, what="reject_reason=rate_per_source")
        self.assertEqual(e.fields.get("remote_addr"), "127.0.0.2", e.raw)
        # one line per interval for a flood, with the count it left out
        lines = [x for x in d.entries(since=mark) if x.fields.get("reject_reason") == "rate_per_source"]
        self.assertEqual(len(lines), 1, [x.raw for x in lines])
        for i in range(3):  # another source has its own allowance
            self.assertEqual(h.echo_roundtrip(HOST, self.port, b"other %d" % i, source="127.0.0.3"), b"other %d" % i)

    def sources_tracked(self):
        mark = self.d.log_mark()
        self.d.signal(signal.SIGUSR1)
        e = self.d.wait_entry(lambda e: "sources" in e.fields, since=mark, what="a statistics entry with sources=")
        return int(e.fields["sources"])

    def test_rate_state_of_a_source_without_workers_is_forgotten(self):
        d = self.start(max_connections=100, max_connections_per_source=0, rate_per_source="2/s", burst_per_source=2)
        # While each source has a live worker, each is tracked.
        held = self.open_served(1, source="127.0.0.2") + self.open_served(1, source="127.0.0.3")
        self.assertEqual(self.sources_tracked(), 2)
        for c in held:
            c.close()
        d.wait_children(0)
        # Their rate state outlives the workers by half a second; then the
        # master's periodic sweep forgets them, or a scan of many addresses
        # would grow the table for good.
        last = []
        h.wait_until(lambda: last.append(self.sources_tracked()) or last[-1] == 0, 5.0,
                     "the sources' rate state to be forgotten", interval=0.3)
        print(f"rate state of 2 sources without workers: forgotten after {len(last)} statistics requests, {last}")

    def test_max_lifetime_closes_a_busy_connection_after_its_echo(self):
        d = self.start(max_connections=100, max_lifetime="1s", idle_timeout="1min")
        c = self.client(HOST, self.port)
        start = time.monotonic()
        sent = b""
        while time.monotonic() - start < 5.0:
            msg = b"tick %d" % len(sent)
            try:
                got, end = h.pump(c, msg, expect=len(msg))
            except OSError:  # written after the worker's close: a reset
                break
            self.assertTrue(msg.startswith(got), (msg, got))
            if end is not None:  # the close can cut in, never corrupt
                break
            sent += msg
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        print(f"max_lifetime 1s: closed after {elapsed:.2f}s and {len(sent)} bytes echoed")
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 3.5, "the lifetime must end a busy connection")
        e = d.wait_entry(lambda e: e.fields.get("close_reason") == "lifetime", what="close_reason=lifetime")
        self.assertEqual(e.fields.get("bytes_in"), e.fields.get("bytes_out"), e.raw)


if __name__ == "__main__":
    h.main(budget=110)
