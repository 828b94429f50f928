"""What the system test checks, in the order an admin meets it: install,
serve, reload, logs, restart, stop, socket activation, removal.

Each scenario drives systemctl, journalctl, apt and clients in the container
and reports one line per check. A scenario that breaks midway (a timeout, a
refused connection) is reported as a failed check and the next one runs.
"""

import json
import re
import time

import echo

UNIT = "echod.service"
SOCKET = "echod.socket"
CONF = "/etc/echod.conf"
# The admin's own drop-in: a short drain so that the stop check is quick.
DROPIN = "/etc/echod.conf.d/50-system-test.conf"
DRAIN = 3
PORT = 7  # the shipped default
NEW_PORT = 7007
DENIED = "127.0.0.2"
SESSIONS = 100  # short sessions in a row, for the journal attribution check


def _out(r):
    text = (r.stdout + r.stderr).strip()
    return f"exit {r.returncode}: {text[-3000:]}"


def _show(box, prop):
    return box.run(["systemctl", "show", "-p", prop, "--value", UNIT]).stdout.strip()


def _wait(fn, timeout, until=bool, interval=0.2):
    """Polls fn until until(its value) holds or timeout passes; returns its
    last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if until(v) or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def _journal(box, *matches, unit=True):
    """Entries as an admin selects them (-u echod), or with unit=False every
    entry that echod's processes wrote, attributed to the unit or not."""
    box.run(["journalctl", "--sync"])
    select = ["-u", "echod"] if unit else ["SYSLOG_IDENTIFIER=echod"]
    r = box.run(["journalctl", "--no-pager", "-o", "json", *select, *matches])
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def _set_key(text, section, key, values):
    """The file with every active `key =` line of [section] replaced by one
    line per value right after the section header, as an admin would edit."""
    out, cur, done = [], None, False
    for line in text.splitlines():
        m = re.match(r"\s*\[([^]]+)\]\s*$", line)
        if m:
            cur = m.group(1).strip()
            out.append(line)
            if cur == section and not done:
                out += [f"{key} = {v}" for v in values]
                done = True
            continue
        if cur == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
            continue
        out.append(line)
    if not done:
        out += ["", f"[{section}]", *[f"{key} = {v}" for v in values]]
    return "\n".join(out) + "\n"


def _check_serves(rep, name, port, host="127.0.0.1", source=None):
    data = f"echo via {host}:{port}\n".encode() * 100
    got = echo.describe(echo.roundtrip, rep.box, port, data, host, source)
    if isinstance(got, tuple):
        got = got[0]
        seen = f"{len(got)} of {len(data)} bytes back: {got[:60]!r}..."
    else:
        seen = got
    return rep.check(name, got == data, f"the {len(data)} bytes sent come back, then EOF", seen)


def install(rep, ctx):
    box = rep.box
    paths = [f"/srv/echod-systest/{p.name}" for p in ctx.debs]
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *paths]
    r = box.run(argv, timeout=900, host_net=True)
    if r.returncode != 0:
        print("# install failed: refreshing the package lists and trying again")
        box.run(["apt-get", "update", "-q"], timeout=600, host_net=True)
        r = box.run(argv, timeout=900, host_net=True)
    rep.check(f"apt-get install {' '.join(paths)}", r.returncode == 0, "exit 0", _out(r))
    for pkg in ctx.packages:
        st = box.run(["dpkg-query", "-W", "-f=${Status}", pkg]).stdout
        rep.check(f"package {pkg} is installed", st == "install ok installed",
                  "install ok installed", st)
        ctx.files[pkg] = [line for line in box.run(["dpkg", "-L", pkg]).stdout.splitlines()
                          if line.startswith("/") and line != "/."]


def running(rep):
    box = rep.box
    for verb, want in (("is-active", "active"), ("is-enabled", "enabled")):
        got = box.run(["systemctl", verb, UNIT]).stdout.strip()
        rep.check(f"after install: systemctl {verb} echod is {want}", got == want, want, got)
    r = box.run("printf 'hello, echod\\n' | echo-client 127.0.0.1 7")
    rep.check("echo-client 127.0.0.1 7 echoes a line", r.stdout == "hello, echod\n",
              "'hello, echod\\n'", _out(r))
    r = box.run("head -c 1000000 /dev/urandom > /tmp/in && echo-client ::1 7 < /tmp/in > /tmp/out"
                " && cmp /tmp/in /tmp/out", timeout=60)
    rep.check("echo-client ::1 7 echoes 1 MB of random bytes exactly", r.returncode == 0,
              "exit 0 (cmp finds no difference)", _out(r))
    _check_serves(rep, "port 7 on 127.0.0.1 echoes (shipped config)", PORT)
    _check_serves(rep, "port 7 on [::1] echoes (shipped config)", PORT, "::1")


