#!/bin/sh
# ensure-debian-packages.sh - install the Debian packages the test harness needs.
#
# Usage: scripts/ensure-debian-packages.sh PACKAGE [PACKAGE...]
#
# Idempotent: packages that are already installed are left alone.  Only when
# something is missing does it run `apt-get update` (once) and then
# `apt-get install -y --no-install-recommends` for the missing packages.
# Uses sudo only when not running as root.  Prints one line per action and
# exits non-zero with a clear message when it cannot finish.
#
# Example (from the Makefile):
#   scripts/ensure-debian-packages.sh postgresql prometheus \
#       prometheus-alertmanager chromium nginx-light iptables iproute2
set -eu

me=$(basename "$0")

die() {
    echo "$me: error: $*" >&2
    exit 1
}

if [ "$#" -eq 0 ]; then
    echo "usage: $me PACKAGE [PACKAGE...]" >&2
    exit 2
fi

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found; this script needs Debian/Ubuntu"

is_installed() {
    status=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) || return 1
    [ "$status" = "installed" ]
}

missing=""
for pkg in "$@"; do
    case "$pkg" in
        -*|*[!A-Za-z0-9.+:-]*) die "invalid package name '$pkg'" ;;
    esac
    if is_installed "$pkg"; then
        echo "$me: ok: $pkg is already installed"
    else
        echo "$me: missing: $pkg"
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "$me: all $# package(s) present, nothing to do"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    die "not root and sudo is not available; install as root:$missing"
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found; cannot install:$missing"

export DEBIAN_FRONTEND=noninteractive

echo "$me: running apt-get update"
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q \
    || die "apt-get update failed (is a package mirror reachable?)"

echo "$me: installing:$missing"
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $missing \
    || die "apt-get install failed for:$missing"

still=""
for pkg in $missing; do
    if is_installed "$pkg"; then
        echo "$me: installed: $pkg"
    else
        still="$still $pkg"
    fi
done
[ -z "$still" ] || die "still not installed after apt-get install:$still"
echo "$me: done"
