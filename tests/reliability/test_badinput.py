"""Bad network input: random and hostile bytes, connections that send
nothing, resets at every stage, a client that never reads, and a 256 MiB
stream written and read at once (urgent data has test_urgent.py). Every
byte comes back exactly; the worker logs what happened; the master does not
notice."""

import os
import random
import selectors
import socket
import time

import rel
from rel import HOST, h, n

# Inputs that mean something to some other protocol or to a terminal: an
# echo server must treat them as bytes like any other.
HOSTILE = [
    bytes(range(256)) * 16,
    b"\x00" * 65536,
    b"\r\n" * 30000,
    b"\xff\xf4\xff\xfd\x06" * 1000,  # telnet IAC interrupt process, do timing mark
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(1000),  # a TLS ClientHello's start
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"\x04\x03\x1a\x1c\x7f\x1b[6n\x1b]0;title\x07",  # EOF, ^C, ^Z, ^\, DEL, terminal queries
    b"\xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80\x80\xfe\xff",  # invalid UTF-8
    b"%s%n%x" * 500 + b"\x00" + b"A" * 70000,
]


def stream_verify(sock, total, timeout):
    """Writes total bytes of a random pattern while reading the echo at the
    same time, checking each byte as it arrives; half-closes after the last
    one and reads to EOF. Returns (bytes verified, end, seconds)."""
    period = (4 << 20) + 4093  # odd, so no write or read lines up with it
    pattern = os.urandom(period)
    doubled = memoryview(pattern + pattern)
    buf = bytearray(1 << 20)
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent = got = 0
    end = None
    t0 = time.monotonic()
    try:
        while end is None:
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"stream timed out after {timeout:.0f}s: sent {n(sent)}, verified {n(got)}")
            for _, ev in sel.select(1.0):
                if ev & selectors.EVENT_WRITE and sent < total:
                    o = sent % period
                    try:
                        sent += sock.send(doubled[o : o + min(1 << 20, total - sent)])
                    except BlockingIOError:
                        pass
                    if sent == total:
                        sock.shutdown(socket.SHUT_WR)
                        sel.modify(sock, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ:
                    try:
                        k = sock.recv_into(buf)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        end = "reset"
                        break
                    if k == 0:
                        end = "eof"
                        break
                    if got + k > sent:
                        raise AssertionError(f"{got + k - sent} bytes came back beyond the {n(sent)} sent")
                    o = got % period
                    if doubled[o : o + k] != buf[:k]:
                        first = next(i for i in range(k) if doubled[o + i] != buf[i])
                        raise AssertionError(f"byte {n(got + first)} of the stream differs from what was sent")
                    got += k
    finally:
        sel.close()
    return got, end, time.monotonic() - t0


class BadInputTest(rel.TestCase):
    def start(self, idle_timeout="1min"):
        return super().start(limits={"max_connections": 500, "idle_timeout": idle_timeout})

    def closed(self, ports, mark):
        h.wait_until(lambda: all(p in rel.closed_entries(self.d, mark) for p in ports), h.TIMEOUT,
                     "a close entry per connection")
        return rel.closed_entries(self.d, mark)

    def test_random_and_hostile_bytes_echoed_exactly(self):
        self.start()
        rng = random.Random(0xec0)
        payloads = list(HOSTILE)
        for _ in range(150):
            # Sizes spread from one byte to 2 MiB, most of them small.
            payloads.append(os.urandom(int(2 ** rng.uniform(0, 21))))
        mark = self.d.log_mark()
        jobs = [(self.client(HOST, self.port), p) for p in payloads]
        ports = [s.getsockname()[1] for s, _ in jobs]
        # Writes cut anywhere, from single bytes up, as a network would.
        results = rel.pump_many(jobs, timeout=120, chunk_sizes=lambda: int(2 ** rng.uniform(0, 16)))
        for i, ((s, data), (got, end)) in enumerate(zip(jobs, results)):
            self.assertEqual((len(got), end), (len(data), "eof"), f"payload {i}")
            self.assertTrue(got == data, f"payload {i} ({len(data)} bytes) must come back exactly")
        closed = self.closed(ports, mark)
        for (s, data), p in zip(jobs, ports):
            e = closed[p]
            self.assertEqual((e.fields["close_reason"], e.fields["bytes_in"], e.fields["bytes_out"]),
                             ("eof", str(len(data)), str(len(data))), e.raw)
        total = sum(len(p) for p in payloads)
        print(f"badinput: {len(payloads)} random and hostile payloads ({n(total)} bytes, written in random pieces)"
              f" all echoed exactly, each then EOF; 0 mismatched")
        self.assertTrue(self.d.alive())

    def test_connections_that_send_nothing(self):
        self.start()
        mark = self.d.log_mark()
        fin, rst, shut = [], [], []
        for _ in range(50):
            s = h.connect(HOST, self.port)
            fin.append(s.getsockname()[1])
            s.close()
            s = h.connect(HOST, self.port)
            rst.append(s.getsockname()[1])
            rel.rst_close(s)
            s = self.client(HOST, self.port)
            shut.append(s)
        results = rel.pump_many([(s, b"") for s in shut], timeout=30)
        self.assertEqual(results, [(b"", "eof")] * 50, "a client that half-closes at once gets EOF at once")
        closed = self.closed(fin + rst + [s.getsockname()[1] for s in shut], mark)
        for p in fin + [s.getsockname()[1] for s in shut]:
            e = closed[p]
            self.assertEqual((e.fields["close_reason"], e.fields["bytes_in"], e.fields["bytes_out"]), ("eof", "0", "0"), e.raw)
        reasons = {}
        for p in rst:
            e = closed[p]
            self.assertEqual((e.fields["bytes_in"], e.fields["bytes_out"]), ("0", "0"), e.raw)
            reasons[e.fields["close_reason"]] = reasons.get(e.fields["close_reason"], 0) + 1
        # Reset before the worker looked: it may read the reset or find the
        # connection already ended.
        self.assertLessEqual(set(reasons), {"reset", "eof"}, reasons)
        self.d.wait_children(0)
        h.assert_served(self, HOST, self.port)
        print(f"badinput: 150 connections with 0 bytes (50 closed, 50 half-closed, 50 reset): each logged with"
              f" bytes_in=0 (reset ones: {reasons}); master fine")

    def test_resets_at_every_stage(self):
        self.start()
        mark = self.d.log_mark()
        ports = {}
        # Right after connecting, after a complete echo, while bytes are in
        # flight both ways, and while the client is reading a large echo.
        for stage in ("connected", "echoed", "in flight", "reading"):
            ports[stage] = []
            for _ in range(10):
                s = h.connect(HOST, self.port)
                ports[stage].append(s.getsockname()[1])
                if stage == "echoed":
                    self.assertEqual(h.echo(s, b"ping"), b"ping")
                elif stage == "in flight":
                    s.setblocking(False)
                    try:
                        for _ in range(64):
                            s.send(rel.NOISE)
                    except BlockingIOError:
                        pass
                elif stage == "reading":
                    s.sendall(rel.NOISE[: 512 << 10])
                    got = s.recv(4096)
                    self.assertTrue(rel.NOISE.startswith(got))
                rel.rst_close(s)
        self.d.wait_children(0, timeout=20)
        closed = self.closed([p for v in ports.values() for p in v], mark)
        summary = []
        for stage, ps in ports.items():
            reasons = sorted({closed[p].fields["close_reason"] for p in ps})
            summary.append(f"{stage}: {reasons}")
            for p in ps:
                e = closed[p]
                self.assertLessEqual(int(e.fields["bytes_out"]), int(e.fields["bytes_in"]), e.raw)
                if stage != "connected":
                    self.assertEqual(e.fields["close_reason"], "reset", e.raw)
        failed = self.d.find_entries(lambda e: "signal" in e.fields, since=mark)
        self.assertEqual(failed, [], "a reset must not kill a worker")
        self.assertTrue(self.d.alive())
        h.assert_served(self, HOST, self.port)
        print(f"badinput: 40 connections reset at 4 stages, close reasons {'; '.join(summary)}; 0 workers failed")

    def test_client_that_never_reads_is_closed_when_idle(self):
        self.start(idle_timeout="1s")
        mark = self.d.log_mark()
        s = self.client(HOST, self.port)
        s.setblocking(False)
        sent = 0
        t_end = time.monotonic() + 3.0
        try:
            while time.monotonic() < t_end:
                try:
                    sent += s.send(rel.NOISE)
                except BlockingIOError:
                    time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        e = self.d.wait_closed_entry(s.getsockname()[1], since=mark, timeout=10)
        self.assertEqual(e.fields["close_reason"], "idle", e.raw)
        self.d.wait_children(0)
        print(f"badinput: a client that sent {n(sent)} bytes and never read: closed as idle after"
              f" {int(e.fields['duration_usec']) / 1e6:.1f}s, {n(int(e.fields['bytes_in']))} bytes read and"
              f" {n(int(e.fields['bytes_out']))} written back by then")

    def test_256_mib_stream_written_and_read_at_once(self):
        self.start()
        total = 256 << 20
        mark = self.d.log_mark()
        s = self.client(HOST, self.port)
        port = s.getsockname()[1]
        got, end, secs = stream_verify(s, total, timeout=240)
        self.assertEqual((got, end), (total, "eof"))
        e = self.d.wait_closed_entry(port, since=mark)
        self.assertEqual((e.fields["close_reason"], e.fields["bytes_in"], e.fields["bytes_out"]),
                         ("eof", str(total), str(total)), e.raw)
        print(f"badinput: 256 MiB written and read at once: {n(got)} bytes verified in {secs:.1f}s"
              f" ({got / secs / 1e6:.0f} MB/s), then EOF")


if __name__ == "__main__":
    h.main(budget=200)
