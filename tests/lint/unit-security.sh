#!/bin/sh
# Scores the service's sandbox as "systemd-analyze security" does on a
# running system, and fails above 2.0 ("OK" ends there).
# Usage: unit-security.sh SERVICE
set -eu
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "systemd-analyze is not installed" >&2
	exit 77
fi
# The threshold is in tenths of the exposure level.
exec systemd-analyze security --no-pager --offline=yes --threshold=20 "$1"
