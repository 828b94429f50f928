"""The documentation's examples work as written: every config example in
the README and in echod.conf(5) passes `echod --check-config` (a fragment
as a drop-in over a minimal config), the README's block of defaults
says what --dump-config says, and the fields the README documents are
in a real close record and a real refusal."""

import os
import re
import socket

import harness as h

HOST = "127.0.0.1"
SECTION = re.compile(r"^\[(server|limits|access|log)\]\s*$", re.M)


def readme_blocks():
    """The README's indented code blocks that hold a config section."""
    text = (h.REPO_ROOT / "README.md").read_text()
    blocks, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("    "):
            cur.append(line[4:])
            continue
        if cur and line.strip() == "" and cur[-1] != "":
            cur.append("")
            continue
        if cur:
            body = "\n".join(cur).strip() + "\n"
            if SECTION.search(body):
                blocks.append(body)
        cur = []
    return blocks


def man_blocks(page):
    """The literal displays (.Bd -literal ... .Ed) of a man page that hold
    a config section, with @CONFIG_PATH@ as the shipped path."""
    text = (h.REPO_ROOT / "man" / page).read_text()
    out = []
    for m in re.finditer(r"^\.Bd -literal[^\n]*\n(.*?)^\.Ed$", text, re.S | re.M):
        body = m.group(1).replace("@CONFIG_PATH@", "/etc/echod.conf").replace("\\&", "")
        if SECTION.search(body):
            out.append(body)
    return out


class DocsTest(h.TestCase):
    def check(self, body, what):
        d = os.path.join(self.tmp, f"ex{len(os.listdir(self.tmp))}")
        os.mkdir(d)
        main = os.path.join(d, "echod.conf")
        if re.search(r"^listen\s*=", body, re.M):
            with open(main, "w") as f:
                f.write(body)
        else:
            with open(main, "w") as f:
                f.write(f"[server]\nlisten = {HOST}:7\n")
            os.mkdir(main + ".d")
            with open(os.path.join(main + ".d", "50-example.conf"), "w") as f:
                f.write(body)
        r = h.run_echod("--check-config", "-c", main)
        self.assertEqual((r.rc, r.err), (0, ""), f"{what}:\n{body}")
        return main

    def test_readme_config_examples_check(self):
        blocks = readme_blocks()
        self.assertGreaterEqual(len(blocks), 1, "the README's config block was not found")
        for i, b in enumerate(blocks):
            with self.subTest(block=i):
                self.check(b, f"README config block {i}")

    def test_man_config_examples_check(self):
        blocks = man_blocks("echod.conf.5.in") + man_blocks("echod.8.in")
        self.assertGreaterEqual(len(blocks), 3, "echod.conf(5)'s examples were not found")
        for i, b in enumerate(blocks):
            with self.subTest(block=i):
                self.check(b, f"man page config example {i}")

    def test_readme_defaults_are_the_defaults(self):
        """Each active line of the README's block (but listen) is the
        value --dump-config shows for a config that sets nothing else."""
        block = next(b for b in readme_blocks() if "max_connections" in b)
        main = os.path.join(self.tmp, "min.conf")
        with open(main, "w") as f:
            f.write(f"[server]\nlisten = {HOST}:7\n")
        r = h.run_echod("--dump-config", "-c", main)
        self.assertEqual(r.rc, 0, r)
        dumped, sec = {}, None
        for line in r.out.splitlines():
            if SECTION.match(line):
                sec = line.strip("[] ")
            elif "=" in line and not line.lstrip().startswith(("#", ";")):
                k, _, v = line.partition("=")
                dumped[(sec, k.strip())] = v.split(";")[0].strip()
        sec, n = None, 0
        for line in block.splitlines():
            if SECTION.match(line):
                sec = line.strip("[] ")
                continue
            if not line.strip() or line.lstrip().startswith((";", "#")):
                continue
            k, _, v = line.partition("=")
            k, v = k.strip(), v.split(";")[0].strip()
            if k == "listen":
                continue
            with self.subTest(key=f"{sec}.{k}"):
                self.assertEqual(dumped.get((sec, k)), v, f"README says {sec}.{k} = {v}")
            n += 1
        self.assertGreater(n, 10)

    def test_documented_fields_are_in_real_records(self):
        text = (h.REPO_ROOT / "README.md").read_text()
        logs = text[text.index("## Logs"):text.index("## Design notes")]
        fields = set(re.findall(r"`([A-Z][A-Z_]+)`", logs)) - {"PRIORITY", "MESSAGE_ID"}
        self.assertGreaterEqual(len(fields), 9, fields)
        port = h.free_port()
        d = self.daemon(h.config_text(listen=[f"{HOST}:{port}"], access={"deny": ["127.0.0.9"]},
                                      log={"target": "stderr"}))
        mark = d.log_mark()
        h.assert_served(self, HOST, port)
        state, _ = h.probe(HOST, port, source="127.0.0.9")
        self.assertIn(state, ("eof", "reset"))
        closed = d.wait_entry(lambda e: "close_reason" in e.fields, since=mark, what="a close record")
        refused = d.wait_entry(lambda e: "reject_reason" in e.fields, since=mark, what="a refusal")
        seen = set(closed.fields) | set(refused.fields)
        missing = {f for f in fields if f.lower() not in seen}
        self.assertEqual(missing, set(), f"documented but not in the records: {closed.raw} {refused.raw}")
        # echod(8)'s example of a close record on stderr has the keys of a
        # real one, and is the master's (its pid is not worker_pid).
        man = (h.REPO_ROOT / "man" / "echod.8.in").read_text()
        example = re.search(r"^\.Ss Standard error\n.*?^\.Bd -literal[^\n]*\n(.*?)^\.Ed$", man, re.S | re.M).group(1)
        keys = set(re.findall(r"\b([a-z_]+)=", example))
        self.assertEqual(keys, set(closed.fields), f"echod(8)'s example against {closed.raw}")
        pid = re.search(r"echod\[(\d+)\]", example).group(1)
        self.assertNotEqual(pid, re.search(r"worker_pid=(\d+)", example).group(1))
        self.assertNotEqual(str(closed.pid), closed.fields["worker_pid"], "the master writes the close record")
        reasons = re.search(r"`REJECT_REASON` \(([^)]*)\)", logs).group(1).replace("\n", " ")
        self.assertIn(refused.fields["reject_reason"], [r.strip() for r in reasons.split(",")])


if __name__ == "__main__":
    h.main(budget=60)
