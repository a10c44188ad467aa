#!/usr/bin/env bash
# build-debs.sh OUTDIR — builds the Debian packages (libpam-smartotp, smartotp,
# smartotp-fleet-client, smartotpd)
# from this working tree with `dpkg-buildpackage -b -us -uc` and puts the .deb files in
# OUTDIR. The tree is copied to .build-deb/src first (dpkg-buildpackage writes next to
# the source folder); the Swift scratch folders .build-deb/swift* are kept between runs.
# Needs the Swift 6 toolchain on PATH and the packages of debian/control's
# Build-Depends (./install.sh --deps-dev installs them). Environment: DEB_BUILD_OPTIONS
# as usual (the tests use noautodbgsym).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/private-tmp.sh
[ $# -eq 1 ] || { echo "usage: build-debs.sh OUTDIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
root=$(pwd)
version=$(scripts/version.sh)
base=$root/.build-deb
src=$base/src/smartotp-$version
rm -rf "$base/src"
mkdir -p "$src"
tar -C "$root" --exclude='./.build*' --exclude=./.git --exclude=./Fuzz/crashes -cf - . | tar -C "$src" -xf -
(cd "$src" && SMARTOTP_DEB_SCRATCH="$base/swift" with_private_tmp dpkg-buildpackage -b -us -uc)
mv "$base/src"/*.deb "$out"/
ls "$out"/*.deb