def security(rep):
    r = rep.box.run(["systemd-analyze", "security", UNIT, "--no-pager"], timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    score = float(m.group(1)) if m else None
    rep.check(f"systemd-analyze security echod.service scores {score} <= 2.0",
              score is not None and score <= 2.0, "an exposure level of 2.0 or lower",
              m.group(0) if m else _out(r))


def workers(rep):
    box = rep.box
    main = _show(box, "MainPID")
    user = box.run(["ps", "-o", "user=", "-p", main]).stdout.strip()
    rep.check("the master (MainPID) runs as user echod", user == "echod", "echod",
              f"MainPID {main}: user {user!r}")
    def children():
        return box.run(["ps", "-o", "pid=,stat=,comm=", "--ppid", main]).stdout.strip()

    # Workers of earlier sessions may still be on their way out.
    kids = _wait(children, 10, until=lambda k: not k)
    rep.check("with no client connected, the master has no child", not kids, "no child", kids)
    conns = [echo.Conn(box, PORT) for _ in range(3)]
    try:
        for i, c in enumerate(conns):
            c.echo(f"conn {i}\n".encode())
        kids = box.run(["ps", "-o", "pid=,user=", "--ppid", main]).stdout.split("\n")
        kids = [k.split() for k in kids if k.strip()]
        rep.check("3 open connections: 3 workers, children of MainPID, as user echod",
                  len(kids) == 3 and all(u == "echod" for _, u in kids),
                  "3 children of MainPID owned by echod", f"children of {main}: {kids}")
        cg = _show(box, "ControlGroup")
        # The unified hierarchy: /sys/fs/cgroup itself, or .../unified when
        # the host runs systemd's hybrid layout (the container follows it).
        procs = box.run(["sh", "-c", 'for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do '
                         '[ -r "$d$1/cgroup.procs" ] && exec cat "$d$1/cgroup.procs"; done; '
                         'exit 1', "sh", cg]).stdout.split()
        want = {main, *[p for p, _ in kids]}
        rep.check("master and workers are in echod.service's cgroup",
                  cg.endswith("/echod.service") and want <= set(procs),
                  f"{sorted(want)} in {cg}/cgroup.procs", f"{cg}: {procs}")
    finally:
        for c in conns:
            c.close()
    kids = _wait(children, 10, until=lambda k: not k)
    rep.check("workers exit and are reaped once their clients close", not kids,
              "no child of MainPID left", kids)


def reload(rep, ctx):
    box = rep.box
    before = echo.Conn(box, PORT)
    ctx.held = before
    got = before.echo(b"before reload\n")
    rep.check("a connection opened before the reload echoes", got == b"before reload\n",
              "b'before reload\\n'", got)
    conf = box.read(CONF)
    conf = _set_key(conf, "server", "listen", [f"0.0.0.0:{NEW_PORT}", f"[::]:{NEW_PORT}"])
    ctx.good_conf = _set_key(conf, "access", "deny", [DENIED])
    box.write(CONF, ctx.good_conf)
    box.write(DROPIN, f"[server]\ndrain_timeout = {DRAIN}s\n")
    r = box.run(["systemctl", "reload", "echod"], timeout=60)
    rep.check(f"edit {CONF} (listen port {NEW_PORT}, deny {DENIED}) and systemctl reload "
              "echod: the job completes", r.returncode == 0, "exit 0", _out(r))
    state = box.run(["systemctl", "is-active", UNIT]).stdout.strip()
    rep.check("after reload: echod active", state == "active", "active", state)
    _check_serves(rep, f"after reload: the new port {NEW_PORT} echoes", NEW_PORT)
    rep.check(f"after reload: the old port {PORT} no longer listens",
              echo.refused(box, PORT), "connection refused", "connection accepted")
    got = echo.describe(before.echo, b"after reload\n")
    rep.check("after reload: the connection opened before it still echoes",
              got == b"after reload\n", "b'after reload\\n'", got)

    def probe():
        c = echo.Conn(box, NEW_PORT, source=DENIED)
        try:
            got = c.echo(b"let me in\n")
            return "closed without echo" if not got and c.wait_eof(5) is not None else got
        except (ConnectionResetError, BrokenPipeError):
            return "closed without echo"
        finally:
            c.close()

    got = echo.describe(probe)
    rep.check(f"after reload: a client from {DENIED} is refused (deny rule)",
              got == "closed without echo", "closed without echo", got)
    _check_serves(rep, "after reload: a client from 127.0.0.3 is still served", NEW_PORT,
                  source="127.0.0.3")


def broken_reload(rep, ctx):
    box = rep.box
    try:
        conf = _set_key(ctx.good_conf, "server", "listen", ["127.0.0.1:7008"])
        conf = _set_key(conf, "limits", "max_connections", ["plenty"])
        line = conf.splitlines().index("max_connections = plenty") + 1
        box.write(CONF, conf)
        r = box.run(["systemctl", "reload", "echod"], timeout=60)
        print(f"# systemctl reload with a bad {CONF}:{line}: {_out(r).splitlines()[0]}")
        state = box.run(["systemctl", "is-active", UNIT]).stdout.strip()
        rep.check("after a broken config and reload: echod still active", state == "active",
                  "active", state)
        _check_serves(rep, f"after the failed reload: the old config serves (port {NEW_PORT})",
                      NEW_PORT)
        rep.check("after the failed reload: nothing of the broken config applies (no port 7008)",
                  echo.refused(box, 7008), "connection refused", "connection accepted")
        got = echo.describe(ctx.held.echo, b"still here\n")
        rep.check("after the failed reload: the connection from before still echoes",
                  got == b"still here\n", "b'still here\\n'", got)
        where = f"{CONF}:{line}"
        for argv in (["systemctl", "status", "echod", "--no-pager", "-l", "-n", "20"],
                     ["journalctl", "-u", "echod", "--no-pager"]):
            # The error reaches the journal a moment after the reload job ends.
            out = _wait(lambda: box.run(argv).stdout, 5, until=lambda t: where in t)
            rep.check(f"{' '.join(argv[:3])} shows the error at {where}", where in out, where, out)
        box.write(CONF, ctx.good_conf)
        r = box.run(["systemctl", "reload", "echod"], timeout=60)
        rep.check("with the config repaired, systemctl reload echod completes", r.returncode == 0,
                  "exit 0", _out(r))
    finally:
        ctx.held.close()


def journal(rep):
    box = rep.box
    data = b"x" * 1234
    got, port = echo.roundtrip(box, NEW_PORT, data)
    want = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": str(port), "BYTES_IN": "1234",
            "BYTES_OUT": "1234", "CLOSE_REASON": "eof"}

    # Looked up whether or not journald tied it to the unit: that is
    # checked on its own, at the end.
    found = _wait(lambda: _journal(box, f"REMOTE_PORT={port}", unit=False), 10)
    e = found[0] if found else {}
    ok = (got == data and all(e.get(k) == v for k, v in want.items())
          and re.fullmatch(r"[0-9a-f]{32}", e.get("MESSAGE_ID", "")))
    rep.check("the journal entry of a closed connection has MESSAGE_ID, REMOTE_ADDR, "
              "BYTES_IN, BYTES_OUT, CLOSE_REASON, with the session's values", bool(ok),
              f"MESSAGE_ID=<32 hex> {want}", {k: e.get(k) for k in ["MESSAGE_ID", *want]})
    entries = _journal(box)
    five = ["MESSAGE_ID", "REMOTE_ADDR", "BYTES_IN", "BYTES_OUT", "CLOSE_REASON"]
    n = sum(all(k in e for k in five) for e in entries)
    rep.check(f"journalctl -u echod -o json has entries with {', '.join(five)} ({n})", n > 0,
              "at least one", f"{len(entries)} entries, none with all five")
    ids = sorted({e["MESSAGE_ID"] for e in _journal(box, unit=False) if "MESSAGE_ID" in e})
    catalog = box.run(["journalctl", "--list-catalog", *ids]).stdout if ids else ""
    missing = [i for i in ids if i not in catalog]
    rep.check(f"every MESSAGE_ID echod logged ({len(ids)}) has a catalog entry",
              bool(ids) and not missing, "the ids in journalctl --list-catalog",
              f"ids {ids}, missing {missing}")
    others = {e.get("REMOTE_ADDR") for e in entries} - {None, "127.0.0.1"}
    only = _journal(box, "REMOTE_ADDR=127.0.0.1")
    addrs = {e.get("REMOTE_ADDR") for e in only}
    rep.check("journalctl -u echod REMOTE_ADDR=127.0.0.1 returns only matching entries",
              len(only) > 0 and addrs == {"127.0.0.1"} and others,
              f"some entries, all from 127.0.0.1, none of {sorted(others)}",
              f"{len(only)} entries, REMOTE_ADDR values {addrs}")
    denied = [e for e in entries if e.get("REMOTE_ADDR") == DENIED]
    rep.check(f"the refused client {DENIED} is logged with REJECT_REASON=denied",
              any(e.get("REJECT_REASON") == "denied" for e in denied), "REJECT_REASON=denied",
              [{k: v for k, v in e.items() if k.isupper() and not k.startswith("_")}
               for e in denied])


