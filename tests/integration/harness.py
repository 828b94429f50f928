"""Shared machinery for the integration tests: the real echod on loopback.

Each test starts its own daemon in a temporary directory with a config it
writes, knows the daemon is up from READY=1 on a NOTIFY_SOCKET it owns, reads
the daemon's stderr log line by line, and drives clients from outside. Every
wait is bounded; whatever happens, no process started here outlives the test
(echod runs in its own process group, which teardown kills as a whole, and a
watchdog does the same if a whole file overruns its budget).
"""

import ctypes
import faulthandler
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ECHOD = os.path.abspath(os.environ.get("ECHOD") or REPO_ROOT / "build" / "echod")

# Generous enough for a loaded 2-core CI machine, short enough that a hang
# fails fast.
TIMEOUT = 10.0

# Variables that would make echod believe it runs under systemd.
_MANAGER_ENV = (
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
)

# Workers orphaned by a dying echod are re-parented to this process rather
# than to PID 1 (which, in a container, may never reap them), so teardown can
# collect them and leave nothing behind, not even a zombie.
PR_SET_CHILD_SUBREAPER = 36
try:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
except (OSError, AttributeError):
    pass

_spawned = set()  # pids that subprocess owns and will wait for itself


def reap_orphans(timeout=3.0):
    """Collects processes re-parented to us (killed workers); waits up to
    timeout for those still dying."""
    deadline = time.monotonic() + timeout
    me = os.getpid()
    while True:
        left = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) in _spawned:
                continue
            st = proc_stat(int(d))
            if st and st[1] == me:
                try:
                    if os.waitpid(int(d), os.WNOHANG)[0] == 0:
                        left.append(int(d))
                except ChildProcessError:
                    pass
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


# ---------------------------------------------------------------------------
# Waiting


