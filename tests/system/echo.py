"""TCP clients for the system test, talking to echod inside the container.

Sockets are created in the container's network namespace (Container.netns)
and used from here like any other: the test drives the protocol byte by
byte, with a timeout on every operation.
"""

import socket
import time

TIMEOUT = 5.0


class Conn:
    """One client connection, kept open as long as a check needs it."""

    def __init__(self, box, port, host="127.0.0.1", source=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with box.netns():
            self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        try:
            if source:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.local_port = self.sock.getsockname()[1]

    def echo(self, data):
        """Sends data and returns what comes back before len(data) bytes,
        EOF or the timeout, whichever is first."""
        self.sock.sendall(data)
        return self.read(len(data))

    def read(self, n):
        got = b""
        deadline = time.monotonic() + TIMEOUT
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(got))
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
        self.sock.settimeout(TIMEOUT)
        return got

    def wait_eof(self, timeout):
        """Seconds until the server ends the connection (EOF or reset), or
        None if it does not within timeout. Data received meanwhile is
        discarded."""
        start = time.monotonic()
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(4096):
                if time.monotonic() - start > timeout:
                    return None
        except socket.timeout:
            return None
        except ConnectionResetError:
            pass
        finally:
            self.sock.settimeout(TIMEOUT)
        return time.monotonic() - start

    def close(self):
        self.sock.close()


def roundtrip(box, port, data, host="127.0.0.1", source=None):
    """A whole session: connect, send, half-close, read to EOF. Returns what
    came back and the client's port."""
    c = Conn(box, port, host, source)
    try:
        c.sock.sendall(data)
        c.sock.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got, c.local_port
    finally:
        c.close()


def describe(fn, *args, **kw):
    """Runs a client function and turns a socket error into a string, for
    checks that compare what they observed."""
    try:
        return fn(*args, **kw)
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def refused(box, port, host="127.0.0.1"):
    """True when nothing listens there (the connection is refused)."""
    try:
        Conn(box, port, host).close()
    except ConnectionRefusedError:
        return True
    return False
