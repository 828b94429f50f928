"""Debian 12 with real systemd as PID 1, in a container, for the system test.

The pristine root is debootstrapped once and cached. Each run boots its own
overlay of it, so what a run changes lands in an upper directory of its own
and is thrown away at the end: runs never see each other's leftovers.

The container gets a private network namespace holding only loopback: the
daemon's shipped default (port 7 on every address) is tested as shipped,
without colliding with anything on the host or being reachable from outside.
Only apt, which must reach the Debian archive, is run in the container with
the host's network.
"""

import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SUITE = "bookworm"
# systemd as PID 1 and its bus; procps and libinih1 are dependencies of the
# package, preinstalled so that installing it needs no download.
INCLUDE = ("systemd", "systemd-sysv", "dbus", "procps", "libinih1")
# Bumped when the way the root is made changes, so stale caches are rebuilt.
RECIPE = 1

CONTAINER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CLONE_NEWNET = 0x40000000


class ContainerError(Exception):
    pass


def log(msg):
    print(f"# {msg}", flush=True)


def need_tools():
    """Installs what booting a container needs, as run-all.sh does for the
    build: a fresh machine has neither debootstrap nor systemd-nspawn."""
    wanted = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
              "pgrep": "procps"}
    missing = [pkg for tool, pkg in wanted.items() if not shutil.which(tool)]
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                   check=True, env=env, timeout=600, stdout=subprocess.DEVNULL)


def _deb822_mirror(text):
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            m = re.match(r"([A-Za-z-]+):\s*(.*)", line)
            if m and not line.startswith("#"):
                fields[m.group(1).lower()] = m.group(2).split()
        if ("deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
                and fields.get("uris")):
            return fields["uris"][0]
    return None


def _oneline_mirror(text):
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
            return words[1]
    return None


def host_mirror():
    """The Debian archive the host's apt uses: the one place this machine is
    known to reach. ECHOD_SYSTEST_MIRROR overrides it."""
    if os.environ.get("ECHOD_SYSTEST_MIRROR"):
        return os.environ["ECHOD_SYSTEST_MIRROR"]
    d = Path("/etc/apt/sources.list.d")
    for p in sorted(d.glob("*.sources")) if d.is_dir() else []:
        uri = _deb822_mirror(p.read_text())
        if uri:
            return uri
    for p in [Path("/etc/apt/sources.list"), *sorted(d.glob("*.list"))]:
        if p.is_file():
            uri = _oneline_mirror(p.read_text())
            if uri:
                return uri
    raise ContainerError(f"no 'deb ... {SUITE}' source in /etc/apt: set ECHOD_SYSTEST_MIRROR")


