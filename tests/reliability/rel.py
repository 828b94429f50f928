"""What the reliability tests share: the integration harness (daemon, log,
probes), a load of verified echo connections that stays open in a thread
(LiveLoad), loadgen runs in the foreground or back to back in the background
(Loadgen, BackgroundLoad), and a few helpers for many sockets at once.

Every figure a test asserts on is counted here from what the clients saw, not
from what echod says of itself; echod's log is checked against it.
"""

import grp
import json
import os
import pwd
import random
import resource
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import harness as h  # noqa: E402

LOADGEN = os.path.abspath(os.environ.get("LOADGEN") or h.REPO_ROOT / "build" / "tests" / "bench" / "loadgen")
HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")

# Random bytes that clients send slices of: every byte value, no structure
# that an echo bug could happen to preserve.
NOISE = os.urandom(1 << 20)


def n(x):
    """A count with thousands separators, as the figures print them."""
    return f"{x:,}"


def cpu_seconds(pid):
    """User plus system CPU time of one process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def open_fds(pid):
    """Descriptors pid holds: the fewest of five looks 20 ms apart, since the
    socket of a status datagram to the notify socket is open for an instant
    now and then."""
    looks = []
    for _ in range(5):
        looks.append(len(os.listdir(f"/proc/{pid}/fd")))
        time.sleep(0.02)
    return min(looks)


def fds_but_connections(pid):
    """Descriptors pid holds, leaving out TCP connections: the master holds
    each new one for the moment of a fork, which under load is most of the
    time. A connection is told apart by what it is not (a listening TCP
    socket, or a UNIX one): under a rate load it may well be over, and
    gone from the socket table, before that table is read, so looking it up
    there counts it as something else now and then. The fewest of five
    looks 20 ms apart, since a status datagram's socket is open for an
    instant now and then (see open_fds)."""
    counts = []
    for _ in range(5):
        targets = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except FileNotFoundError:
                pass
        kept = {f"socket:[{e['inode']}]" for e in h.tcp_table() if e["state"] == "0A"}
        kept |= {f"socket:[{i}]" for i in unix_inodes()}
        counts.append(sum(not t.startswith("socket:") or t in kept for t in targets))
        time.sleep(0.02)
    return min(counts)


def unix_inodes():
    """Inodes of every UNIX socket of the host, from /proc/net/unix."""
    with open("/proc/net/unix") as f:
        return {int(line.split()[6]) for line in f.read().splitlines()[1:] if len(line.split()) > 6}


def lowest_free_fd(pid):
    """The descriptor number the kernel will give pid next, once it holds no
    connection any more: a descriptor limit at this number leaves it none.
    The lowest of five looks, as in open_fds."""
    h.wait_until(lambda: open_fds(pid) == fds_but_connections(pid), h.TIMEOUT, "the master to hand over its connections")
    looks = []
    for _ in range(5):
        used = {int(x) for x in os.listdir(f"/proc/{pid}/fd")}
        looks.append(next(i for i in range(len(used) + 1) if i not in used))
        time.sleep(0.02)
    return min(looks)


def set_nofile(pid, soft):
    """Sets the soft descriptor limit of another process, leaving the hard one
    so that it can be raised again."""
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={soft}:"], check=True)


def rst_close(sock):
    """Closes with SO_LINGER 0: the peer gets a reset, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def zombies(pids):
    return [p for p in pids if (h.proc_stat(p) or ("gone",))[0] == "Z"]


def workers_of(d, socks):
    """{socket: worker pid} for client sockets of daemon d, read from /proc
    once for all of them (a table per socket would be slow under load)."""
    ports = {}
    for s in socks:
        ports[(s.getpeername()[1], s.getsockname()[1])] = s
    inode_sock = {}
    for e in h.tcp_table():
        s = ports.get((e["lport"], e["rport"]))
        if s is not None and e["inode"]:
            inode_sock[e["inode"]] = s
    out = {}
    for pid in d.children():
        for ino in h.socket_inodes(pid):
            if ino in inode_sock:
                out[inode_sock[ino]] = pid
    return out


