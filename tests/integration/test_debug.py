"""Debug entries (issue 11 item 6): with level = debug or -d, every step that
decides a connection's fate is logged (accept, the access rule, the
source's state, fork, reap) and every step of a reload; at the default
level, none of them."""

import os
import signal
import time

import harness as h

HOST = "127.0.0.1"


def of_port(port):
    """Entries about the connection from local port `port`."""
    return lambda e: e.fields.get("remote_port") == str(port)


class DebugTest(h.TestCase):
    def start(self, level="debug", args=(), **conf):
        self.port = h.free_port()
        conf.setdefault("log", {})["level"] = level
        return self.daemon(h.config_text(listen=[f"{HOST}:{self.port}"], **conf), args=list(args))

    def steps(self, d, port, since, n):
        """The first n debug entries about one connection, in log order."""
        got = h.wait_until(
            lambda: (lambda x: x if len(x) >= n else None)(
                [e for e in d.entries(since) if of_port(port)(e) and e.level == "debug"]),
            what=f"{n} debug entries for port {port}")
        return got[:n]

    def test_a_refused_and_a_served_client_show_each_decision(self):
        d = self.start(limits={"max_connections_per_source": 4, "rate_per_source": "1/min",
                               "burst_per_source": 2},
                       access={"deny": ["127.0.0.2"], "allow": ["127.0.0.0/8"]})
        # Denied: accept and the access rule, then the refusal; no fork.
        mark = d.log_mark()
        c = h.connect(HOST, self.port, source="127.0.0.2")
        sport = c.getsockname()[1]
        c.close()
        refusal = d.wait_entry(lambda e: e.fields.get("reject_reason") == "denied", since=mark, what="the refusal")
        accepted, access = self.steps(d, sport, mark, 2)
        self.assertEqual(accepted.message, f"accepted connection from 127.0.0.2:{sport} on {HOST}:{self.port}")
        self.assertEqual(accepted.fields["local_port"], str(self.port))
        self.assertEqual(access.message, f"access for 127.0.0.2:{sport}: denied by deny 127.0.0.2/32")
        self.assertEqual((access.fields["access"], access.fields["access_rule"]), ("denied", "deny 127.0.0.2/32"))
        said = [e.raw for e in d.entries(mark) if of_port(sport)(e)]
        self.assertEqual(said.index(refusal.raw), 2, said)
        self.assertFalse([e for e in d.entries(mark) if of_port(sport)(e) and
                          ("source" in e.fields or "worker_pid" in e.fields)],
                         "a denied client is neither counted nor forked")

        # Served: allowed by the rule, the source's open count and rate
        # allowance, the worker's pid; the second one sees the first open.
        first = self.client(HOST, self.port)
        self.assertEqual(h.echo(first, b"one"), b"one")
        p1 = first.getsockname()[1]
        _, access, source, forked = self.steps(d, p1, mark, 4)
        self.assertEqual(access.message, f"access for {HOST}:{p1}: allowed by allow 127.0.0.0/8")
        self.assertEqual(source.message,
                         f"source 127.0.0.1/32 of {HOST}:{p1}: 0 open (limit 4), rate allowance 1 of 2 left")
        self.assertEqual({k: source.fields[k] for k in ("source", "source_open", "source_limit", "rate_left", "rate_burst")},
                         {"source": "127.0.0.1/32", "source_open": "0", "source_limit": "4", "rate_left": "1",
                          "rate_burst": "2"})
        worker = d.worker_for(first)
        self.assertEqual(forked.message, f"forked worker {worker} for {HOST}:{p1}")
        self.assertEqual(forked.fields["worker_pid"], str(worker))

        second = self.client(HOST, self.port)
        self.assertEqual(h.echo(second, b"two"), b"two")
        p2 = second.getsockname()[1]
        source = self.steps(d, p2, mark, 3)[2]
        self.assertEqual((source.fields["source_open"], source.fields["rate_left"]), ("1", "0"), source.raw)

        # Past the burst: the allowance shows 0 and the refusal follows.
        m3 = d.log_mark()
        h.assert_rejected(self, HOST, self.port)
        d.wait_entry(lambda e: e.fields.get("reject_reason") == "rate_per_source", since=m3, what="the rate refusal")
        source = [e for e in d.entries(m3) if "source" in e.fields]
        self.assertEqual([(e.fields["source_open"], e.fields["rate_left"]) for e in source], [("2", "0")])

        # Reaped: exit status and how long the worker lived, after the close record.
        first.close()
        reaped = d.wait_entry(lambda e: e.message.startswith(f"reaped worker {worker} "), since=mark, what="the reap")
        self.assertRegex(reaped.message, rf"^reaped worker {worker} for {HOST}:{p1}: exited with status 0 after \d+\.\d{{3}}s$")
        self.assertEqual((reaped.fields["exit_status"], reaped.fields["worker_pid"]), ("0", str(worker)))
        closed = [e.raw for e in d.entries(mark) if of_port(p1)(e)]
        self.assertLess(closed.index(next(r for r in closed if "close_reason=" in r)), closed.index(reaped.raw))

    def test_a_killed_worker_is_reaped_with_its_signal(self):
        d = self.start()
        c = self.client(HOST, self.port)
        self.assertEqual(h.echo(c, b"x"), b"x")
        worker = d.worker_for(c)
        mark = d.log_mark()
        os.kill(worker, signal.SIGKILL)
        e = d.wait_entry(lambda e: e.level == "debug" and e.message.startswith("reaped"), since=mark, what="the reap")
        self.assertRegex(e.message, rf"^reaped worker {worker} for {HOST}:\d+: killed by SIGKILL after")
        self.assertEqual(e.fields.get("signal"), "SIGKILL", e.raw)
        self.assertNotIn("exit_status", e.fields)

    def test_no_rules_and_deny_only_say_so(self):
        d = self.start()
        mark = d.log_mark()
        self.assertEqual(h.echo_roundtrip(HOST, self.port, b"x"), b"x")
        e = d.wait_entry(lambda e: "access" in e.fields, since=mark, what="the access entry")
        self.assertTrue(e.message.endswith(": allowed: no allow or deny rules"), e.raw)
        self.assertNotIn("access_rule", e.fields)
        d.write_config(h.config_text(listen=[f"{HOST}:{self.port}"], access={"deny": ["192.0.2.0/24"]},
                                     log={"level": "debug"}))
        d.reload()
        mark = d.log_mark()
        self.assertEqual(h.echo_roundtrip(HOST, self.port, b"x"), b"x")
        e = d.wait_entry(lambda e: "access" in e.fields, since=mark, what="the access entry")
        self.assertTrue(e.message.endswith(": allowed: no deny rule matches"), e.raw)
        # Outside the allow rules: said so, with no rule named.
        d.write_config(h.config_text(listen=[f"{HOST}:{self.port}"], access={"allow": ["192.0.2.0/24"]},
                                     log={"level": "debug"}))
        d.reload()
        mark = d.log_mark()
        h.assert_rejected(self, HOST, self.port)
        e = d.wait_entry(lambda e: "access" in e.fields, since=mark, what="the access entry")
        self.assertTrue(e.message.endswith(": not allowed: no allow rule matches"), e.raw)
        self.assertEqual(e.fields["access"], "not_allowed")

    def assert_no_debug(self, d, since):
        debug = [e.raw for e in d.entries(since) if e.level == "debug"]
        self.assertEqual(debug, [], "debug entries at another level")

    def test_off_by_default_on_with_d_off_again_after_a_reload_to_info(self):
        d = self.start(level="info")
        self.assertEqual(h.echo_roundtrip(HOST, self.port, b"x"), b"x")
        d.reload()
        self.assertEqual(h.echo_roundtrip(HOST, self.port, b"y"), b"y")
        d.wait_entry(lambda e: e.fields.get("bytes_in") == "1" and e.message.count("closed"), what="a close record")
        self.assert_no_debug(d, 0)

        # -d wins over the file, also across a reload.
        d2 = self.start(level="info", args=["-d"])
        d2.reload()
        mark = d2.log_mark()
        self.assertEqual(h.echo_roundtrip(HOST, self.port, b"x"), b"x")
        d2.wait_entry(lambda e: e.message.startswith("forked worker"), since=mark, what="debug after a reload with -d")

        # level = debug in the file, then info: the reload turns it off.
        d3 = self.start(level="debug")
        d3.write_config(h.config_text(listen=[f"{HOST}:{self.port}"], log={"level": "info"}))
        d3.reload()
        mark = d3.log_mark()
        self.assertEqual(h.echo_roundtrip(HOST, self.port, b"x"), b"x")
        d3.wait_entry(lambda e: "close_reason" in e.fields, since=mark, what="the close record")
        time.sleep(0.1)  # the reap comes after the close record
        self.assert_no_debug(d3, mark)

    def test_reload_steps(self):
        port2 = h.free_port()
        self.port = h.free_port()
        listen = [f"{HOST}:{self.port}", f"{HOST}:{port2}"]
        d = self.daemon(h.config_text(listen=listen, log={"level": "debug"}))
        dropin = d.dir / "echod.conf.d"
        dropin.mkdir()
        (dropin / "10-limits.conf").write_text("[limits]\nsource_prefix_v4 = 24\n")
        start = d.find_entries(lambda e: "config_files" in e.fields)
        self.assertEqual([e.message for e in start], [f"configuration read from {d.conf_path}"])
        live = self.client(HOST, self.port)
        self.assertEqual(h.echo(live, b"live"), b"live")

        # A connection waits in the backlog of the listener the reload
        # closes: the master is stopped while it connects and the reload
        # is asked for.
        d.write_config(h.config_text(listen=listen[:1], log={"level": "debug"}))
        mark = d.log_mark()
        os.kill(d.pid, signal.SIGSTOP)
        self.addCleanup(lambda: d.alive() and os.kill(d.pid, signal.SIGCONT))
        queued = self.client(HOST, port2)
        queued.sendall(b"queued")
        d.signal(signal.SIGHUP)
        os.kill(d.pid, signal.SIGCONT)
        d.wait_entry(lambda e: e.message.startswith("reloaded"), since=mark, what="the reload")
        got, _ = h.pump(queued, expect=len(b"queued"), timeout=5)
        self.assertEqual(got, b"queued", "the queued connection is served")

        steps = [e for e in d.entries(mark) if e.level == "debug" and e.fields.get("reload") == "1"
                 or e.message.startswith(("keeping the socket", "closing the socket"))]
        self.assertEqual([e.message for e in steps], [
            f"reload 1: configuration read from {d.conf_path}, {dropin}/10-limits.conf",
            f"keeping the socket listening on {HOST}:{self.port}",
            "reload 1: sources regrouped by /24 and /64: rate allowances start afresh",
            f"closing the socket listening on {HOST}:{port2}: new handshakes dropped, 1 queued connection taken",
            "reload 1: new settings in force for new connections; 2 open keep theirs",  # the queued one too
        ], [e.raw for e in d.entries(mark)])
        self.assertEqual(steps[3].fields["taken"], "1")
        # The reload's own entries carry its number too.
        info = [e for e in d.entries(mark) if e.level == "info" and e.fields.get("reload") == "1"]
        self.assertEqual([e.message.split(" ")[0] for e in info], ["reloading", "reloaded"])


if __name__ == "__main__":
    h.main(budget=60)
