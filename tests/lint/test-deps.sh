#!/bin/sh
# tests/deps and packaging/common.sh's pkg_need as root and as a user with
# and without sudo, and run-all.sh's hand-over to sudo: dpkg-query,
# apt-get, sudo and id are stand-ins on PATH that say what would have run,
# so nothing is installed for real.
# usage: test-deps.sh TOP
set -eu
top=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$tmp/bin
mkdir "$bin"
fails=0

# dpkg-query: every package installed, except those listed in $MISSING.
cat >"$bin/dpkg-query" <<'SH'
#!/bin/sh
for p; do :; done
case " $MISSING " in *" $p "*) exit 1 ;; esac
printf 'install ok installed'
SH
cat >"$bin/apt-get" <<'SH'
#!/bin/sh
echo "apt-get uid=$(id -u) $*" >>"$LOG"
SH
cat >"$bin/sudo" <<'SH'
#!/bin/sh
echo "sudo $*" >>"$LOG"
[ "$1" = -- ] && shift
FAKE_UID=0 exec "$@"
SH
cat >"$bin/id" <<'SH'
#!/bin/sh
echo "${FAKE_UID:-0}"
SH
chmod +x "$bin"/*

check() { # name, expected, got
	if [ "$2" = "$3" ]; then
		echo "ok - $1"
	else
		printf 'not ok - %s\n  want: %s\n  got:  %s\n' "$1" "$2" "$3"
		fails=$((fails + 1))
	fi
}
run() { # FAKE_UID, MISSING, PATH, args...: "rc: log"
	uid=$1 missing=$2 path=$3
	shift 3
	: >"$tmp/log"
	rc=0
	FAKE_UID=$uid MISSING=$missing LOG=$tmp/log PATH=$path \
		"$top/tests/deps" "$@" >"$tmp/out" 2>&1 || rc=$?
	echo "$rc: $(tr '\n' ';' <"$tmp/log")"
}
nosudo=$tmp/nosudo
mkdir "$nosudo"
for c in dpkg-query apt-get id; do ln -s "$bin/$c" "$nosudo/$c"; done
for c in bash env grep mkdir cat tr; do ln -s "$(command -v $c)" "$nosudo/$c"; done

check "nothing missing: no apt-get, no sudo" "0: " "$(run 1000 '' "$bin:/usr/bin:/bin")"
check "root installs with apt-get itself" \
	"0: apt-get uid=0 update -q;apt-get uid=0 install -y -q --no-install-recommends libinih-dev;" \
	"$(run 0 libinih-dev "$bin:/usr/bin:/bin")"
check "a user installs through sudo" \
	"0: sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q;apt-get uid=0 update -q;sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends meson;apt-get uid=0 install -y -q --no-install-recommends meson;" \
	"$(run 1000 meson "$bin:/usr/bin:/bin")"
check "--test adds the test packages" \
	"0: apt-get uid=0 update -q;apt-get uid=0 install -y -q --no-install-recommends mandoc;" \
	"$(run 0 mandoc "$bin:/usr/bin:/bin" --test)"
check "without --test the test packages are not asked for" "0: " "$(run 0 mandoc "$bin:/usr/bin:/bin")"
check "a user without sudo is told what to install" "1: " "$(run 1000 meson "$nosudo")"
grep -q "not root and no sudo: install these as root: meson" "$tmp/out" ||
	{ echo "not ok - the message names the packages: $(cat "$tmp/out")"; fails=$((fails + 1)); }
check "a bad option is a usage error" "64: " "$(run 0 '' "$bin:/usr/bin:/bin" --bogus)"

# packaging/build-deb and build-rpm install what they miss the same way
# (packaging/common.sh's pkg_need): a user with sudo is not sent away.
pkg() { # FAKE_UID, MISSING, PATH, packages...: "rc: log"
	uid=$1 missing=$2 path=$3
	shift 3
	: >"$tmp/log"
	rc=0
	FAKE_UID=$uid MISSING=$missing LOG=$tmp/log PATH=$path \
		bash -c '. "$0"/packaging/common.sh && pkg_need "$@"' "$top" "$@" >"$tmp/out" 2>&1 || rc=$?
	echo "$rc: $(tr '\n' ';' <"$tmp/log")"
}
check "packaging: root installs with apt-get itself" \
	"0: apt-get uid=0 update -q;apt-get uid=0 install -y -q --no-install-recommends lintian;" \
	"$(pkg 0 lintian "$bin:/usr/bin:/bin" dpkg-dev lintian)"
check "packaging: a user installs through sudo" \
	"0: sudo -- env DEBIAN_FRONTEND=noninteractive apt-get update -q;apt-get uid=0 update -q;sudo -- env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends lintian;apt-get uid=0 install -y -q --no-install-recommends lintian;" \
	"$(pkg 1000 lintian "$bin:/usr/bin:/bin" dpkg-dev lintian)"
check "packaging: nothing missing, no apt-get" "0: " "$(pkg 1000 '' "$bin:/usr/bin:/bin" dpkg-dev)"
for c in dirname; do ln -s "$(command -v $c)" "$nosudo/$c"; done
check "packaging: a user without sudo is told what to run" "1: " "$(pkg 1000 lintian "$nosudo" lintian)"
grep -q "not root and no sudo: run as root: apt-get update -q" "$tmp/out" ||
	{ echo "not ok - the message says what to run: $(cat "$tmp/out")"; fails=$((fails + 1)); }

# run-all.sh as a user hands itself to sudo, arguments and BUILD_DIR kept
# (the stand-in sudo only records: it does not run the suite).
cat >"$bin/sudo" <<'SH'
#!/bin/sh
echo "sudo $*" >>"$LOG"
SH
: >"$tmp/log"
FAKE_UID=1000 LOG=$tmp/log BUILD_DIR=b1 PATH="$bin:/usr/bin:/bin" \
	bash "$top/tests/run-all.sh" --quick --suite unit >/dev/null 2>&1 </dev/null || true
check "run-all.sh as a user runs itself through sudo" \
	"sudo -- env BUILD_DIR=b1 $top/tests/run-all.sh --quick --suite unit;" "$(tr '\n' ';' <"$tmp/log")"

[ "$fails" -eq 0 ]
