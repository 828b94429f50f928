"""Every MESSAGE_ID that echod logs (the LOG_ID_* of src/log.h) has exactly
one entry in the journal catalog and is listed in echod(8), and neither
lists an ID that echod no longer logs. Each catalog entry is well formed
(journalctl accepts much that is not) and, where journalctl is installed,
it loads the catalog into a scratch root and lists every entry.

Usage: check-msgids.py LOG_H CATALOG MAN_PAGE
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

ID = r"[0-9a-f]{32}"
HEADERS = {"Subject": None, "Defined-By": "echod", "Support": "man:echod(8)"}


def log_ids(path):
    with open(path) as f:
        ids = re.findall(r'^#define\s+(LOG_ID_\w+)\s+"(' + ID + ')"', f.read(), re.M)
    if not ids:
        sys.exit(f"{path}: no LOG_ID_* definition found")
    return dict(ids)


def catalog_entries(path):
    """Returns {id: (headers, body)} and a list of problems."""
    entries, problems = {}, []
    with open(path) as f:
        lines = f.read().split("\n")
    current = None
    for n, line in enumerate(lines, 1):
        where = f"{path}:{n}"
        if line.startswith("-- "):
            m = re.fullmatch(ID, line[3:])
            if not m:
                problems.append(f"{where}: not a 32-digit lower-case hex ID: {line!r}")
                current = None
                continue
            if line[3:] in entries:
                problems.append(f"{where}: {line[3:]} has a second entry")
            current = entries[line[3:]] = ({}, [])
            in_headers = True
        elif current is None:
            if line and not line.startswith("#"):
                problems.append(f"{where}: text before the first entry")
        elif in_headers and line:
            key, sep, value = line.partition(": ")
            if not sep:
                problems.append(f"{where}: expected 'Header: value': {line!r}")
            current[0][key] = value
        elif in_headers:
            in_headers = False
        else:
            current[1].append(line)
    for msgid, (headers, body) in entries.items():
        for key, want in HEADERS.items():
            got = headers.get(key)
            if not got or (want and got != want):
                problems.append(f"{msgid}: {key}: {got!r}, expected {want or 'a value'!r}")
        if not "".join(body).strip():
            problems.append(f"{msgid}: no explanation after the headers")
    return entries, problems


def journalctl_lists(path, ids):
    """Loads the catalog as journalctl --update-catalog does on install."""
    journalctl = shutil.which("journalctl")
    if not journalctl:
        print("journalctl not installed: catalog not loaded")
        return []
    with tempfile.TemporaryDirectory() as root:
        catdir = os.path.join(root, "usr/lib/systemd/catalog")
        os.makedirs(catdir)
        shutil.copy(path, catdir)
        problems = []
        for args in (["--update-catalog"], ["--list-catalog"]):
            r = subprocess.run([journalctl, "--root", root, *args], capture_output=True,
                               text=True, timeout=30)
            if r.returncode != 0:
                return [f"journalctl {args[0]}: exit {r.returncode}: {r.stderr.strip()}"]
        listed = dict(re.findall(r"^(" + ID + r") echod: (.+)$", r.stdout, re.M))
        for msgid in ids:
            if msgid not in listed:
                problems.append(f"journalctl --list-catalog does not list {msgid}")
        return problems


def main():
    log_h, catalog, man = sys.argv[1:4]
    ids = log_ids(log_h)
    wanted = set(ids.values())
    entries, problems = catalog_entries(catalog)
    with open(man) as f:
        in_man = set(re.findall(r"\b(" + ID + r")\b", f.read()))

    for name, msgid in sorted(ids.items()):
        if msgid not in entries:
            problems.append(f"{catalog}: no entry for {name} ({msgid})")
        if msgid not in in_man:
            problems.append(f"{man}: {name} ({msgid}) is not listed")
    for msgid in sorted(set(entries) - wanted):
        problems.append(f"{catalog}: {msgid} is not a LOG_ID_* of {log_h}")
    for msgid in sorted(in_man - wanted):
        problems.append(f"{man}: {msgid} is not a LOG_ID_* of {log_h}")
    if not problems:
        problems = journalctl_lists(catalog, wanted)

    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"{len(ids)} message IDs: each in the catalog and in {os.path.basename(man)}")


if __name__ == "__main__":
    main()
