#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 checkout: installs what is
# missing (as root), builds with warnings as errors, runs every meson test and
# prints one line "N passed, N failed[, N skipped]". Exit status non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

deps=(meson ninja-build pkgconf gcc libc6-dev libsystemd-dev libinih-dev python3 systemd procps mandoc
      clang-format)
missing=()
for p in "${deps[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "run as root (or with sudo) to install them" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build=${BUILD_DIR:-build-test}
if [ -d "$build" ]; then
	meson setup --reconfigure "$build" -Dwerror=true
else
	meson setup "$build" -Dwerror=true
fi
ninja -C "$build"

status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?

# CI reads one summary line; meson's own summary is not in that form.
python3 - "$build/meson-logs/testlog.json" <<'PY' || status=1
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
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
