"""A corpus of broken configurations: each bad-configs/*.conf holds one
mistake, and `echod --check-config -c FILE` must refuse it with exit status
78, naming the file and line of the mistake in one message on stderr,
quickly and without crashing.

Each file says what is expected in its first comment lines:

    # expect-line: N          the line of the mistake (required)
    # expect-text: TEXT       a piece of the message
    # expect-file: REL        the file named, when the mistake is in a
                              drop-in (relative to bad-configs/)

A file NAME.conf may come with drop-ins in NAME.conf.d/.
"""

import re
import sys
from pathlib import Path

import harness as h

BAD_DIR = Path(__file__).resolve().parent / "bad-configs"

# A check reads a few small files: one that takes longer is stuck on its
# input. Generous for a loaded 2-core machine.
TIME_LIMIT = 3.0

# What a crash or a sanitizer report (in a build with -Db_sanitize) leaves
# on stderr.
CRASH_RE = re.compile(r"Sanitizer|runtime error:|Segmentation fault|core dumped|Aborted")

_HEADER_RE = re.compile(r"^# expect-(line|text|file): (.*)$")


class Case:
    def __init__(self, path):
        self.path = path
        self.name = path.name
        raw = path.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        want = {}
        # latin-1 reads any byte, and the headers are ASCII.
        for line in raw.decode("latin-1").split("\n")[:3]:
            m = _HEADER_RE.match(line)
            if m:
                want[m.group(1)] = m.group(2)
        if "line" not in want:
            raise AssertionError(f"{path}: no '# expect-line: N' on its first lines")
        self.line = int(want["line"])
        self.text = want.get("text")
        self.named = BAD_DIR / want["file"] if "file" in want else path


def cases():
    return [Case(p) for p in sorted(BAD_DIR.glob("*.conf")) if p.is_file()]


def check_config(path, timeout=10.0):
    """(exit status, stdout, stderr, seconds) of `echod --check-config`; a
    run still going after timeout is killed and fails."""
    r = h.run_echod("--check-config", "-c", path, timeout=timeout)
    return r.rc, r.out, r.err, r.elapsed


class BadConfigTest(h.TestCase):
    def test_every_bad_config_is_refused_at_its_line(self):
        all_cases = cases()
        # Guards against a glob that silently finds nothing.
        self.assertGreaterEqual(len(all_cases), 50, f"the corpus in {BAD_DIR} is missing files")
        slowest = 0.0
        for c in all_cases:
            with self.subTest(c.name):
                rc, out, err, elapsed = check_config(c.path)
                slowest = max(slowest, elapsed)
                shown = f"{c.name}: exit {rc}, stdout {out!r}, stderr {err!r}"
                self.assertGreaterEqual(rc, 0, f"killed by signal {-rc}: {shown}")
                self.assertNotRegex(err, CRASH_RE, f"crash or sanitizer report: {shown}")
                self.assertEqual(rc, 78, shown)
                self.assertEqual(out, "", shown)
                # Only the first error is reported (echod.conf(5)).
                lines = err.splitlines()
                self.assertEqual(len(lines), 1, f"expected one message: {shown}")
                self.assertTrue(
                    lines[0].startswith(f"{c.named}:{c.line}: "),
                    f"expected the message to start with '{c.named}:{c.line}: ': {shown}",
                )
                if c.text:
                    self.assertIn(c.text, lines[0], shown)
                self.assertLess(elapsed, TIME_LIMIT, f"took {elapsed:.2f}s: {shown}")
        print(f"{len(all_cases)} bad configurations tried, slowest check {slowest:.3f}s", file=sys.stderr)

    def test_drop_in_cases_fail_because_of_the_drop_in(self):
        """Each main file that comes with drop-ins is fine on its own, so the
        error found above really comes from reading the drop-in."""
        with_dropins = [c for c in cases() if c.named != c.path]
        self.assertGreater(len(with_dropins), 0)
        for c in with_dropins:
            with self.subTest(c.name):
                alone = Path(self.tmp) / c.name
                alone.write_bytes(c.path.read_bytes())
                rc, out, err, _ = check_config(alone)
                self.assertEqual((rc, err), (0, ""), f"{c.name} without its drop-ins: exit {rc}, {err!r}")


if __name__ == "__main__":
    h.main(budget=110)