def wait_until(fn, timeout=TIMEOUT, what="condition", interval=0.02):
    """Calls fn until it returns something truthy and returns that; raises
    AssertionError naming `what` and the last value after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Addresses and ports


def free_port(host="127.0.0.1"):
    """A port nobody listens on right now (bind :0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fmt_addr(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def listening_inode(port, host=None):
    """Inode of the socket listening on port (and host, if given), or None.
    Lets a test tell whether a listener survived a reload as the same socket."""
    for ent in tcp_table():
        if ent["state"] == "0A" and ent["lport"] == port and (host is None or ent["laddr"] == host):
            return ent["inode"]
    return None


class Result:
    """What a run of echod to completion gave: exit status, output, time."""

    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed

    def __repr__(self):
        return f"exit {self.rc}, stdout {self.out!r}, stderr {self.err!r}"


def run_echod(*args, timeout=10.0):
    """Runs echod to completion, without the service manager's environment;
    kills it (and anything it started) if it has not finished within
    timeout, which then fails."""
    env = {k: v for k, v in os.environ.items() if k not in _MANAGER_ENV}
    start = time.monotonic()
    p = subprocess.Popen(
        [ECHOD, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"echod {' '.join(map(str, args))} still running after {timeout}s; stderr: {err.decode(errors='replace')!r}")
    elapsed = time.monotonic() - start
    return Result(p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), elapsed)


def hold_listener(pid, port):
    """A copy, in this process, of the socket that process pid listens on
    port (pidfd_getfd(2)): stands for a worker forked just before a listener
    is closed, which still holds it until it gets to close its copies."""
    inode = listening_inode(port)
    fd = next(
        int(n) for n in os.listdir(f"/proc/{pid}/fd") if os.readlink(f"/proc/{pid}/fd/{n}") == f"socket:[{inode}]"
    )
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        got = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd, the same on every architecture
        if got < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd of fd {fd} of {pid}")
    finally:
        os.close(pidfd)
    return socket.socket(fileno=got)


def _hex_ip(h):
    raw = bytes.fromhex(h)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6 prints four host-order 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def tcp_table():
    """Every TCP socket of the host from /proc/net/tcp{,6}."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            p = line.split()
            la, lp = p[1].split(":")
            ra, rp = p[2].split(":")
            out.append(
                {
                    "laddr": _hex_ip(la),
                    "lport": int(lp, 16),
                    "raddr": _hex_ip(ra),
                    "rport": int(rp, 16),
                    "state": p[3],
                    "inode": int(p[9]),
                }
            )
    return out


# ---------------------------------------------------------------------------
# Processes


def children(pid):
    """Direct children of pid (worker processes of an echod master)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return sorted(int(x) for x in f.read().split())
    except FileNotFoundError:
        pass
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[1] == pid:
                kids.append(int(d))
    return sorted(kids)


def proc_stat(pid):
    """(state, ppid) of pid, or None if it no longer exists."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[1])


def group_members(pgid):
    """Pids whose process group is pgid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getpgid(int(d)) == pgid:
                    out.append(int(d))
            except ProcessLookupError:
                pass
    return out


def is_dead(pid):
    """Gone, or a zombie waiting for whoever inherited it."""
    st = proc_stat(pid)
    return st is None or st[0] in ("Z", "X")


def socket_inodes(pid):
    """Inodes of the sockets pid holds open."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(int(m.group(1)))
    return inodes


# ---------------------------------------------------------------------------
# Logs (target = stderr): TIMESTAMP echod[PID] LEVEL: MESSAGE key=value ...

_LINE_RE = re.compile(r"^(?P<ts>\S+) (?P<ident>[\w.-]+)\[(?P<pid>\d+)\] (?P<level>\w+): (?P<rest>.*)$")
_FIELD_RE = re.compile(r'(?:^|(?<=\s))([a-z][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')


class LogEntry:
    def __init__(self, raw, pid, level, message, fields):
        self.raw = raw
        self.pid = pid
        self.level = level
        self.message = message
        self.fields = fields

    def __repr__(self):
        return f"LogEntry({self.raw!r})"


def _unquote(v):
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def parse_log_line(line):
    """A LogEntry, or None for a line that is not in the log format."""
    m = _LINE_RE.match(line)
    if not m:
        return None
    rest = m.group("rest")
    fields = {}
    first = None
    for fm in _FIELD_RE.finditer(rest):
        if first is None:
            first = fm.start()
        fields[fm.group(1)] = _unquote(fm.group(2))
    message = rest if first is None else rest[:first].rstrip()
    return LogEntry(line, int(m.group("pid")), m.group("level").lower(), message, fields)


# ---------------------------------------------------------------------------
# sd_notify receiver


class NotifyReader:
    """Binds a datagram socket and records every message echod sends to it,
    in order."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode("utf-8", "replace"))

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def count(self):
        with self._lock:
            return len(self.messages)

    @staticmethod
    def assignments(msg):
        """The KEY=VALUE lines of one message as a dict."""
        out = {}
        for line in msg.split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
        return out

    def find(self, key, value=None, after=0):
        """Index of the first message at or after `after` that assigns key
        (to value, if given), or None."""
        for i, msg in enumerate(self.snapshot()[after:], start=after):
            a = self.assignments(msg)
            if key in a and (value is None or a[key] == value):
                return i
        return None

    def wait(self, key, value=None, after=0, timeout=TIMEOUT):
        """Waits for such a message; returns its index."""
        what = f"sd_notify {key}={value if value is not None else '*'} (message #{after} on)"
        try:
            return wait_until(lambda: _plus_one(self.find(key, value, after)), timeout, what) - 1
        except AssertionError as e:
            raise AssertionError(f"{e}; messages from #{after}: {self.snapshot()[after:]!r}") from None

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def _plus_one(i):
    return None if i is None else i + 1


# ---------------------------------------------------------------------------
# Configuration


def config_text(listen=(), server=None, limits=None, access=None, log=None):
    """An INI config. Every test logs to stderr; values that are lists become
    repeated keys. `listen` holds "HOST:PORT" strings."""
    sections = []
    srv = {"listen": list(listen)}
    srv.update(server or {})
    lg = {"target": "stderr", "level": "info", "connections": "yes"}
    lg.update(log or {})
    for name, values in (("server", srv), ("limits", limits), ("access", access), ("log", lg)):
        if not values:
            continue
        lines = [f"[{name}]"]
        for k, v in values.items():
            for item in v if isinstance(v, (list, tuple)) else [v]:
                lines.append(f"{k} = {item}")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def line_of(text, needle):
    """1-based number of the first line of text containing needle."""
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return n
    raise ValueError(f"{needle!r} not in config")


# ---------------------------------------------------------------------------
# The daemon

class DaemonGone(AssertionError):
    """echod exited while a test expected it running."""


_live = set()  # Daemons that may still have processes, for the watchdog
_live_lock = threading.Lock()


class Daemon:
    """One echod (optionally under a wrapper such as systemd-socket-activate)
    in its own process group, with its log in a file and its own
    NOTIFY_SOCKET."""

    def __init__(self, tmpdir, conf, *, args=(), wrapper=(), notify=True, env=None, binary=None):
        self.dir = Path(tmpdir)
        self.binary = binary or ECHOD
        self.conf_path = self.dir / "echod.conf"
        self.log_path = self.dir / "echod.log"
        self.out_path = self.dir / "echod.out"
        self.write_config(conf)
        self.args = list(args)
        self.wrapper = list(wrapper)
        self.want_notify = notify
        self.extra_env = env or {}
        self.proc = None
        self.notify = None
        self.final_log = None
        self._killed = False
        self._stopped = False

    # config ------------------------------------------------------------
    def write_config(self, text):
        self.conf_text = text
        self.conf_path.write_text(text)

    def write_dropin(self, name, text):
        d = Path(str(self.conf_path) + ".d")
        d.mkdir(exist_ok=True)
        (d / name).write_text(text)
        return d / name

    # lifecycle ---------------------------------------------------------
    def start(self, wait_ready=True, timeout=TIMEOUT):
        if not os.access(self.binary, os.X_OK):
            raise AssertionError(f"echod binary not found or not executable: {self.binary} (set ECHOD)")
        env = {k: v for k, v in os.environ.items() if k not in _MANAGER_ENV}
        if self.want_notify:
            self.notify = NotifyReader(str(self.dir / "notify.sock"))
            env["NOTIFY_SOCKET"] = self.notify.path
        env.update(self.extra_env)
        argv = self.wrapper + [self.binary, "-c", str(self.conf_path)] + self.args
        self._log_f = open(self.log_path, "wb")
        self._out_f = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out_f,
            stderr=self._log_f,
            env=env,
            start_new_session=True,
        )
        _spawned.add(self.proc.pid)
        with _live_lock:
            _live.add(self)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=TIMEOUT, after=0):
        def ready():
            if self.notify.find("READY", "1", after) is not None:
                return True
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"echod exited with {self.proc.returncode} before READY=1; log:\n{self.log_text()}"
                )
            return False

        try:
            wait_until(ready, timeout, "READY=1")
        except AssertionError as e:
            raise AssertionError(f"{e}\nlog:\n{self.log_text()}") from None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=TIMEOUT):
        """Exit status; fails if echod is still running after timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"echod (pid {self.pid}) still running {timeout:.1f}s later; log:\n{self.log_text()}"
            ) from None

    def reload(self, timeout=TIMEOUT):
        """SIGHUP, then waits for RELOADING=1 and the READY=1 after it.
        Returns the index of the RELOADING=1 message."""
        before = self.notify.count()
        self.signal(signal.SIGHUP)
        i = self.notify.wait("RELOADING", "1", after=before, timeout=timeout)
        self.notify.wait("READY", "1", after=i + 1, timeout=timeout)
        return i

    def kill_all(self):
        """Kills echod and every process of its group, collects echod."""
        if self.proc is None or self._killed:
            return
        self._killed = True
        if self.proc.poll() is None:
            # echod unreaped: its pid, and so the group id, is still ours
            pids = children(self.pid)
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            pids = group_members(self.pid)  # orphaned workers, if any
        for p in pids:  # also a worker that left the group
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        reap_orphans()
        with _live_lock:
            _live.discard(self)

    def stop(self):
        """Teardown: kill everything, keep the log text, release resources."""
        if self._stopped:
            return
        self._stopped = True
        self.kill_all()
        if self.proc is not None:
            self.final_log = self.log_text()
            self._log_f.close()
            self._out_f.close()
        if self.notify:
            self.notify.close()

    # workers ------------------------------------------------------------
    def children(self):
        """Live workers; fails if echod itself is gone (its orphans are no
        longer its children, which must not pass for a clean reap)."""
        if self.proc.poll() is not None:
            raise DaemonGone(f"echod exited with {self.proc.returncode}; log:\n{self.log_text()}")
        return children(self.pid)

    def wait_children(self, n, timeout=TIMEOUT):
        """Waits until echod has exactly n children; returns them."""
        got = []

        def check():
            got[:] = self.children()
            return len(got) == n

        try:
            wait_until(check, timeout, f"{n} worker(s)")
        except DaemonGone:
            raise
        except AssertionError:
            raise AssertionError(f"expected {n} worker children of echod, observed {len(got)}: {got}") from None
        return list(got)

    def worker_for(self, client):
        """Pid of the worker serving this client socket (matched through the
        server side's socket inode), or None."""
        lport = client.getsockname()[1]
        rport = client.getpeername()[1]
        inodes = {e["inode"] for e in tcp_table() if e["lport"] == rport and e["rport"] == lport and e["inode"]}
        for c in self.children():
            if socket_inodes(c) & inodes:
                return c
        return None

    # log ----------------------------------------------------------------
    def log_text(self):
        if self.final_log is not None:
            return self.final_log
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """Position in the log; pass as `since` to look only at what follows."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _text_since(self, since):
        return self.log_path.read_bytes()[since:].decode("utf-8", "replace")

    def entries(self, since=0):
        out = []
        for line in self._text_since(since).splitlines():
            e = parse_log_line(line)
            if e is not None:
                out.append(e)
        return out

    def find_entries(self, pred, since=0):
        return [e for e in self.entries(since) if pred(e)]

    def wait_entry(self, pred, timeout=TIMEOUT, since=0, what="log entry"):
        """Waits for a parsed log entry satisfying pred; returns it."""
        try:
            return wait_until(lambda: next(iter(self.find_entries(pred, since)), None), timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nlog since mark:\n{self._text_since(since)}") from None

    def wait_log(self, regex, timeout=TIMEOUT, since=0):
        """Waits for a raw log line matching regex; returns the match."""
        rx = re.compile(regex)

        def look():
            for line in self._text_since(since).splitlines():
                m = rx.search(line)
                if m:
                    return m
            return None

        try:
            return wait_until(look, timeout, f"a log line matching {regex!r}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nlog since mark:\n{self._text_since(since)}") from None

    def wait_closed_entry(self, client_port, timeout=TIMEOUT, since=0):
        """The worker's 'closed' entry for the connection from client_port."""
        return self.wait_entry(
            lambda e: "closed" in e.message and e.fields.get("remote_port") == str(client_port),
            timeout,
            since,
            f"a connection-closed entry with remote_port={client_port}",
        )


# ---------------------------------------------------------------------------
# Clients


def connect(host, port, source=None, timeout=TIMEOUT):
    """A connected TCP socket, bound to source (an address) if given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def pump(sock, data=b"", *, expect=None, shut_wr=False, until_eof=False, timeout=TIMEOUT):
    """Writes data and reads at the same time (so that neither side can stall
    on full buffers). Stops when `expect` bytes came back, or at EOF/reset if
    until_eof. With shut_wr, half-closes once everything is written.
    Returns (bytes received, end) with end "eof", "reset" or None."""
    if expect is None and not until_eof:
        expect = len(data)
    view = memoryview(data)
    sent = 0
    got = bytearray()
    end = None
    shut_done = False
    send_failed = False
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + timeout
    try:
        sel.register(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if data else 0))
        if not data and shut_wr:
            sock.shutdown(socket.SHUT_WR)
            shut_done = True
        while True:
            if not until_eof and len(got) >= expect:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"pump timed out after {timeout:.1f}s: sent {sent}/{len(data)} bytes, "
                    f"received {len(got)}" + ("" if until_eof else f"/{expect}")
                )
            for key, ev in sel.select(min(left, 0.5)):
                if ev & selectors.EVENT_WRITE and sent < len(data):
                    try:
                        sent += sock.send(view[sent : sent + (1 << 20)])
                    except (BlockingIOError, InterruptedError):
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        # What came back before the reset is still to read:
                        # stop sending, and let the reads say when it ends.
                        send_failed = True
                    if sent == len(data) or send_failed:
                        sel.modify(sock, selectors.EVENT_READ)
                        if shut_wr and not shut_done and not send_failed:
                            sock.shutdown(socket.SHUT_WR)
                            shut_done = True
                if ev & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(1 << 20)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        end = "reset"
                        chunk = None
                    if chunk:
                        got += chunk
                    else:
                        end = end or ("reset" if send_failed else "eof")
            if end:
                break
    finally:
        sel.close()
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)
    return bytes(got), end


def echo_roundtrip(host, port, data, *, source=None, timeout=60.0):
    """Connects, sends data while reading, half-closes, reads to EOF; returns
    what came back (fails on a reset)."""
    with connect(host, port, source) as s:
        got, end = pump(s, data, shut_wr=True, until_eof=True, timeout=timeout)
    if end != "eof":
        raise AssertionError(f"expected EOF after {len(data)} bytes, observed {end} after {len(got)}")
    return got


def echo(sock, data, timeout=TIMEOUT):
    """On an open connection: sends data, returns exactly len(data) bytes
    read back (fails if the connection ends first)."""
    got, end = pump(sock, data, timeout=timeout)
    if end is not None and len(got) < len(data):
        raise AssertionError(f"connection ended ({end}) after {len(got)} of {len(data)} echoed bytes")
    return got


def probe(host, port, source=None, timeout=3.0):
    """How a new connection fares: ("refused", b"") when nobody listens,
    else sends a few bytes and reports ("echoed", data) if they come back, or
    ("eof"/"reset", data) if the server closed it, or ("timeout", data)."""
    try:
        s = connect(host, port, source, timeout=timeout)
    except ConnectionRefusedError:
        return "refused", b""
    except ConnectionResetError:
        return "reset", b""
    except TimeoutError:  # the SYN went unanswered (a listener retiring)
        return "timeout", b""
    msg = b"probe\n"
    with s:
        try:
            got, end = pump(s, msg, timeout=timeout)
        except AssertionError:
            return "timeout", b""
    if got == msg and end is None:
        return "echoed", got
    return end or "timeout", got


def assert_served(tc, host, port, source=None):
    state, got = probe(host, port, source)
    tc.assertEqual(
        state, "echoed", f"expected a connection to {fmt_addr(host, port)} (from {source or 'any'}) to be echoed, observed {state} with {got!r}"
    )


def assert_rejected(tc, host, port, source=None):
    """A limit or access refusal: accepted then closed at once, nothing echoed."""
    state, got = probe(host, port, source)
    tc.assertIn(
        state,
        ("eof", "reset"),
        f"expected a connection to {fmt_addr(host, port)} (from {source or 'any'}) to be accepted and closed at once, observed {state}",
    )
    tc.assertEqual(got, b"", f"a refused connection must echo nothing, observed {got!r}")


def assert_not_listening(tc, host, port, timeout=3.0):
    """Nobody listens: connect is refused (polled, bounded)."""
    last = []

    def refused():
        state, _ = probe(host, port, timeout=1.0)
        last[:] = [state]
        return state == "refused"

    try:
        wait_until(refused, timeout, f"{fmt_addr(host, port)} to refuse connections", interval=0.05)
    except AssertionError:
        tc.fail(f"expected nothing listening on {fmt_addr(host, port)}, observed {last}")


# ---------------------------------------------------------------------------
# Test cases


class TestCase(unittest.TestCase):
    """Gives each test a temporary directory, daemons and clients that are
    all torn down whatever happens, and prints the daemon logs of a failed
    test."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="echod-it-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.daemons = []

    def daemon(self, conf, start=True, **kw):
        sub = os.path.join(self.tmp, f"d{len(self.daemons)}")
        os.mkdir(sub)
        d = Daemon(sub, conf, **kw)
        self.daemons.append(d)
        self.addCleanup(d.stop)
        if start:
            d.start()
        return d

    def client(self, host, port, source=None):
        s = connect(host, port, source)
        self.addCleanup(s.close)
        return s

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for d in getattr(self, "daemons", []):
                sys.stderr.write(f"---- echod log of {self.id()} ----\n{d.log_text()}---- end ----\n")
        return result


def _kill_live():
    with _live_lock:
        live = list(_live)
    for d in live:
        d.kill_all()


def main(budget):
    """Runs the unittest main of the calling module; a watchdog kills every
    daemon and fails the file if it runs longer than budget seconds."""

    def watchdog():
        time.sleep(budget)
        sys.stderr.write(f"\nwatchdog: test file exceeded {budget}s, killing daemons\n")
        faulthandler.dump_traceback(all_threads=True)
        _kill_live()
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    _kill_live()
    sys.exit(0 if prog.result.wasSuccessful() else 1)
