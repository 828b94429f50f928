#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 checkout: installs what is
# missing (tests/deps --test), builds with warnings as errors, runs every
# meson test, then builds the .deb and the .rpm (lintian, rpmlint, same file lists) and
# runs the system test under real systemd in a container, then fuzzes the
# parsers for a bounded time. Prints one line
# "N passed, N failed[, N skipped]" and exits non-zero on any failure.
#
# usage: tests/run-all.sh [--quick] [MESON TEST ARGS...]
#   --quick   meson suites only (no packages, no container)
set -euo pipefail
cd "$(dirname "$0")/.."

# No test may read the caller's terminal or be stopped by it: everything
# below gets /dev/null as stdin (from a terminal, the system test's apt-get
# in the container was stopped by SIGTTOU and timed out). The system test
# itself runs under a terminal of its own (script), as from an interactive
# shell, so that a command that would touch the caller's terminal is
# caught here too, with or without one.
exec </dev/null

# Namespaces, mounts and containers need root: as another user the
# script runs itself again through sudo (which asks on /dev/tty, not on
# stdin), keeping BUILD_DIR.
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "tests/run-all.sh: the tests need root; run it as root or install sudo" >&2
		exit 1
	fi
	exec sudo -- env ${BUILD_DIR:+BUILD_DIR="$BUILD_DIR"} "$PWD/tests/run-all.sh" "$@"
fi

quick=no
if [ "${1:-}" = "--quick" ]; then
	quick=yes
	shift
fi

tests/deps --test

build=${BUILD_DIR:-build-test}
if [ -d "$build" ]; then
	meson setup --reconfigure "$build" -Dwerror=true
else
	meson setup "$build" -Dwerror=true
fi
ninja -C "$build"

status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?

# Steps beyond meson, each counted as one test; its log is kept on failure.
steps_passed=0
steps_failed=0
step() {
	local name=$1 log="$build/step-$1.log"
	shift
	echo "== $name"
	if "$@" >"$log" 2>&1; then
		echo "ok - $name"
		steps_passed=$((steps_passed + 1))
	else
		echo "not ok - $name (log follows)"
		tail -n 80 "$log"
		steps_failed=$((steps_failed + 1))
		status=1
	fi
}
if [ "$quick" = no ]; then
	pkgdir=$build/pkg
	rm -rf "$pkgdir"
	step package-deb packaging/build-deb "$pkgdir"
	step package-rpm packaging/build-rpm "$pkgdir"
	deb=$(ls "$pkgdir"/echod_*.deb 2>/dev/null | grep -v dbgsym | head -n 1 || true)
	step system script -qefc "tests/system/run-system-test${deb:+ $(printf '%q' "$deb")}" /dev/null
	# The committed corpora first, then 40 s of fuzzing per parser.
	step fuzz tests/fuzz/run-fuzz --out "$build/fuzz"
	# Unit and integration suites under ASan+UBSan; the master under
	# valgrind through reloads and a drain (both built -Dsandbox=false).
	step sanitizers env BUILD_DIR="$build-asan" tests/sanitize/run-asan
	step valgrind env BUILD_DIR="$build-valgrind" tests/sanitize/run-valgrind
fi

# CI reads one summary line; meson's own summary is not in that form.
python3 - "$build/meson-logs/testlog.json" "$steps_passed" "$steps_failed" <<'PY' || status=1
import json, sys
counts = {"passed": int(sys.argv[2]), "failed": int(sys.argv[3]), "skipped": 0}
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            counts["passed"] += 1
        elif r == "SKIP":
            counts["skipped"] += 1
        else:
            counts["failed"] += 1
line = f"{counts['passed']} passed, {counts['failed']} failed"
if counts["skipped"]:
    line += f", {counts['skipped']} skipped"
print(line)
sys.exit(1 if counts["failed"] or counts["passed"] == 0 else 0)
PY
exit $status
