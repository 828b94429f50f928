"""Every byte comes back exactly: sizes, write patterns, concurrency, IPv6,
half-close, and the per-connection log entry."""

import os
import random
import socket
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import harness as h


class EchoTest(h.TestCase):
    host = "127.0.0.1"

    def setUp(self):
        super().setUp()
        self.port = h.free_port(self.host)
        conf = h.config_text(
            listen=[h.fmt_addr(self.host, self.port)],
            limits={"max_connections": 200, "max_connections_per_source": 0},
        )
        self.d = self.daemon(conf)

    def roundtrip(self, data, timeout=60.0):
        got = h.echo_roundtrip(self.host, self.port, data, timeout=timeout)
        self.assertEqual(len(got), len(data), f"expected {len(data)} bytes echoed, observed {len(got)}")
        self.assertTrue(got == data, f"echoed {len(data)} bytes differ from those sent (first difference at {first_diff(got, data)})")

    def test_one_byte(self):
        self.roundtrip(os.urandom(1))

    def test_one_mebibyte_binary(self):
        self.roundtrip(os.urandom(1 << 20))

    def test_sixty_four_mebibytes_binary(self):
        self.roundtrip(os.urandom(64 << 20), timeout=120.0)

    def test_every_byte_value(self):
        # NUL, CR, LF, 0xff...: nothing is a delimiter or gets translated
        self.roundtrip(bytes(range(256)) * 64)

    def test_payload_without_newline_comes_back_without_closing(self):
        # Not line-buffered: the bytes come back while the connection stays open.
        s = self.client(self.host, self.port)
        got = h.echo(s, b"no newline here")
        self.assertEqual(got, b"no newline here")

    def test_many_small_writes_in_order(self):
        rng = random.Random(862)
        chunks = [os.urandom(rng.randint(1, 50)) for _ in range(2000)]
        expected = b"".join(chunks)
        s = self.client(self.host, self.port)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = bytearray()
        errors = []

        def reader():
            try:
                while len(got) < len(expected):
                    b = s.recv(65536)
                    if not b:
                        break
                    got.extend(b)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        for c in chunks:
            s.sendall(c)
        t.join(timeout=h.TIMEOUT)
        self.assertFalse(t.is_alive(), f"expected {len(expected)} bytes back, observed {len(got)} after {h.TIMEOUT}s")
        self.assertEqual(errors, [])
        self.assertTrue(bytes(got) == expected, f"bytes of 2000 small writes differ at {first_diff(bytes(got), expected)}")

    def test_hundred_concurrent_clients(self):
        payloads = [os.urandom(32768 + i) for i in range(100)]
        barrier = threading.Barrier(100, timeout=h.TIMEOUT)

        def one(data):
            with h.connect(self.host, self.port) as s:
                barrier.wait()  # all connected at the same time
                got, end = h.pump(s, data, shut_wr=True, until_eof=True, timeout=60.0)
            return got == data, end, len(got)

        with ThreadPoolExecutor(max_workers=100) as ex:
            results = list(ex.map(one, payloads))
        bad = [(i, r) for i, r in enumerate(results) if not r[0] or r[1] != "eof"]
        self.assertEqual(bad, [], "clients whose own bytes did not come back exactly, then EOF: (index, (ok, end, received))")

    def test_half_close_returns_everything_then_eof(self):
        data = os.urandom(4 << 20)
        with h.connect(self.host, self.port) as s:
            got, end = h.pump(s, data, shut_wr=True, until_eof=True, timeout=60.0)
        self.assertEqual(end, "eof", "after a half-close the server must finish with EOF, not a reset")
        self.assertEqual(len(got), len(data), "bytes owed at half-close must all come back")
        self.assertTrue(got == data)

    def test_half_close_with_nothing_sent_gives_eof(self):
        with h.connect(self.host, self.port) as s:
            got, end = h.pump(s, b"", shut_wr=True, until_eof=True, timeout=5.0)
        self.assertEqual((got, end), (b"", "eof"))

    def test_close_entry_has_exact_counts_and_reason_eof(self):
        data = os.urandom(123457)
        mark = self.d.log_mark()
        with h.connect(self.host, self.port) as s:
            cport = s.getsockname()[1]
            self.d.wait_children(1)
            worker = self.d.worker_for(s)
            time.sleep(0.2)  # the connection lasts at least this long
            got, end = h.pump(s, data, shut_wr=True, until_eof=True, timeout=30.0)
        self.assertEqual(got, data)
        e = self.d.wait_closed_entry(cport, since=mark)
        f = e.fields
        self.assertEqual(e.level, "info", f"close entry should be at level info: {e.raw}")
        self.assertEqual(f.get("remote_addr"), self.host, e.raw)
        self.assertEqual(f.get("local_port"), str(self.port), e.raw)
        self.assertEqual(f.get("bytes_in"), str(len(data)), e.raw)
        self.assertEqual(f.get("bytes_out"), str(len(data)), e.raw)
        self.assertEqual(f.get("close_reason"), "eof", e.raw)
        self.assertEqual(f.get("worker_pid"), str(worker), f"worker_pid should be the worker that served us ({worker}): {e.raw}")
        # Written by the long-lived master from the worker's report: journald
        # can only attribute an entry to the unit while its sender is alive.
        self.assertEqual(str(e.pid), str(self.d.pid), f"the close entry should come from the master: {e.raw}")
        self.assertRegex(f.get("duration_usec", ""), r"^\d+$", e.raw)
        self.assertGreaterEqual(int(f["duration_usec"]), 200000, f"the connection lasted at least 0.2s: {e.raw}")
        self.assertLess(int(f["duration_usec"]), 60_000_000, e.raw)


@unittest.skipUnless(h.ipv6_available(), "the kernel has no IPv6")
class EchoV6Test(EchoTest):
    """The same behaviours over [::1]."""

    host = "::1"


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


if __name__ == "__main__":
    h.main(budget=280)
