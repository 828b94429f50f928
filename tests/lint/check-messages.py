"""The message style of docs/DESIGN.md ("How messages are written"), checked
on every log call in the sources: a message starts lower case (or with a
signal's name, or a value), has no final period, lets its nouns agree with
their numbers instead of writing "worker(s)", and writes a peer as
host:port, never "port N".

Usage: check-messages.py SRC_DIR
"""

import os
import re
import sys

CALL = re.compile(r"\blog_(?:info|notice|warning|err|debug|struct|msg)\s*\(")
LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
CHAR = re.compile(r"'(?:[^'\\]|\\.)*'")
FIELD_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")


def strip_comments(text):
    """Comments out, string literals kept (a "/*" inside one stays)."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            out.append(" " * ((n if j < 0 else j + 2) - i))
            i = n if j < 0 else j + 2
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text[i] in "\"'":
            m = (LITERAL if text[i] == '"' else CHAR).match(text, i)
            out.append(m.group(0))
            i = m.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def call_args(text, start):
    """The text of a call's arguments, from just after its '('."""
    depth, i = 1, start
    while depth and i < len(text):
        c = text[i]
        if c in "\"'":
            i = (LITERAL if c == '"' else CHAR).match(text, i).end()
            continue
        depth += c == "("
        depth -= c == ")"
        i += 1
    return text[start:i - 1]


def message_format(args):
    """The format string: the first run of adjacent literals that is not a
    field's key."""
    runs, cur, last = [], [], None
    for m in LITERAL.finditer(args):
        if last is not None and args[last:m.start()].strip() == "":
            cur.append(m.group(1))
        else:
            if cur:
                runs.append("".join(cur))
            cur = [m.group(1)]
        last = m.end()
    if cur:
        runs.append("".join(cur))
    for r in runs:
        if not FIELD_KEY.match(r):
            return r
    return None


def problems(fmt):
    out = []
    if re.search(r"[a-z]\(s\)", fmt):
        out.append('hedges a plural with "(s)": use log_s(n)')
    if fmt.rstrip().endswith("."):
        out.append("ends with a period")
    if not (fmt[:1].islower() or fmt.startswith(("%", "SIG"))):
        out.append("does not start lower case")
    if re.search(r"\bport %", fmt):
        out.append('writes "port N": a peer is host:port')
    return out


def main():
    src = sys.argv[1]
    bad, seen = [], 0
    for name in sorted(os.listdir(src)):
        if not name.endswith(".c"):
            continue
        path = os.path.join(src, name)
        with open(path) as f:
            raw = f.read()
        text = strip_comments(raw)
        for m in CALL.finditer(text):
            fmt = message_format(call_args(text, m.end()))
            if fmt is None:
                continue  # a macro's definition or a call passing a variable
            seen += 1
            line = text.count("\n", 0, m.start()) + 1
            for p in problems(fmt):
                bad.append(f"{path}:{line}: \"{fmt}\": {p}")
    for b in bad:
        print(b)
    print(f"{seen} messages checked, {len(bad)} problems")
    if seen < 30:
        sys.exit(f"only {seen} log calls found in {src}: is the pattern still right?")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