def closed_entries(d, since=0, addr=HOST):
    """{remote_port: entry} of the connection-closed entries in d's log for
    clients at addr (other sources reuse the same port numbers)."""
    out = {}
    for e in d.entries(since):
        if "close_reason" in e.fields and e.fields.get("remote_addr") == addr:
            out[int(e.fields["remote_port"])] = e
    return out


def raise_nofile(need):
    """Raises this process's descriptor limit (and so its children's) to at
    least need; returns False if the machine will not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return True
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), max(hard, need)))
    except (ValueError, OSError):
        return False
    return True


# ---------------------------------------------------------------------------
# Live connections


class LiveConn:
    def __init__(self, sock):
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.pending = bytearray()  # sent, not yet echoed
        self.sent = 0
        self.verified = 0
        self.end = None  # "eof", "reset" or "mismatch" once it is over
        self.lost = 0  # bytes sent that never came back, at the end
        self.mismatch = None  # offset of the first wrong byte
        self.shut = False
        self.send_failed = False  # the server reset: read what is left, send no more


class LiveLoad:
    """count connections that stay open and echo all the time, every byte
    checked against what was sent, driven by one thread. Each connection sends
    random slices of random length, at most WINDOW bytes ahead of its echo and
    paced to `rate` bytes per second, so that the load is steady and leaves
    CPU to the daemon. A connection that ends is recorded with how (EOF or
    reset) and how many bytes it was still owed."""

    WINDOW = 64 << 10
    CHUNK = 16 << 10

    def __init__(self, host, port, count, *, rate=256 << 10):
        self.conns = []
        try:
            for _ in range(count):
                self.conns.append(LiveConn(h.connect(host, port)))
        except BaseException:
            for c in self.conns:
                c.sock.close()
            raise
        self.rate = rate
        self.rng = random.Random(os.getpid())
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.stopping = threading.Event()
        self.error = None
        self.thread = None

    def start(self):
        for c in self.conns:
            c.sock.setblocking(False)
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    # the loop -----------------------------------------------------------
    def _want_write(self, c, now):
        return (
            c.end is None
            and not c.send_failed
            and not self.closing.is_set()
            and len(c.pending) < self.WINDOW
            and c.sent < self.rate * (now - self.t0) + self.CHUNK
        )

    def _finish(self, c, how):
        c.end = how
        c.lost = len(c.pending)

    def _send(self, c):
        off = self.rng.randrange(len(NOISE) - self.CHUNK)
        size = self.rng.randint(1, self.CHUNK)
        data = NOISE[off : off + size]
        try:
            k = c.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return
        except (BrokenPipeError, ConnectionResetError):
            # The echo that arrived before the reset is still queued here:
            # the connection ends when reading says so, not now.
            c.send_failed = True
            return
        c.pending += data[:k]
        c.sent += k

    def _recv(self, c):
        try:
            chunk = c.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except (BrokenPipeError, ConnectionResetError):
            self._finish(c, "reset")
            return
        if not chunk:
            self._finish(c, "reset" if c.send_failed else "eof")
            return
        k = len(chunk)
        if k > len(c.pending) or c.pending[:k] != chunk:
            first = next((i for i in range(min(k, len(c.pending))) if c.pending[i] != chunk[i]), len(c.pending))
            c.mismatch = c.verified + first
            self._finish(c, "mismatch")
            return
        del c.pending[:k]
        c.verified += k

    def _run(self):
        sel = selectors.DefaultSelector()
        mask = {}
        try:
            for c in self.conns:
                sel.register(c.sock, selectors.EVENT_READ, c)
                mask[c] = selectors.EVENT_READ
            while not self.stopping.is_set():
                now = time.monotonic()
                with self.lock:
                    closing = self.closing.is_set()
                    live = 0
                    for c in self.conns:
                        if c.end is not None:
                            if c in mask:
                                sel.unregister(c.sock)
                                del mask[c]
                            continue
                        live += 1
                        if closing and not c.shut:
                            # What was written before the FIN still comes
                            # back: the server owes it all, then EOF.
                            try:
                                c.sock.shutdown(socket.SHUT_WR)
                            except OSError:
                                pass
                            c.shut = True
                        m = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._want_write(c, now) else 0)
                        if mask[c] != m:
                            sel.modify(c.sock, m, c)
                            mask[c] = m
                    if closing and live == 0:
                        return
                events = sel.select(0.01)
                with self.lock:
                    for key, ev in events:
                        c = key.data
                        if c.end is None and ev & selectors.EVENT_WRITE:
                            self._send(c)
                        if c.end is None and ev & selectors.EVENT_READ:
                            self._recv(c)
        except BaseException as e:  # reported by the test, not lost in a thread
            self.error = e
        finally:
            sel.close()

    # control ------------------------------------------------------------
    def check(self):
        if self.error is not None:
            raise AssertionError(f"live load thread failed: {self.error!r}")

    def stats(self):
        """A snapshot of the figures."""
        self.check()
        with self.lock:
            return {
                "live": sum(c.end is None for c in self.conns),
                "ended": [c for c in self.conns if c.end is not None],
                "verified": sum(c.verified for c in self.conns),
                "sent": sum(c.sent for c in self.conns),
                "mismatched": sum(c.mismatch is not None for c in self.conns),
            }

    def wait_progress(self, timeout=h.TIMEOUT):
        """Waits until every live connection has had bytes echoed since now:
        proof that all of them are being served."""
        with self.lock:
            base = {c: c.verified for c in self.conns if c.end is None}

        def moved():
            self.check()
            with self.lock:
                return all(c.verified > base[c] or c.end is not None for c in base)

        h.wait_until(moved, timeout, "every live connection to echo more bytes")

    def finish(self, timeout=30.0):
        """Stops sending, half-closes every live connection and reads it to
        its end; returns the stats. A clean end is EOF with nothing owed."""
        self.closing.set()
        self.thread.join(timeout)
        self.stopping.set()
        self.thread.join(2.0)
        if self.thread.is_alive():
            raise AssertionError("live load did not end")
        st = self.stats()
        if st["live"]:
            raise AssertionError(f"{st['live']} live connection(s) got no EOF within {timeout:.0f}s of their half-close")
        return st

    def stop(self):
        """Teardown: ends the thread and closes every socket."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5.0)
        for c in self.conns:
            c.sock.close()


