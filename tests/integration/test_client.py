#!/usr/bin/env python3
"""echo-client against a small echo server run inside this test, on loopback.

The server is ours, not echod, so that the client's behaviour is checked on
its own, including against servers that misbehave on purpose.
"""

import errno
import os
import pty
import select
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT = os.environ.get("ECHO_CLIENT", os.path.join(ROOT, "build", "echo-client"))
TIMEOUT = 30  # bound on every single wait of a test


def handle_echo(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def handle_half(conn):
    """Reads the whole input, echoes only its first half, then closes."""
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.sendall(data[: len(data) // 2])


def recv_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def handle_close_after(n):
    def handler(conn):
        recv_exactly(conn, n)

    return handler


def handle_reset_after(n):
    def handler(conn):
        recv_exactly(conn, n)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return handler


def handle_banner(conn):
    """Greets first, as a server that is not a pure echo might."""
    conn.sendall(b"hi\n")
    handle_echo(conn)


class HeldReply:
    """Holds the first reply back until released and notes whether more input
    arrived meanwhile."""

    def __init__(self):
        self.got_first = threading.Event()
        self.release = threading.Event()
        self.seen = []

    def __call__(self, conn):
        first = conn.recv(65536)
        self.got_first.set()
        self.release.wait(TIMEOUT)
        self.seen.append("sent ahead" if select.select([conn], [], [], 0)[0] else "waited")
        conn.sendall(first)
        handle_echo(conn)


class Server:
    """Accepts on an ephemeral loopback port; each connection runs handler in
    a thread. Everything a handler received is kept in self.received."""

    def __init__(self, handler=handle_echo, family=socket.AF_INET, host="127.0.0.1"):
        self.handler = handler
        self.received = []
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(TIMEOUT)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        recorder = Recorder(conn, self.received)
        try:
            self.handler(recorder)
        except OSError:
            pass  # the client went away; its side of the story is what is tested
        finally:
            conn.close()

    def close(self):
        self.stopping = True
        self.thread.join(TIMEOUT)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Recorder:
    """A connection that remembers every byte it received."""

    def __init__(self, conn, sink):
        self.conn = conn
        self.index = len(sink)
        self.sink = sink
        sink.append(b"")

    def recv(self, n):
        data = self.conn.recv(n)
        self.sink[self.index] += data
        return data

    def __getattr__(self, name):
        return getattr(self.conn, name)


def run(args, data=b"", **kw):
    return subprocess.run(
        [CLIENT] + list(args), input=data, capture_output=True, timeout=TIMEOUT, **kw
    )


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class FilterMode(unittest.TestCase):
    def echo_through(self, data, host="127.0.0.1", family=socket.AF_INET):
        with Server(family=family, host=host) as srv:
            res = run([host, str(srv.port)], data)
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertEqual(res.stderr, b"")
            self.assertEqual(res.stdout, data)
            self.assertEqual(srv.received, [data])

    def test_one_byte(self):
        self.echo_through(b"x")

    def test_empty_input(self):
        self.echo_through(b"")

    def test_large_binary(self):
        self.echo_through(os.urandom(5 * 1024 * 1024))

    def test_no_trailing_newline(self):
        self.echo_through(b"first line\nno newline at the end")

    def test_empty_lines(self):
        self.echo_through(b"\n\n\n")

    def test_long_lines(self):
        self.echo_through(b"a" * 129 + b"\n" + b"b" * 1000 + b"\n" + b"c" * 70000 + b"\n")

    @unittest.skipUnless(has_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6(self):
        self.echo_through(b"over IPv6\n", host="::1", family=socket.AF_INET6)

    @unittest.skipUnless(has_ipv6_loopback(), "no IPv6 loopback")
    def test_bracketed_ipv6_and_host_port(self):
        """[::1] PORT and [::1]:PORT, as ssh, curl and socat take them, and
        HOST:PORT in one word."""
        for host, family in (("::1", socket.AF_INET6), ("127.0.0.1", socket.AF_INET)):
            with Server(host=host, family=family) as srv:
                forms = [[f"{host}:{srv.port}"]] if family == socket.AF_INET else [
                    [f"[{host}]", str(srv.port)], [f"[{host}]:{srv.port}"]]
                for args in forms:
                    with self.subTest(args=args):
                        res = run(args, b"bracketed\n")
                        self.assertEqual((res.returncode, res.stdout), (0, b"bracketed\n"), res.stderr)

    def test_hostname(self):
        with Server() as srv:
            res = run(["localhost", str(srv.port)], b"by name\n")
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertEqual(res.stdout, b"by name\n")

    def test_long_options(self):
        with Server() as srv:
            res = run(["--timeout=2.5", "127.0.0.1", str(srv.port)], b"opt\n")
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertEqual(res.stdout, b"opt\n")

    def test_next_address_after_failure(self):
        """localhost with both families: only the second one listens."""
        infos = socket.getaddrinfo("localhost", None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        families = list(dict.fromkeys(info[0] for info in infos))
        if len(families) < 2:
            self.skipTest("localhost has a single address family here")
        second = [info[4][0] for info in infos if info[0] == families[1]][0]
        with Server(family=families[1], host=second) as srv:
            res = run(["localhost", str(srv.port)], b"second\n")
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertEqual(res.stdout, b"second\n")
            self.assertIn(b"Connection refused", res.stderr)


    def test_no_busy_wait_on_blocked_stdout(self):
        """The server is done but stdout is full: the client must sleep."""
        # More than a pipe and the client's buffer hold, less than what the
        # socket buffers take, so the server can finish and close.
        data = os.urandom(256 * 1024)
        with Server() as srv:
            proc = subprocess.Popen(
                [CLIENT, "127.0.0.1", str(srv.port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                proc.stdin.write(data)
                proc.stdin.close()
                time.sleep(1.5)  # stdout unread all along
                out = proc.stdout.read()
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            finally:
                proc.kill()
                proc.wait()
                proc.stdout.close()
                proc.stderr.close()
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(out, data)
        self.assertLess(usage.ru_utime + usage.ru_stime, 0.5)


def run_with_hosts(hosts, args, data=b""):
    """Runs echo-client in a mount namespace of its own where /etc/hosts is
    `hosts`: a name with the addresses a test needs, in its order. Returns
    (getent ahosts NAME's addresses, the CompletedProcess); skips where
    that cannot be done."""
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root for a mount namespace")
    name = args[0]
    with tempfile.NamedTemporaryFile("w", suffix=".hosts") as f:
        f.write(hosts)
        f.flush()
        script = 'mount --bind "$1" /etc/hosts && getent ahosts "$2" >&2 && echo --- >&2 && shift 2 && exec "$@"'
        res = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", f.name, name, CLIENT, *args],
                             input=data, capture_output=True, timeout=TIMEOUT)
    err = res.stderr.decode()
    if "---\n" not in err:
        raise unittest.SkipTest(f"no mount namespace with its own /etc/hosts here: {err.strip()}")
    order, _, rest = err.partition("---\n")
    addrs = []
    for line in order.splitlines():
        if line.split()[0] not in addrs:
            addrs.append(line.split()[0])
    res.stderr = rest.encode()
    return addrs, res


class ConnectErrors(unittest.TestCase):
    def test_a_failed_address_before_one_that_answers_is_not_an_error(self):
        if not has_ipv6_loopback():
            self.skipTest("no ::1")
        with Server() as srv, socket.socket(socket.AF_INET6) as v6:
            v6.bind(("::1", srv.port))  # bound, not listening: ::1 refuses
            addrs, res = run_with_hosts("::1 echod-two\n127.0.0.1 echod-two\n", ["echod-two", str(srv.port)], b"both\n")
        self.assertEqual(addrs, ["::1", "127.0.0.1"], "the resolver must try ::1 first for this test")
        self.assertEqual((res.returncode, res.stdout, res.stderr), (0, b"both\n", b""))

    def test_every_address_failing_is_reported_each_then_counted(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            hosts = "".join(f"127.0.0.{i} echod-many\n" for i in range(2, 12))
            addrs, res = run_with_hosts(hosts, ["echod-many", str(port)])
        self.assertEqual(len(addrs), 10, addrs)
        lines = res.stderr.decode().splitlines()
        want = [f"echo-client: connect to echod-many ({a}:{port}): Connection refused" for a in addrs[:8]]
        self.assertEqual(lines, want + ["echo-client: and 2 more addresses of echod-many failed"])
        self.assertEqual(res.returncode, 69)

    def test_refused(self):
        # Bound but not listening: the port stays ours and refuses connections.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            res = run(["127.0.0.1", str(port)], b"x\n")
        self.assertEqual(res.returncode, 69)
        self.assertEqual(
            res.stderr,
            f"echo-client: connect to 127.0.0.1:{port}: Connection refused\n".encode(),
        )
        self.assertEqual(res.stdout, b"")

    def test_peers_are_written_as_echod_writes_them(self):
        # host:port, [v6]:port, and a name with the address it tried.
        with socket.socket(socket.AF_INET6) as s6, socket.socket() as s4:
            try:
                s6.bind(("::1", 0))
            except OSError:
                self.skipTest("no IPv6 loopback")
            port = s6.getsockname()[1]
            try:
                s4.bind(("127.0.0.1", port))
            except OSError:
                self.skipTest("the port is taken on IPv4")
            res = run(["[::1]", str(port)], b"x\n")
            self.assertEqual(res.stderr, f"echo-client: connect to [::1]:{port}: Connection refused\n".encode())
            res = run(["localhost", str(port)], b"x\n")
        lines = res.stderr.decode().splitlines()
        self.assertTrue(lines, res)
        for line in lines:
            self.assertRegex(line, rf"^echo-client: connect to localhost \((127\.0\.0\.1|\[::1\]):{port}\): Connection refused$")

    def test_service_name(self):
        try:
            socket.create_connection(("127.0.0.1", 7), timeout=2).close()
            self.skipTest("something listens on 127.0.0.1:7")
        except ConnectionRefusedError:
            pass
        res = run(["127.0.0.1", "echo"])
        self.assertEqual(res.returncode, 69)
        self.assertIn(b"connect to 127.0.0.1:7: Connection refused", res.stderr)

    def test_name_not_found(self):
        res = run(["nosuchhost.invalid", "9"])
        # 75 only if the resolver itself is unreachable from this machine.
        self.assertIn(res.returncode, (69, 75))
        self.assertIn(b"echo-client: resolve nosuchhost.invalid:9: ", res.stderr)

    def test_timeout(self):
        # backlog 0 and a full accept queue: the kernel drops further SYNs,
        # so the client's connect can only end by its own timeout.
        with socket.socket() as lst:
            lst.bind(("127.0.0.1", 0))
            lst.listen(0)
            port = lst.getsockname()[1]
            fillers = []
            try:
                for _ in range(16):
                    c = socket.socket()
                    fillers.append(c)
                    c.setblocking(False)
                    c.connect_ex(("127.0.0.1", port))
                    if not select.select([], [c], [], 0.5)[1]:
                        break
                else:
                    self.skipTest("could not fill the accept queue")
                start = time.monotonic()
                res = run(["-t", "1", "127.0.0.1", str(port)])
                elapsed = time.monotonic() - start
            finally:
                for c in fillers:
                    c.close()
        self.assertEqual(res.returncode, 75, res.stderr)
        self.assertEqual(
            res.stderr,
            f"echo-client: connect to 127.0.0.1:{port}: Connection timed out\n".encode(),
        )
        self.assertGreater(elapsed, 0.9)
        self.assertLess(elapsed, 5)


class StreamErrors(unittest.TestCase):
    def client_with_open_stdin(self, srv, first):
        """Sends first and keeps stdin open, so any end is the server's doing."""
        proc = subprocess.Popen(
            [CLIENT, "127.0.0.1", str(srv.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            proc.stdin.write(first)
            proc.stdin.flush()
            out = proc.stdout.read()
            err = proc.stderr.read()
            return proc.wait(TIMEOUT), out, err
        finally:
            proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()

    def test_server_closes_while_input_remains(self):
        with Server(handle_close_after(2)) as srv:
            rc, out, err = self.client_with_open_stdin(srv, b"x\n")
        self.assertEqual(rc, 74)
        self.assertEqual(
            err,
            f"echo-client: 127.0.0.1:{srv.port} closed the connection "
            "before the input ended\n".encode(),
        )

    def test_reset_mid_stream(self):
        with Server(handle_reset_after(2)) as srv:
            rc, out, err = self.client_with_open_stdin(srv, b"x\n")
        self.assertEqual(rc, 74)
        self.assertEqual(
            err,
            f"echo-client: receive from 127.0.0.1:{srv.port}: "
            "Connection reset by peer\n".encode(),
        )

    def test_large_input_server_closes_early(self):
        with Server(handle_close_after(1000)) as srv:
            res = run(["127.0.0.1", str(srv.port)], os.urandom(4 * 1024 * 1024))
        self.assertEqual(res.returncode, 74)
        self.assertIn(f"127.0.0.1:{srv.port}".encode(), res.stderr)
        self.assertEqual(res.stderr.count(b"\n"), 1)

    def test_short_echo(self):
        data = os.urandom(1000)
        with Server(handle_half) as srv:
            res = run(["127.0.0.1", str(srv.port)], data)
        self.assertEqual(res.returncode, 74)
        self.assertEqual(res.stdout, data[:500])
        self.assertEqual(
            res.stderr,
            f"echo-client: 127.0.0.1:{srv.port} closed the connection "
            "after echoing 500 of 1000 bytes\n".encode(),
        )

    def test_stdout_write_error(self):
        with Server() as srv, open("/dev/full", "wb") as full:
            res = subprocess.run(
                [CLIENT, "127.0.0.1", str(srv.port)],
                input=b"x\n",
                stdout=full,
                stderr=subprocess.PIPE,
                timeout=TIMEOUT,
            )
        self.assertEqual(res.returncode, 74)
        self.assertEqual(
            res.stderr, b"echo-client: write to standard output: No space left on device\n"
        )

    def test_stdout_closed_reader(self):
        r, w = os.pipe()
        os.close(r)
        with Server() as srv:
            res = subprocess.run(
                [CLIENT, "127.0.0.1", str(srv.port)],
                input=b"x\n",
                stdout=w,
                stderr=subprocess.PIPE,
                timeout=TIMEOUT,
            )
        os.close(w)
        self.assertEqual(res.returncode, 74)
        self.assertEqual(res.stderr, b"echo-client: write to standard output: Broken pipe\n")


class Usage(unittest.TestCase):
    def test_port_messages(self):
        """A name the services database lacks is told apart from a bad number."""
        cases = [
            (["127.0.0.1", "no-such-service"], "unknown service 'no-such-service': not in /etc/services; give its port number"),
            (["127.0.0.1:no-such-service"], "unknown service 'no-such-service': not in /etc/services; give its port number"),
            (["127.0.0.1", "65536"], "invalid port '65536': a number 1-65535 or a service name"),
            (["127.0.0.1", "12x"], "invalid port '12x': a number 1-65535 or a service name"),
        ]
        for args, msg in cases:
            with self.subTest(args=args):
                res = run(args)
                self.assertEqual(res.returncode, 64, res.stderr)
                self.assertEqual(res.stderr.decode().splitlines()[0], f"echo-client: {msg}")

    def test_bad_usage(self):
        with Server() as srv:
            port = str(srv.port)
            cases = [
                [],
                ["127.0.0.1"],
                ["127.0.0.1", port, "extra"],
                ["127.0.0.1", "0"],
                ["127.0.0.1", "65536"],
                ["127.0.0.1", "12x"],
                ["127.0.0.1", "-1"],
                ["127.0.0.1", "no-such-service"],
                ["-x", "127.0.0.1", port],
                ["--bogus", "127.0.0.1", port],
                ["-t", "0", "127.0.0.1", port],
                ["-t", "abc", "127.0.0.1", port],
                ["-t", "nan", "127.0.0.1", port],
                ["-t", "86401", "127.0.0.1", port],
                ["-t"],
                ["::1:" + port],
                ["[::1]"],
                ["[::1]x", port],
                ["[::1]:" + port, port],
                ["[]:" + port],
                ["[::1:" + port],
                ["127.0.0.1:"],
                [":" + port],
                ["127.0.0.1:0"],
            ]
            for args in cases:
                with self.subTest(args=args):
                    res = run(args)
                    self.assertEqual(res.returncode, 64, res.stderr)
                    self.assertIn(b"Try 'echo-client --help'", res.stderr)
                    self.assertEqual(res.stdout, b"")
            self.assertEqual(srv.received, [], "a usage error must not connect")

    def test_help(self):
        for opt in ("-h", "--help"):
            res = run([opt])
            self.assertEqual(res.returncode, 0)
            self.assertTrue(res.stdout.startswith(b"Usage: echo-client"))
            for code in (b"64", b"69", b"74", b"75"):
                self.assertIn(b"\n  " + code + b" ", res.stdout)

    def test_help_write_error(self):
        with open("/dev/full", "wb") as full:
            res = subprocess.run([CLIENT, "--help"], stdout=full, timeout=TIMEOUT)
        self.assertEqual(res.returncode, 74)

    def test_version(self):
        for opt in ("-V", "--version"):
            res = run([opt])
            self.assertEqual(res.returncode, 0)
            words = res.stdout.split()
            self.assertEqual(len(words), 2, res.stdout)
            self.assertEqual(words[0], b"echo-client")


class Interactive(unittest.TestCase):
    def start(self, srv):
        master, slave = pty.openpty()
        # Without the terminal's own echo, what appears is the server's.
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        proc = subprocess.Popen(
            [CLIENT, "127.0.0.1", str(srv.port)],
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
        )
        os.close(slave)
        return master, proc

    def finish(self, master, proc):
        try:
            os.write(master, b"\x04")
            rc = proc.wait(TIMEOUT)
            return rc, proc.stderr.read()
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()
            os.close(master)

    def read_until(self, fd, want):
        got = b""
        deadline = time.monotonic() + TIMEOUT
        while not got.endswith(want):
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, f"timed out waiting for {want!r}, got {got!r}")
            if select.select([fd], [], [], left)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError as e:  # EIO: the client closed the terminal
                    if e.errno != errno.EIO:
                        raise
                    chunk = b""
                self.assertNotEqual(chunk, b"", f"terminal closed, got {got!r}")
                got += chunk
        return got

    def test_terminal_session(self):
        long_line = b"L" * 300
        with Server() as srv:
            master, proc = self.start(srv)
            try:
                os.write(master, b"hello\n")
                self.assertEqual(self.read_until(master, b"hello\r\n"), b"hello\r\n")
                os.write(master, b"\n")
                self.assertEqual(self.read_until(master, b"\r\n"), b"\r\n")
                os.write(master, long_line + b"\n")
                self.assertEqual(self.read_until(master, b"L\r\n"), long_line + b"\r\n")
            finally:
                rc, err = self.finish(master, proc)
        self.assertEqual(rc, 0, err)
        self.assertEqual(srv.received, [b"hello\n\n" + long_line + b"\n"])
        self.assertIn(b"Ctrl-D", err)

    def test_next_line_waits_for_echo(self):
        held = HeldReply()
        with Server(held) as srv:
            master, proc = self.start(srv)
            try:
                os.write(master, b"one\n")
                self.assertTrue(held.got_first.wait(TIMEOUT))
                os.write(master, b"two\n")
                time.sleep(0.5)  # time enough for a client that does not wait to send
                held.release.set()
                self.assertEqual(self.read_until(master, b"two\r\n"), b"one\r\ntwo\r\n")
            finally:
                held.release.set()
                rc, err = self.finish(master, proc)
        self.assertEqual(rc, 0, err)
        self.assertEqual(held.seen, ["waited"])
        self.assertEqual(srv.received, [b"one\ntwo\n"])

    def test_server_sending_more_does_not_stall(self):
        with Server(handle_banner) as srv:
            master, proc = self.start(srv)
            try:
                self.assertEqual(self.read_until(master, b"hi\r\n"), b"hi\r\n")
                os.write(master, b"x\n")
                self.assertEqual(self.read_until(master, b"x\r\n"), b"x\r\n")
            finally:
                rc, err = self.finish(master, proc)
        self.assertEqual(rc, 0, err)
        self.assertEqual(srv.received, [b"x\n"])


if __name__ == "__main__":
    if not os.access(CLIENT, os.X_OK):
        raise SystemExit(f"echo-client not found at {CLIENT} (set ECHO_CLIENT)")
    unittest.main(verbosity=2)
