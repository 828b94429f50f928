"""The command line: options, exit codes, --check-config, --dump-config."""

import os
import re
import socket

import harness as h

HOST = "127.0.0.1"


def project_version():
    text = (h.REPO_ROOT / "meson.build").read_text()
    m = re.search(r"project\([^)]*?version\s*:\s*'([^']+)'", text, re.S)
    return m.group(1)


def parse_ini(text):
    """section -> key -> [values] (list keys may repeat)."""
    out = {}
    sec = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            sec = out.setdefault(line.strip("[]").strip(), {})
            continue
        k, _, v = line.partition("=")
        sec.setdefault(k.strip(), []).append(v.strip())
    return out


class CliTest(h.TestCase):
    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def good_conf(self, **kw):
        self.port = h.free_port()
        return h.config_text(listen=[f"{HOST}:{self.port}"], **kw)

    # --- informational options ------------------------------------------

    def test_version(self):
        want = f"echod {project_version()}"
        for opt in ("--version", "-V"):
            r = h.run_echod(opt)
            self.assertEqual(r.rc, 0, f"{opt}: {r}")
            self.assertEqual(r.out.splitlines()[:1], [want], f"{opt}: {r}")
            self.assertRegex(r.out.splitlines()[1], r"^worker sandbox: (seccomp|off)$", f"{opt}: {r}")
            self.assertRegex(r.out.splitlines()[2], r"^default config: /\S+/echod\.conf$", f"{opt}: {r}")

    def test_help(self):
        for opt in ("--help", "-h"):
            r = h.run_echod(opt)
            self.assertEqual(r.rc, 0, f"{opt}: {r}")
            self.assertRegex(r.out, r"(?i)usage", f"{opt}: usage belongs on stdout: {r}")
            for o in ("--config", "--check-config", "--dump-config", "--debug", "--version"):
                self.assertIn(o, r.out, f"{opt} should list {o}")
            self.assertEqual(r.err, "", f"{opt}: {r}")

    # --- usage errors -----------------------------------------------------

    def test_contradictory_options_are_usage_errors(self):
        path = self.write("good.conf", self.good_conf())
        cases = {
            ("--help", "--version"): "--help takes no other option",
            ("-V", "-c", path): "--version takes no other option",
            ("-h", "-t"): "--help takes no other option",
            ("-d", "-t", "-c", path): "--debug has no effect with --check-config",
            ("--debug", "--dump-config", "-c", path): "--debug has no effect with --dump-config",
        }
        for args, msg in cases.items():
            with self.subTest(args=args):
                r = h.run_echod(*args)
                self.assertEqual(r.rc, 64, r)
                self.assertIn(f"echod: {msg}\n", r.err)
                self.assertEqual(r.out, "")

    def test_check_and_dump_together_check_then_dump(self):
        """--dump-config prints only a configuration that passed the
        check, so the two together are the dump; with an error, neither
        prints anything but the error."""
        path = self.write("good.conf", self.good_conf())
        both = h.run_echod("--check-config", "--dump-config", "-c", path)
        dump = h.run_echod("--dump-config", "-c", path)
        self.assertEqual((both.rc, both.err), (0, ""), both)
        self.assertEqual(both.out, dump.out)
        self.assertIn(f"listen = {HOST}:{self.port}", both.out)
        bad = self.write("bad.conf", self.good_conf() + "[limits]\nmax_connections = many\n")
        r = h.run_echod("-t", "--dump-config", "-c", bad)
        self.assertEqual((r.rc, r.out), (78, ""), r)
        self.assertIn(f"{bad}:", r.err)

    def test_unknown_option_is_usage_error(self):
        for opt in ("--no-such-option", "-Z"):
            r = h.run_echod(opt)
            self.assertEqual(r.rc, 64, f"{opt}: {r}")
            self.assertRegex(r.err, r"(?i)usage", f"{opt}: usage belongs on stderr: {r}")
            self.assertEqual(r.out, "", f"{opt}: {r}")

    def test_missing_config_argument_is_usage_error(self):
        for opt in ("-c", "--config"):
            r = h.run_echod(opt)
            self.assertEqual(r.rc, 64, f"{opt} without a path: {r}")
            self.assertRegex(r.err, r"(?i)usage", f"{opt}: {r}")

    # --- bad configuration at start -----------------------------------------

    def test_nonexistent_config_exits_78_naming_it(self):
        path = os.path.join(self.tmp, "missing.conf")
        for extra in ((), ("--check-config",)):
            r = h.run_echod("-c", path, *extra)
            self.assertEqual(r.rc, 78, f"{extra}: {r}")
            self.assertIn(path, r.err, f"{extra}: {r}")

    def broken_configs(self):
        p = h.free_port()
        base = f"[server]\nlisten = {HOST}:{p}\n\n[log]\ntarget = stderr\n"
        return {
            "unknown key": (base + "no_such_key = 1\n", "no_such_key"),
            "unknown section": (base + "[nonsense]\nx = 1\n", "[nonsense]"),
            "bad number": (base + "[limits]\nmax_connections = many\n", "max_connections"),
            "bad duration": (base + "[limits]\nidle_timeout = 5 fortnights\n", "idle_timeout"),
            "bad address": (f"[server]\nlisten = {HOST}:99999\n", "listen"),
            "bad cidr": (base + "[access]\nallow = 127.0.0.1/24\n", "allow"),
            "bad level": (base.replace("target = stderr", "target = stderr\nlevel = chatty"), "level"),
            "single key twice": (base + "[limits]\nmax_connections = 5\nmax_connections = 6\n", "max_connections = 6"),
            "unknown user": (base + "[server]\nuser = no-such-user-echod-test\n", "user ="),
        }

    def test_broken_config_at_start_exits_78_with_file_line(self):
        for name, (text, needle) in self.broken_configs().items():
            with self.subTest(name):
                path = self.write("bad.conf", text)
                line = h.line_of(text, needle)
                r = h.run_echod("-c", path)
                self.assertEqual(r.rc, 78, f"{name}: {r}")
                self.assertIn(f"{path}:{line}:", r.err, f"{name}: expected '{path}:{line}:' in stderr: {r}")

    def test_check_config_bad_exits_78_with_file_line(self):
        for name, (text, needle) in self.broken_configs().items():
            with self.subTest(name):
                path = self.write("bad.conf", text)
                line = h.line_of(text, needle)
                for opt in ("--check-config", "-t"):
                    r = h.run_echod("-c", path, opt)
                    self.assertEqual(r.rc, 78, f"{name} {opt}: {r}")
                    self.assertIn(f"{path}:{line}:", r.err, f"{name} {opt}: {r}")

    def test_check_config_good_is_silent(self):
        path = self.write("good.conf", self.good_conf(limits={"max_connections": 9}, access={"allow": "127.0.0.0/8"}))
        for opt in ("--check-config", "-t"):
            r = h.run_echod("-c", path, opt)
            self.assertEqual((r.rc, r.out, r.err), (0, "", ""), f"{opt}: {r}")

    def test_check_config_does_not_bind(self):
        with socket.socket() as busy:
            busy.bind((HOST, 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            path = self.write("busy.conf", h.config_text(listen=[f"{HOST}:{port}"]))
            r = h.run_echod("-c", path, "--check-config")
        self.assertEqual(r.rc, 0, f"--check-config checks what is known without binding: {r}")

    def test_broken_dropin_named_with_line(self):
        path = self.write("echod.conf", self.good_conf())
        drop = self.write("echod.conf.d/20-bad.conf", "[limits]\n\nmax_connections = -1\n")
        r = h.run_echod("-c", path, "--check-config")
        self.assertEqual(r.rc, 78, f"{r}")
        self.assertIn(f"{drop}:3:", r.err, f"{r}")

    def test_port_in_use_exits_71_naming_address(self):
        with socket.socket() as busy:
            busy.bind((HOST, 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            path = self.write("busy.conf", h.config_text(listen=[f"{HOST}:{port}"]))
            r = h.run_echod("-c", path)
        self.assertEqual(r.rc, 71, f"{r}")
        self.assertIn(f"{HOST}:{port}", r.err, f"the message should name the address: {r}")

    # --- --dump-config ------------------------------------------------------

    def test_dump_config_reflects_values_and_reloads(self):
        text = self.good_conf(
            server={"drain_timeout": "2s", "backlog": 77},
            limits={"max_connections": 7, "max_connections_per_source": 3, "idle_timeout": "0"},
            access={"allow": ["127.0.0.0/8", "::1/128"], "deny": "127.0.0.9"},
            log={"level": "notice", "connections": "no"},
        )
        path = self.write("echod.conf", text)
        r = h.run_echod("-c", path, "--dump-config")
        self.assertEqual(r.rc, 0, f"{r}")
        ini = parse_ini(r.out)
        get = lambda s, k: ini.get(s, {}).get(k)
        self.assertEqual(get("server", "listen"), [f"{HOST}:{self.port}"], r.out)
        self.assertEqual(get("server", "backlog"), ["77"], r.out)
        self.assertEqual(get("limits", "max_connections"), ["7"], r.out)
        self.assertEqual(get("limits", "max_connections_per_source"), ["3"], r.out)
        self.assertEqual(get("limits", "idle_timeout"), ["0"], r.out)
        self.assertEqual(sorted(get("access", "allow") or []), ["127.0.0.0/8", "::1/128"], r.out)
        self.assertIn(get("access", "deny"), (["127.0.0.9"], ["127.0.0.9/32"]), r.out)
        self.assertEqual(get("log", "level"), ["notice"], r.out)
        self.assertEqual(get("log", "connections"), ["no"], r.out)

        dumped = self.write("dumped.conf", r.out)
        c = h.run_echod("-c", dumped, "--check-config")
        self.assertEqual((c.rc, c.err), (0, ""), f"--dump-config output must load again: {c}\n{r.out}")
        again = h.run_echod("-c", dumped, "--dump-config")
        self.assertEqual(again.out, r.out, "dumping the dump must give the same config")

    def test_dump_config_of_defaults_reloads(self):
        path = self.write("echod.conf", self.good_conf())
        r = h.run_echod("-c", path, "--dump-config")
        self.assertEqual(r.rc, 0, f"{r}")
        ini = parse_ini(r.out)
        for sec, key in (("server", "drain_timeout"), ("limits", "max_connections"), ("limits", "idle_timeout"), ("log", "level")):
            self.assertIn(key, ini.get(sec, {}), f"the effective config should show [{sec}] {key}:\n{r.out}")
        dumped = self.write("dumped.conf", r.out)
        c = h.run_echod("-c", dumped, "--check-config")
        self.assertEqual(c.rc, 0, f"{c}")

    def test_dropin_override_visible_in_dump(self):
        path = self.write("echod.conf", self.good_conf(limits={"max_connections": 5}))
        self.write("echod.conf.d/10-first.conf", "[limits]\nmax_connections = 9\n")
        self.write("echod.conf.d/20-second.conf", "[limits]\nmax_connections = 11\n")
        self.write("echod.conf.d/30-not-conf.txt", "[limits]\nmax_connections = 99\n")
        r = h.run_echod("-c", path, "--dump-config")
        self.assertEqual(r.rc, 0, f"{r}")
        self.assertEqual(parse_ini(r.out)["limits"]["max_connections"], ["11"], f"the lexically last *.conf wins:\n{r.out}")

    def test_debug_option_overrides_configured_level(self):
        # level = err hides the info entries (start, connection closed)...
        quiet = self.daemon(self.good_conf(log={"level": "err"}))
        h.assert_served(self, HOST, self.port)
        quiet.wait_children(0)
        self.assertEqual([e for e in quiet.entries() if e.level != "err"], [], "level = err should log nothing below err")
        quiet.stop()
        # ...and -d/--debug shows them whatever the config says
        for opt in ("-d", "--debug"):
            d = self.daemon(self.good_conf(log={"level": "err"}), args=[opt])
            h.assert_served(self, HOST, self.port)
            d.wait_entry(lambda e: e.level in ("info", "debug"), what=f"entries below err with {opt}")
            d.stop()


if __name__ == "__main__":
    h.main(budget=110)
