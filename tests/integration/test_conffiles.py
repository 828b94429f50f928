"""Careless admins: a config that is a FIFO, a directory, a device or of
gigabytes, and a config emptied by mistake. Each is refused at once, by
--check-config, at start and on reload (which keeps the old config)."""

import os
import signal

import harness as h

HOST = "127.0.0.1"

# --check-config reads a few small files: anything slower is stuck.
QUICK = 3.0


def reload_failed(e):
    return "reload" in e.message and "failed" in e.message


class ConfFilesTest(h.TestCase):
    def odd(self, kind):
        """A path that is not a regular file, of the given kind."""
        p = os.path.join(self.tmp, f"{kind}.conf")
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "dir":
            os.mkdir(p)
        elif kind == "zero":
            os.symlink("/dev/zero", p)
        return p

    def assert_check_refuses(self, path, text, named=None):
        r = h.run_echod("--check-config", "-c", path, timeout=10)
        self.assertEqual(r.rc, 78, r)
        self.assertEqual(r.err, f"{named or path}: {text}\n")
        self.assertLess(r.elapsed, QUICK, r)

    def test_check_refuses_what_is_not_a_regular_file(self):
        self.assert_check_refuses(self.odd("fifo"), "not a regular file (a FIFO)")
        self.assert_check_refuses(self.odd("dir"), "not a regular file (a directory)")
        self.assert_check_refuses(self.odd("zero"), "not a regular file (a character device)")

    def test_errors_escape_control_characters(self):
        """A key with an escape sequence, a path with a newline: the error
        that quotes them can neither clear the terminal nor forge a
        second line (of a log that reads stderr, journald's say)."""
        path = os.path.join(self.tmp, "esc.conf")
        with open(path, "wb") as f:
            f.write(f"[server]\nlisten = {HOST}:{h.free_port()}\nfo\x1b[2Jo = 1\n".encode())
        r = h.run_echod("--check-config", "-c", path, timeout=10)
        self.assertEqual((r.rc, r.err), (78, f'{path}:3: unknown key "fo\\x1b[2Jo" in section [server]\n'))
        forged = os.path.join(self.tmp, "x\n2026-01-01T00:00:00.000Z echod[1] info: forged")
        r = h.run_echod("--check-config", "-c", forged, timeout=10)
        self.assertEqual(r.rc, 78, r)
        self.assertEqual(r.err.count("\n"), 1, r)
        self.assertIn("x\\x0a2026-01-01", r.err)

    def test_check_refuses_a_fifo_dropin(self):
        main = os.path.join(self.tmp, "echod.conf")
        with open(main, "w") as f:
            f.write(h.config_text(listen=[f"{HOST}:{h.free_port()}"]))
        os.mkdir(main + ".d")
        fifo = os.path.join(main + ".d", "50-pipe.conf")
        os.mkfifo(fifo)
        self.assert_check_refuses(main, "not a regular file (a FIFO)", named=fifo)

    def test_check_refuses_a_huge_file_by_its_size(self):
        p = os.path.join(self.tmp, "huge.conf")
        with open(p, "w") as f:
            f.write(h.config_text(listen=[f"{HOST}:7"]))
            f.truncate(8 << 30)  # sparse: 8 GiB that take no room
        self.assert_check_refuses(p, "file is too large (8589934592 bytes, at most 1024 KiB)")

    def test_reload_to_fifo_keeps_old_config_and_serving(self):
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"]))
        live = self.client(HOST, port)
        self.assertEqual(h.echo(live, b"before"), b"before")
        for what, make in (
            ("main", lambda: (os.unlink(d.conf_path), os.mkfifo(d.conf_path))),
            ("drop-in", lambda: (os.unlink(d.conf_path), d.write_config(d.conf_text),
                                 os.mkfifo(str(d.conf_path) + ".d/50-pipe.conf"))),
        ):
            with self.subTest(what):
                if what == "drop-in":
                    os.makedirs(str(d.conf_path) + ".d", exist_ok=True)
                make()
                mark = d.log_mark()
                d.reload(timeout=5)
                e = d.wait_entry(reload_failed, since=mark, what="a reload-failed entry")
                self.assertIn("not a regular file (a FIFO)", e.message)
                h.assert_served(self, HOST, port)
                self.assertEqual(h.echo(live, b"still"), b"still")
        d.signal(signal.SIGTERM)
        live.close()
        self.assertEqual(d.wait_exit(timeout=10), 0)

    def test_empty_config_is_refused_not_served_on_defaults(self):
        for text in ("", "# nothing here\n", "[server]\nbacklog = 10\n"):
            with self.subTest(text=text):
                p = os.path.join(self.tmp, "empty.conf")
                with open(p, "w") as f:
                    f.write(text)
                r = h.run_echod("--check-config", "-c", p)
                self.assertEqual(r.rc, 78, r)
                self.assertEqual(r.err.strip(), f"{p}: [server] listen: no listen address is set"
                                 " (and no socket was passed by systemd)")
                r = h.run_echod("-c", p, timeout=10)
                self.assertEqual(r.rc, 78, r)
                self.assertIn("no listen address is set", r.err)

    def test_reload_to_empty_config_keeps_listening(self):
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"]))
        inode = h.listening_inode(port)
        d.write_config("# emptied by mistake\n")
        mark = d.log_mark()
        d.reload()
        e = d.wait_entry(reload_failed, since=mark, what="a reload-failed entry")
        self.assertIn(f"{d.conf_path}: [server] listen: no listen address is set", e.message)
        self.assertEqual(h.listening_inode(port), inode)
        h.assert_served(self, HOST, port)


if __name__ == "__main__":
    h.main(budget=100)
