#!/bin/sh
# Applies the sysusers.d entry to an empty root, as the package will on the
# real one, and checks that it makes a system user and group "echod" that
# cannot log in.
# Usage: sysusers.sh SYSUSERS_CONF
set -eu
if ! command -v systemd-sysusers >/dev/null 2>&1; then
	echo "systemd-sysusers is not installed" >&2
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/etc"
systemd-sysusers --root="$tmp" "$1"
cat "$tmp/etc/passwd" "$tmp/etc/group"
awk -F: '$1 == "echod" && $3 < 1000 && $7 ~ /nologin$/ { found = 1 } END { exit !found }' \
	"$tmp/etc/passwd"
awk -F: '$1 == "echod" && $3 < 1000 { found = 1 } END { exit !found }' "$tmp/etc/group"