# ---------------------------------------------------------------------------
# loadgen


class Loadgen:
    """One loadgen run (--json) in the background; result() waits for it and
    returns its report as a dict with its exit status added as "rc"."""

    def __init__(self, *args, port):
        if not os.access(LOADGEN, os.X_OK):
            raise AssertionError(f"loadgen not found or not executable: {LOADGEN} (set LOADGEN)")
        self.argv = [LOADGEN, "--json", "--host", HOST, "--port", str(port), *map(str, args)]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"loadgen ran more than {timeout:.0f}s: {' '.join(self.argv)}") from None
        rc = self.proc.returncode
        lines = out.strip().splitlines()
        if rc not in (0, 1) or not lines:
            raise AssertionError(f"loadgen failed to run (exit {rc}): {' '.join(self.argv)}\n{err}")
        r = json.loads(lines[-1])
        r["rc"] = rc
        r["stderr"] = err
        return r

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def loadgen(*args, port, timeout):
    return Loadgen(*args, port=port).result(timeout)


def errors(r, kind=None):
    return r["errors"]["total" if kind is None else kind]


class BackgroundLoad:
    """loadgen runs of `chunk` seconds back to back in a thread until stop():
    a load that lasts as long as the fault injection, however long that is.
    The totals add up every run."""

    def __init__(self, port, *args, chunk=3):
        self.port = port
        self.args = ["--duration", chunk, *args]
        self.chunk = chunk
        self.runs = []
        self.error = None
        self._stop = threading.Event()
        self._current = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        try:
            while not self._stop.is_set():
                self._current = Loadgen(*self.args, port=self.port)
                self.runs.append(self._current.result(self.chunk + 60))
        except BaseException as e:
            self.error = e

    def stop(self):
        self._stop.set()
        self.thread.join(self.chunk + 70)
        if self.thread.is_alive():
            self.kill()
            raise AssertionError("background loadgen did not stop")
        if self.error is not None:
            raise AssertionError(f"background loadgen failed: {self.error}")
        return self.totals()

    def kill(self):
        self._stop.set()
        if self._current is not None:
            self._current.kill()

    def totals(self):
        t = {"runs": len(self.runs), "completed": 0, "bytes": 0, "errors": {}, "failed_runs": 0, "stderr": ""}
        for r in self.runs:
            t["completed"] += r["completed"]
            t["bytes"] += r["bytes"]
            for k, v in r["errors"].items():
                t["errors"][k] = t["errors"].get(k, 0) + v
            if r["rc"] != 0:
                t["failed_runs"] += 1
                t["stderr"] += r["stderr"]
        t["errors"].setdefault("total", 0)
        t["errors"].setdefault("mismatch", 0)
        return t