def restart(rep):
    box = rep.box
    n0, p0 = _show(box, "NRestarts"), _show(box, "MainPID")
    if not rep.check("before kill -9: echod runs", p0 not in ("", "0"), "a MainPID", p0):
        return
    box.run(["kill", "-9", p0])

    def back():
        p = _show(box, "MainPID")
        return p not in ("0", p0) and _show(box, "ActiveState") == "active" and p

    p1 = _wait(back, 30)
    n1 = _show(box, "NRestarts")
    rep.check("kill -9 of the master: systemd restarts echod (Restart=on-failure)",
              bool(p1) and n1 == str(int(n0) + 1), f"active, new MainPID, NRestarts {int(n0) + 1}",
              f"MainPID {p0} -> {_show(box, 'MainPID')}, {_show(box, 'ActiveState')}, "
              f"NRestarts {n0} -> {n1}")
    _check_serves(rep, "after the restart: echod echoes", NEW_PORT)


def stop(rep):
    box = rep.box
    # Whatever the restart check left, so that its failure does not hide this.
    box.run(["systemctl", "start", "echod"], timeout=60)
    closing, staying = echo.Conn(box, NEW_PORT), echo.Conn(box, NEW_PORT)
    try:
        for c in (closing, staying):
            c.echo(b"hello\n")
        t0 = time.monotonic()
        job = box.popen(["systemctl", "stop", "echod"], timeout=120)
        state = _wait(lambda: _show(box, "ActiveState"), 5, lambda s: s != "active", 0.05)
        rep.check("systemctl stop with live connections: echod is deactivating (draining)",
                  state == "deactivating", "deactivating", state)
        got = [echo.describe(c.echo, b"still echoing\n") for c in (closing, staying)]
        rep.check("during the stop, live connections keep echoing",
                  got == [b"still echoing\n"] * 2, "b'still echoing\\n' on both", got)
        rep.check("during the stop, new connections are refused", echo.refused(box, NEW_PORT),
                  "connection refused", "connection accepted")
        port_closed, port_drained = closing.local_port, staying.local_port
        closing.close()
        waited = staying.wait_eof(DRAIN + 10)
        took = None if waited is None else time.monotonic() - t0
        rep.check(f"the connection left open ends when drain_timeout ({DRAIN}s) passes",
                  took is not None and DRAIN - 0.5 <= took <= DRAIN + 5,
                  f"EOF about {DRAIN}s after the stop began",
                  "no EOF" if took is None else f"EOF after {took:.1f}s")
        try:
            out, _ = job.communicate(timeout=60)
        except Exception:
            job.kill()
            raise
        rep.check("systemctl stop echod returns 0", job.returncode == 0, "exit 0",
                  f"exit {job.returncode}: {out}")
    finally:
        closing.close()
        staying.close()
    state = _show(box, "ActiveState")
    failed = box.run(["systemctl", "is-failed", UNIT])
    result = _show(box, "Result")
    rep.check("after the stop: inactive, not failed, Result=success",
              state == "inactive" and failed.returncode != 0 and result == "success",
              "inactive, is-failed false, success",
              f"{state}, is-failed {failed.stdout.strip()}, {result}")
    def reasons():
        r = {e.get("REMOTE_PORT"): e.get("CLOSE_REASON") for e in _journal(box, unit=False)}
        return (r.get(str(port_closed)), r.get(str(port_drained)))

    got = _wait(reasons, 5, until=lambda g: None not in g)
    rep.check("the journal says eof for the client that closed, drained for the other",
              got == ("eof", "drained"), "('eof', 'drained')", got)
    r = box.run(["systemctl", "start", "echod"], timeout=60)
    rep.check("systemctl start echod after the stop", r.returncode == 0, "exit 0", _out(r))


