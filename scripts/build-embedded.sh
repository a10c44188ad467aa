#!/usr/bin/env bash
# build-embedded.sh — builds what sshd and sudo load, in Embedded Swift: the PAM module
# (.build-embedded/release/libpam_smartotp.so) and the setuid helper
# (.build-embedded/release/smartotp-chkotp). Same sources and manifest as the normal
# build, switched by SMARTOTP_EMBEDDED=1, in a scratch folder of its own
# (SMARTOTP_EMBEDDED_SCRATCH, default .build-embedded; debian/rules names another).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/private-tmp.sh
swiftc=$(command -v swiftc) || { echo "build-embedded.sh: swiftc is not on PATH" >&2; exit 1; }
toolchain=$(dirname "$(dirname "$(readlink -f "$swiftc")")")
libdir="$toolchain/lib/swift/embedded/$(uname -m)-unknown-linux-gnu"
[ -f "$libdir/libswiftUnicodeDataTables.a" ] || { echo "build-embedded.sh: no Embedded Swift libraries in $libdir" >&2; exit 1; }
export SMARTOTP_EMBEDDED=1 SMARTOTP_EMBEDDED_LIBDIR="$libdir"
for product in pam_smartotp smartotp-chkotp; do
    with_private_tmp swift build -c release --scratch-path "${SMARTOTP_EMBEDDED_SCRATCH:-.build-embedded}" --product "$product" "$@"
done
