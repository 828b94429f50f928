"""How the system test reports: one line per check, "ok - NAME" or
"not ok - NAME", and for a failure what was expected, what was observed and
the tail of the container's journal, as "#" comments.
"""

import traceback


def _comment(label, text, block=False):
    """Diagnostics as TAP comments: one line, or with block a label line
    and the text indented below it."""
    lines = str(text).rstrip("\n").splitlines() or [""]
    if block:
        print(f"#   {label}")
    else:
        print(f"#   {label}{lines.pop(0)}")
    for line in lines:
        print(f"#     {line}")


class Report:
    """Counts and prints checks; box gives the journal for diagnosis."""

    def __init__(self, box):
        self.box = box
        self.passed = 0
        self.failed = []

    def check(self, name, ok, expected="", observed=""):
        if ok:
            self.passed += 1
            print(f"ok - {name}", flush=True)
            return True
        self.failed.append(name)
        print(f"not ok - {name}")
        _comment("expected: ", expected)
        _comment("observed: ", observed)
        try:
            tail = self.box.journal_tail(30)
        except Exception as e:  # the diagnosis must not hide the failure
            tail = f"(no journal: {e})"
        _comment("container journal, last lines:", tail, block=True)
        print(flush=True)
        return False

    def scenario(self, title, fn, *args):
        """Runs fn(self, *args); an exception becomes one failed check, so
        that the scenarios after it still run."""
        try:
            fn(self, *args)
        except Exception as e:
            self.check(f"{title}: runs to the end", False, "no error",
                       f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