class Cache:
    """The cached pristine root, under ECHOD_SYSTEST_CACHE (default
    /var/cache/echod-systest). A run holds a shared lock on it for as long as
    its overlay uses the root; rebuilding takes the lock exclusively."""

    def __init__(self, path=None):
        self.path = Path(path or os.environ.get("ECHOD_SYSTEST_CACHE")
                         or "/var/cache/echod-systest")
        self.root = self.path / "root"
        self.stamp = self.path / "root.stamp"
        self.runs = self.path / "runs"
        self._lock = None
        self.was_cached = None

    def acquire(self):
        """Returns the pristine root, creating it if missing or made by
        another recipe, and keeps it locked against rebuilds."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / "lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        mirror = host_mirror()
        include = list(INCLUDE)
        if mirror.startswith("https:"):
            include.append("ca-certificates")  # for the container's own apt
        want = {"recipe": RECIPE, "suite": SUITE, "include": include, "mirror": mirror}
        have = None
        if self.stamp.is_file() and self.root.is_dir():
            try:
                have = json.loads(self.stamp.read_text())
            except ValueError:
                have = None
        self.was_cached = have == want
        if not self.was_cached:
            self._build(mirror, include, want)
        fcntl.flock(self._lock, fcntl.LOCK_SH)
        return self.root

    def _build(self, mirror, include, stamp):
        log(f"creating the container root with debootstrap ({SUITE}, {mirror}); "
            f"cached in {self.root}")
        new = self.path / "root.new"
        shutil.rmtree(new, ignore_errors=True)
        self.stamp.unlink(missing_ok=True)
        with open(self.path / "debootstrap.log", "w") as out:
            r = subprocess.run(["debootstrap", "--variant=minbase",
                                "--include=" + ",".join(include), SUITE, str(new), mirror],
                               stdout=out, stderr=subprocess.STDOUT, timeout=1800)
        if r.returncode != 0:
            raise ContainerError(f"debootstrap failed (status {r.returncode}); "
                                 f"see {self.path / 'debootstrap.log'}")
        # Persistent journal, so that it can be read from the host as well.
        (new / "var/log/journal").mkdir(parents=True, exist_ok=True)
        # Package lists, so that apt can resolve a dependency the package may
        # add later; refreshed again by a run only if installing fails.
        r = subprocess.run(["chroot", str(new), "apt-get", "update", "-q"],
                           env={"PATH": CONTAINER_PATH, "LC_ALL": "C.UTF-8"},
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise ContainerError(f"apt-get update in the new root failed: {r.stdout}{r.stderr}")
        subprocess.run(["chroot", str(new), "apt-get", "clean"], env={"PATH": CONTAINER_PATH},
                       check=True, timeout=120)
        if self.root.exists():
            shutil.rmtree(self.root)
        new.rename(self.root)
        self.stamp.write_text(json.dumps(stamp) + "\n")

    def new_run_dir(self, name):
        self.runs.mkdir(exist_ok=True)
        self._forget_dead_runs()
        d = self.runs / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        return d

    def _forget_dead_runs(self):
        """Removes what runs killed before their clean-up left (their
        directories end in the pid of the runner)."""
        for d in self.runs.iterdir():
            pid = d.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or Path(f"/proc/{pid}").exists():
                continue
            merged = d / "merged"
            if os.path.ismount(merged) and subprocess.run(["umount", str(merged)]).returncode:
                continue
            shutil.rmtree(d, ignore_errors=True)


def _starttime(pid):
    # Field 22 of /proc/PID/stat; the command name before it may hold spaces.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


class Container:
    """One booted container. run() executes a command inside it as root, with
    a clean environment, bounded in time by timeout(1) inside and a deadline
    outside."""

    def __init__(self, root, run_dir, name):
        self.root = root
        self.dir = run_dir
        self.name = name
        self.merged = run_dir / "merged"
        self.nspawn = None
        self.pid1 = None
        self._pid1_start = None
        self._netns = None
        self._hostns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._mounted = False
        self._log = None
        self._last_err = ""
        self._libc = ctypes.CDLL(None, use_errno=True)

    def boot(self, files=()):
        """Boots the container with files copied into /srv/echod-systest
        (readable by apt's sandbox user); returns is-system-running's answer."""
        for d in ("upper", "work", "merged"):
            (self.dir / d).mkdir()
        opts = f"lowerdir={self.root},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}"
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.merged)],
                           capture_output=True, text=True)
        if r.returncode == 0:
            self._mounted = True
        else:
            log(f"overlay mount failed ({r.stderr.strip()}); copying the root instead")
            subprocess.run(["cp", "-a", "--reflink=auto", f"{self.root}/.", str(self.merged)],
                           check=True, timeout=600)
        dest = self.merged / "srv/echod-systest"
        dest.mkdir(parents=True)
        for f in files:
            shutil.copy(f, dest)
        self._log = open(self.dir / "nspawn.log", "w")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", str(self.merged), "--register=no", "--keep-unit",
             "--console=pipe", "-b", f"--machine={self.name}", "--private-network",
             "--resolv-conf=copy-host", "--link-journal=no"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.pid1 is None:
            if self.nspawn.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited with {self.nspawn.returncode}: "
                                     f"{(self.dir / 'nspawn.log').read_text()}")
            if time.monotonic() > deadline:
                raise ContainerError("no systemd in the container after 30s")
            r = subprocess.run(["pgrep", "-P", str(self.nspawn.pid), "-x", "systemd"],
                               capture_output=True, text=True)
            if r.stdout.split():
                self.pid1 = int(r.stdout.split()[0])
                self._pid1_start = _starttime(self.pid1)
            else:
                time.sleep(0.1)
        self._netns = os.open(f"/proc/{self.pid1}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        # systemd needs a moment before it answers on its socket at all:
        # until then systemctl prints nothing (no socket yet) or "offline"
        # (a socket nobody accepts on yet), and --wait gives up at once
        # instead of waiting. So first wait for a state systemd itself
        # reports, then let --wait wait for the boot to finish.
        deadline = time.monotonic() + 30
        while self._state(timeout=10) in ("", "offline"):
            if time.monotonic() > deadline:
                raise ContainerError("systemctl cannot reach systemd in the container after 30s")
            time.sleep(0.1)
        deadline = time.monotonic() + 120
        while True:
            state = self._state(timeout=120, wait=True)
            if state not in ("", "offline"):
                return state
            if time.monotonic() > deadline:
                return f"{state or 'unreachable'} after 120s ({self._last_err})"
            time.sleep(0.2)

    def _state(self, timeout, wait=False):
        """is-system-running's answer; raises if the container is gone, so
        that a dead boot says why instead of answering nothing."""
        r = self.run(["systemctl", "is-system-running", *(["--wait"] if wait else [])],
                     timeout=timeout)
        self._last_err = r.stderr.strip()
        if self.nspawn.poll() is not None:
            raise ContainerError(f"systemd-nspawn exited with {self.nspawn.returncode}: "
                                 f"{(self.dir / 'nspawn.log').read_text()[-4000:]}")
        return r.stdout.strip()

    def run(self, argv, timeout=60, input=None, host_net=False, env=None):
        """Runs argv in the container (a list, or a string for sh -c) and
        returns the CompletedProcess (text). host_net keeps the host's network
        namespace, for apt."""
        # Never the caller's terminal: timeout(1) puts the command in a
        # process group of its own, which a terminal on stdin stops with
        # SIGTTOU as soon as something (dpkg) sets terminal modes.
        stdin = {} if input is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run(self._cmd(argv, timeout, host_net, env), input=input,
                              capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=timeout + 15, **stdin)

    def popen(self, argv, timeout=60):
        """Starts argv in the container and returns at once (Popen)."""
        return subprocess.Popen(self._cmd(argv, timeout, False, None), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                                errors="replace")

    def _cmd(self, argv, timeout, host_net, env):
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        ns = ["-m", "-u", "-i", "-p", "-C"] if host_net else ["-a"]
        e = {"PATH": CONTAINER_PATH, "LC_ALL": "C.UTF-8", "HOME": "/root", "TERM": "dumb",
             "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "DEBIAN_FRONTEND": "noninteractive"}
        e.update(env or {})
        return ["nsenter", "-t", str(self.pid1), *ns, "env", "-i",
                *[f"{k}={v}" for k, v in e.items()],
                "timeout", "-k", "5", str(timeout), *argv]

    def read(self, path):
        r = self.run(["cat", path])
        if r.returncode != 0:
            raise ContainerError(f"cat {path}: {r.stderr.strip()}")
        return r.stdout

    def write(self, path, text):
        r = self.run(["sh", "-c", 'umask 022 && mkdir -p "${1%/*}" && cat > "$1"', "sh", path],
                     input=text)
        if r.returncode != 0:
            raise ContainerError(f"writing {path}: {r.stderr.strip()}")

    def exists(self, path):
        return self.run(["test", "-e", path]).returncode == 0

    def netns(self):
        """Context manager: sockets created inside it live in the container's
        network namespace (setns switches only the calling thread)."""
        box = self

        class _NetNS:
            def __enter__(self):
                box._setns(box._netns)

            def __exit__(self, *exc):
                box._setns(box._hostns)

        return _NetNS()

    def _setns(self, fd):
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    def journal_tail(self, lines=40):
        args = ["journalctl", "--no-pager", "-o", "short-precise", "-n", str(lines)]
        if self.alive():
            r = self.run(args, timeout=30)
        else:
            jdir = self.dir / ("upper" if self._mounted else "merged") / "var/log/journal"
            r = subprocess.run(args + ["-D", str(jdir)], capture_output=True, text=True,
                               encoding="utf-8", errors="replace", timeout=30)
        return r.stdout + r.stderr

    def alive(self):
        return (self.pid1 is not None and self.nspawn is not None and self.nspawn.poll() is None)

    def _pid1_is_ours(self):
        try:
            return _starttime(self.pid1) == self._pid1_start
        except OSError:
            return False

    def shutdown(self, keep=False):
        """Powers the container off, forcing it if it does not go in time,
        and removes the run directory unless keep."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            asked = False
            if self.pid1 is not None:
                try:
                    asked = self.run(["systemctl", "poweroff", "--no-block"],
                                     timeout=10).returncode == 0
                except (subprocess.TimeoutExpired, OSError):
                    pass
            if not asked:
                # nspawn passes it on to the container's init as SIGRTMIN+3,
                # systemd's "power off".
                self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log("power-off took over 60s: killing systemd-nspawn")
                self.nspawn.kill()
                self.nspawn.wait(timeout=15)
        # A PID namespace dies with its init; nspawn killed might leave it.
        if self.pid1 is not None and self._pid1_is_ours():
            os.kill(self.pid1, signal.SIGKILL)
        for fd in (self._netns, self._hostns):
            if fd is not None:
                os.close(fd)
        self._netns = self._hostns = None
        if self._log:
            self._log.close()
        if self._mounted:
            if subprocess.run(["umount", str(self.merged)]).returncode != 0:
                subprocess.run(["umount", "-l", str(self.merged)])
            self._mounted = False
        if keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def check_root_user():
    if os.geteuid() != 0:
        sys.exit("run-system-test: run as root (it boots a container)")