def socket_activation(rep):
    box = rep.box
    r = box.run(["systemctl", "disable", "--now", UNIT], timeout=60)
    rep.check("systemctl disable --now echod.service", r.returncode == 0 and echo.refused(
        box, NEW_PORT), "exit 0, nothing listening", _out(r))
    r = box.run(["systemctl", "enable", "--now", SOCKET], timeout=60)
    svc = box.run(["systemctl", "is-active", UNIT]).stdout.strip()
    rep.check("systemctl enable --now echod.socket: the socket is active, the service not yet",
              r.returncode == 0 and svc == "inactive", "exit 0, echod.service inactive",
              f"{_out(r)}; echod.service {svc}")
    _check_serves(rep, "socket activation: the first connection (127.0.0.1:7) is echoed", PORT)
    svc = box.run(["systemctl", "is-active", UNIT]).stdout.strip()
    user = box.run(["ps", "-o", "user=", "-p", _show(box, "MainPID")]).stdout.strip()
    rep.check("socket activation: the connection started echod.service, as user echod",
              svc == "active" and user == "echod", "active, echod", f"{svc}, {user!r}")
    _check_serves(rep, "socket activation: [::1]:7 is echoed too", PORT, "::1")
    rep.check(f"socket activation: echod serves systemd's socket, not listen (no {NEW_PORT})",
              echo.refused(box, NEW_PORT), "connection refused", "connection accepted")


