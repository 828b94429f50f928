#!/bin/sh
# Lints manual pages with mandoc at the warning level. Any message fails the
# test, whatever mandoc's exit status says.
# Usage: mandoc-lint.sh PAGE...
set -u
if ! command -v mandoc >/dev/null 2>&1; then
	echo "mandoc is not installed" >&2
	exit 77
fi
out=$(mandoc -T lint -W warning "$@" 2>&1)
rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
	printf '%s\n' "$out"
	echo "mandoc -T lint -W warning: exit status $rc" >&2
	exit 1
fi