# ---------------------------------------------------------------------------
# Many sockets at once


def pump_many(jobs, *, timeout=60.0, chunk_sizes=None):
    """For each (socket, data), all at once: writes data while reading,
    half-closes, and reads to the end. Writes are cut into pieces of sizes
    drawn from chunk_sizes (a callable) if given. Returns, per job, (bytes
    received, end) with end "eof" or "reset"."""
    sel = selectors.DefaultSelector()
    state = []
    for s, data in jobs:
        s.setblocking(False)
        st = {"sock": s, "data": memoryview(data), "sent": 0, "got": bytearray(), "end": None}
        state.append(st)
        if data:
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
        else:
            s.shutdown(socket.SHUT_WR)
            sel.register(s, selectors.EVENT_READ, st)
    left = len(state)
    deadline = time.monotonic() + timeout
    try:
        while left:
            if time.monotonic() > deadline:
                stuck = [(i, st["sent"], len(st["got"])) for i, st in enumerate(state) if st["end"] is None]
                raise AssertionError(f"pump_many timed out after {timeout:.0f}s; (job, sent, received) unfinished: {stuck[:10]}")
            for key, ev in sel.select(0.2):
                st = key.data
                s = st["sock"]
                if ev & selectors.EVENT_WRITE:
                    size = chunk_sizes() if chunk_sizes else 1 << 18
                    try:
                        st["sent"] += s.send(st["data"][st["sent"] : st["sent"] + size])
                    except (BlockingIOError, InterruptedError):
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        # What came back before the reset is still to read.
                        st["send_failed"] = True
                        sel.modify(s, selectors.EVENT_READ, st)
                    if st["sent"] == len(st["data"]) and not st.get("send_failed"):
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ, st)
                if ev & selectors.EVENT_READ and st["end"] is None:
                    try:
                        got = s.recv(1 << 18)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        st["end"] = "reset"
                        got = None
                    if got:
                        st["got"] += got
                    elif got is not None:
                        st["end"] = "reset" if st.get("send_failed") else "eof"
                if st["end"] is not None:
                    sel.unregister(s)
                    left -= 1
    finally:
        sel.close()
    return [(bytes(st["got"]), st["end"]) for st in state]


def free_uid():
    """A uid with no passwd entry and no process: RLIMIT_NPROC counts every
    process of a uid, so only a uid nobody else uses gives exact counts."""
    used = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            used.update(int(x) for x in line.split()[1:])
                            break
            except OSError:
                pass
    for uid in range(61000, 65000, 7):
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            pass
        if uid not in used:
            return uid
    raise AssertionError("no free uid between 61000 and 65000")


# ---------------------------------------------------------------------------
# Test cases


class TestCase(h.TestCase):
    """The harness's test case plus loads that are stopped whatever happens."""

    def start(self, limits=None, server=None, access=None, log=None, **kw):
        """echod on a free loopback port; no per-source limit unless given,
        since every client here comes from one address."""
        self.port = h.free_port()
        lim = {"max_connections_per_source": 0}
        lim.update(limits or {})
        self.d = self.daemon(
            h.config_text(listen=[f"{HOST}:{self.port}"], server=server, limits=lim, access=access, log=log), **kw
        )
        return self.d

    def live(self, count, **kw):
        load = LiveLoad(HOST, self.port, count, **kw)
        self.addCleanup(load.stop)
        return load.start()

    def background(self, *args):
        load = BackgroundLoad(self.port, *args)
        self.addCleanup(load.kill)
        return load.start()
