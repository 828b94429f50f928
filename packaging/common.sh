# shellcheck shell=bash
# Shared by packaging/build-deb and packaging/build-rpm (sourced, not run).

# The top of the source tree, from this file's own location.
pkg_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

pkg_die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

# apt-get as root: itself when root, else through sudo (which asks on the
# terminal, not on stdin), as tests/deps does; a user without sudo is told
# what to run.
pkg_apt() {
	local as_root=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || pkg_die "not root and no sudo: run as root: apt-get $*"
		as_root=(sudo --)
	fi
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

# Install the Debian packages named that are missing (a fresh machine has
# none of the packaging tools).
pkg_need() {
	local p missing=()
	for p in "$@"; do
		[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = 'install ok installed' ] ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "installing: ${missing[*]}"
	pkg_apt update -q
	pkg_apt install -y -q --no-install-recommends "${missing[@]}"
}

# The version that meson.build's project() declares: the packages must agree.
pkg_version() {
	sed -n "s/^ *version: '\([^']*\)',\$/\1/p" "$pkg_top/meson.build" | head -n 1
}

# Copy the source tree as a commit of it would hold it, uncommitted edits
# included: the tracked and the untracked-but-not-ignored files, so no build
# directory, cache or .git comes along. Outside a git checkout (a release
# tarball) the tree is copied whole, less its build directories.
pkg_copy_tree() {
	local dest=$1 f
	mkdir -p "$dest"
	if git -C "$pkg_top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$pkg_top" ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do
				# A tracked file deleted in the work tree is not part of it.
				if [ -e "$pkg_top/$f" ] || [ -L "$pkg_top/$f" ]; then
					printf '%s\0' "$f"
				fi
			done |
			tar -C "$pkg_top" --null -T - -cf - | tar -C "$dest" -xf -
	else
		tar -C "$pkg_top" --exclude='./build*' -cf - . | tar -C "$dest" -xf -
	fi
}
