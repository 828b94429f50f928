"""TCP urgent data (MSG_OOB): every byte a client sends comes back once, in
its place, the urgent byte included (echod sets SO_OOBINLINE; see echod(8),
URGENT DATA), on the splice path and on the small-message path, and a worker
that met an urgent mark does not burn CPU. The close entry counts every
byte."""

import os
import socket
import threading
import time

import rel
from rel import HOST, h, n

KIB = 1024


class Sender(threading.Thread):
    """Sends pieces in order, each (bytes, urgent), from a thread, so that the
    test can read (or wait) while a large piece is still going out."""

    def __init__(self, sock, pieces, shut_wr=False):
        super().__init__(daemon=True)
        self.sock, self.pieces, self.shut_wr = sock, pieces, shut_wr
        self.error = None

    def run(self):
        try:
            for data, urgent in self.pieces:
                if urgent:
                    self.sock.send(data, socket.MSG_OOB)
                else:
                    self.sock.sendall(data)
            if self.shut_wr:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = e

    def finish(self, tc):
        self.join(timeout=h.TIMEOUT)
        tc.assertFalse(self.is_alive(), "the sender is still blocked")
        tc.assertIsNone(self.error)


def read_exactly(sock, count, timeout=h.TIMEOUT):
    """Reads count bytes (fewer if the connection ends or time runs out)."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(min(count - len(got), 1 << 16))
        except socket.timeout:
            break
        if not chunk:
            break
        got += chunk
    return bytes(got)


def read_to_eof(sock, timeout=h.TIMEOUT):
    return read_exactly(sock, 1 << 30, timeout)


class UrgentTest(rel.TestCase):
    def start(self):
        return super().start(limits={"idle_timeout": "1min"})

    def expect_entry(self, port, mark, total):
        e = self.d.wait_closed_entry(port, since=mark)
        self.assertEqual((e.fields["close_reason"], e.fields["bytes_in"], e.fields["bytes_out"]),
                         ("eof", str(total), str(total)), e.raw)
        return e

    def test_urgent_byte_in_a_bulk_stream(self):
        """100 KiB (splice from the first full read on), an urgent byte,
        100 KiB: the worker waits 3 s with everything sent; its CPU time
        over that stays far below what a spin takes, then all 204,801
        bytes come back in order."""
        self.start()
        mark = self.d.log_mark()
        s = self.client(HOST, self.port)
        port = s.getsockname()[1]
        self.assertEqual(h.echo(s, b"hello"), b"hello")
        worker = self.d.worker_for(s)
        a, b = os.urandom(100 * KIB), os.urandom(100 * KIB)
        cpu0 = rel.cpu_seconds(worker)
        sender = Sender(s, [(a, False), (b"!", True), (b, False)])
        sender.start()
        time.sleep(3.0)
        cpu = rel.cpu_seconds(worker) - cpu0
        self.assertLess(cpu, 1.0, f"the worker used {cpu:.2f}s of CPU in the 3 s after an urgent byte")
        sender.finish(self)
        want = a + b"!" + b
        got = read_exactly(s, len(want))
        self.assertEqual(len(got), len(want), "every byte, the urgent one included, comes back")
        self.assertTrue(got == want, "the echo differs from what was sent")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), b"")
        self.expect_entry(port, mark, 5 + len(want))
        print(f"urgent: 100 KiB + urgent byte + 100 KiB: {n(len(want))} bytes back in order;"
              f" worker CPU {cpu:.2f}s over the 3 s wait")

    def test_urgent_bytes_between_small_messages(self):
        """Small messages (the read/write path) with urgent bytes between
        them, after them, and several in a row: each round comes back
        exactly, urgent bytes in their places."""
        self.start()
        mark = self.d.log_mark()
        s = self.client(HOST, self.port)
        port = s.getsockname()[1]
        total = 0
        for i in range(40):
            urg = bytes([0x41 + i % 26])
            pieces = [(b"msg %d " % i, False), (urg, True), (b"after\n", False)]
            if i % 4 == 3:
                pieces += [(b"#", True), (b"$", True), (b"%", True)]
            want = b"".join(p for p, _ in pieces)
            for data, urgent in pieces:
                s.send(data, socket.MSG_OOB if urgent else 0)
            got = read_exactly(s, len(want))
            self.assertEqual(got, want, f"round {i}")
            total += len(want)
        worker = self.d.worker_for(s)
        cpu0 = rel.cpu_seconds(worker)
        time.sleep(1.5)
        cpu = rel.cpu_seconds(worker) - cpu0
        self.assertLess(cpu, 0.5, f"the worker used {cpu:.2f}s of CPU in 1.5 s")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), b"")
        self.expect_entry(port, mark, total)
        print(f"urgent: 40 rounds of small messages with 70 urgent bytes: {n(total)} bytes back exactly;"
              f" worker CPU {cpu:.2f}s over 1.5 s")

    def test_urgent_bytes_across_both_paths(self):
        """Bulk, small and bulk again on one connection, with urgent bytes
        at each change and as the stream's very last byte, sent at once and
        half-closed: all of it back, then EOF."""
        self.start()
        mark = self.d.log_mark()
        s = self.client(HOST, self.port)
        port = s.getsockname()[1]
        pieces = [
            (os.urandom(8 * KIB), False), (b"\x01", True), (b"tiny", False), (b"\x02", True),
            (os.urandom(1 * KIB), False), (b"\x03", True), (os.urandom(300 * KIB), False),
            (b"\xff", True),
        ]
        want = b"".join(p for p, _ in pieces)
        sender = Sender(s, pieces, shut_wr=True)
        sender.start()
        got = read_to_eof(s, timeout=20)
        sender.finish(self)
        self.assertEqual(len(got), len(want))
        self.assertTrue(got == want, "the echo differs from what was sent")
        self.expect_entry(port, mark, len(want))
        self.d.wait_children(0)
        print(f"urgent: bulk, small and bulk with 5 urgent bytes, sent at once: {n(len(want))} bytes back, then EOF")


if __name__ == "__main__":
    h.main(budget=120)