def attribution(rep):
    """journald learns an entry's unit from /proc of the sender when the
    entry arrives; a worker that exits (and is reaped) right after logging
    can be gone by then, and its entry then escapes journalctl -u echod.
    A burst of short sessions makes that race all but certain to show."""
    box = rep.box
    ports = {str(echo.roundtrip(box, PORT, b"attribution\n")[1]) for _ in range(SESSIONS)}
    _wait(lambda: _journal(box, unit=False), 10,
          until=lambda es: ports <= {e.get("REMOTE_PORT") for e in es})
    everything = _journal(box, unit=False)
    lost = [e for e in everything if e.get("_SYSTEMD_UNIT") != UNIT]
    rep.check(f"every entry echod wrote ({len(everything)}, {SESSIONS} sessions just now) is "
              "in journalctl -u echod", everything and not lost,
              "_SYSTEMD_UNIT=echod.service on each",
              f"{len(lost)} without it, e.g. " + "; ".join(
                  f"_PID={e.get('_PID')} {e.get('MESSAGE')}" for e in lost[:5]))


def _echod_units(box):
    r = box.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "echod*"])
    return [line for line in r.stdout.splitlines()
            if line.split()[2:3] and line.split()[2] != "inactive"]


def remove(rep, ctx):
    box = rep.box
    pkgs = " ".join(ctx.packages)
    r = box.run(["apt-get", "remove", "-y", "-q", *ctx.packages], timeout=300, host_net=True)
    rep.check(f"apt-get remove {pkgs}", r.returncode == 0, "exit 0", _out(r))
    units = _echod_units(box)
    procs = box.run(["pgrep", "-a", "echod"]).stdout.strip()
    rep.check("after remove: no echod unit active and no echod process",
              not units and not procs and echo.refused(box, PORT),
              "none, port 7 refused", f"units {units}, processes {procs!r}")
    rep.check(f"after remove: {CONF} is kept (a conffile), the daemon is gone",
              box.exists(CONF) and not box.exists("/usr/sbin/echod"),
              f"{CONF} present, /usr/sbin/echod absent", box.run(["ls", "-l", CONF,
                                                                  "/usr/sbin/echod"]).stdout)
    box.run(["rm", "-f", DROPIN])  # the admin's own file, not the package's
    r = box.run(["apt-get", "purge", "-y", "-q", *ctx.packages], timeout=300, host_net=True)
    rep.check(f"apt-get purge {pkgs}", r.returncode == 0, "exit 0", _out(r))
    for pkg in ctx.packages:
        st = box.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg]).stdout
        rep.check(f"after purge: {pkg} is not installed", st in ("", "not-installed"),
                  "not-installed", st)
    files = sorted({f for fs in ctx.files.values() for f in fs})
    script = ('while read -r p; do if [ -e "$p" ] || [ -L "$p" ]; then '
              '[ -d "$p" ] && dpkg -S "$p" >/dev/null 2>&1 || echo "$p"; '
              'fi; done')
    left = box.run(["sh", "-c", script], input="\n".join(files) + "\n").stdout.split()
    rep.check(f"after purge: none of the package's {len(files)} paths is left "
              "(except directories other packages own)", len(files) > 0 and not left,
              "nothing left", left)
    rep.check(f"after purge: {CONF} is gone", not box.exists(CONF), "absent", "present")
    r = box.run("find /etc /lib/systemd /usr/lib/systemd /run/systemd/system "
                "/var/lib/systemd -name '*echod*'")
    rep.check("after purge: no unit file, enablement link or state of echod is left",
              not r.stdout.strip(), "nothing found", r.stdout)
    units = _echod_units(box)
    procs = box.run(["pgrep", "-a", "echod"]).stdout.strip()
    rep.check("after purge: no echod unit active and no echod process", not units and not procs,
              "none", f"units {units}, processes {procs!r}")
