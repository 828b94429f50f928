#!/bin/sh
# Runs systemd-analyze verify on the units as built. verify insists that
# the programs a unit runs exist, and the units name the installed echod,
# which a build tree has not installed yet: the copies checked here name the
# built one instead, and nothing else is changed. Any message fails the test,
# since verify warns about an unknown setting but still exits 0.
# Usage: verify-units.sh BUILT_ECHOD INSTALLED_ECHOD UNIT...
set -eu
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "systemd-analyze is not installed" >&2
	exit 77
fi
built=$1
installed=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "$@"; do
	sed "s|$installed|$built|g" "$unit" >"$tmp/${unit##*/}"
done
grep -q "^ExecStart=$built\$" "$tmp"/*.service
rc=0
out=$(cd "$tmp" && systemd-analyze verify --man=no ./* 2>&1) || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
	printf '%s\n' "$out"
	echo "systemd-analyze verify: exit status $rc" >&2
	exit 1
fi
