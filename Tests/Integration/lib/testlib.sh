# Shared helpers for the integration suites: TAP-style results, private PAM services,
# cleanup on EXIT, and the card bench (scripts/virtual-reader.sh: a private pcscd with the
# vpcd driver and the virtual card). Source it; do not run it.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
BIN=${SMARTOTP_BIN:-$ROOT/.build/release}
WORK=$(mktemp -d /tmp/smartotp-it.XXXXXX)
chmod 700 "$WORK"
# What sshd and sudo load, built in Embedded Swift (scripts/build-embedded.sh).
EBIN=${SMARTOTP_EMBEDDED_BIN:-$ROOT/.build-embedded/release}
SO="$EBIN/libpam_smartotp.so"   # the module under test
HELPER="$EBIN/smartotp-chkotp"  # the setuid helper under test
H="$BIN/pam-harness"           # runs a PAM stack from $CONF with pam_start_confdir()
CLI="$BIN/smartotp"
STORE="$WORK/store"
CONF="$WORK/pam.d"
mkdir -p "$CONF"
PCSCD_PID=""
CARD_PID=""
CLEANUPS=()
T_PASS=0
T_FAIL=0

on_exit() {
    local rc=$?
    stop_card
    stop_pcscd
    local i
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[$i]}" || true; done
    rm -rf "$WORK"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Registers a command to run at exit (in reverse order).
at_exit() { CLEANUPS+=("$1"); }

# service NAME LINE…: writes a private PAM service into $CONF.
service() { local name=$1; shift; printf '%s\n' "$@" >"$CONF/$name"; }
# run SERVICE USER [harness args…]: one PAM transaction; sets OUT (the transcript) and RC.
run() { local s=$1 u=$2; shift 2; OUT=$("$H" --confdir "$CONF" --service "$s" --user "$u" "$@" 2>&1); RC=$?; }

ok() { T_PASS=$((T_PASS + 1)); echo "ok $((T_PASS + T_FAIL)) - $1"; }
not_ok() { T_FAIL=$((T_FAIL + 1)); echo "not ok $((T_PASS + T_FAIL)) - $1"; [ $# -gt 1 ] && printf '#   %s\n' "$2"; return 0; }

# check NAME EXPECTED ACTUAL
check() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected '$2', got '$3'"; fi
}

finish() {
    echo "# $T_PASS passed, $T_FAIL failed"
    [ "$T_FAIL" -eq 0 ]
}

die() { echo "bench: $*" >&2; exit 1; }

# pcscd, the virtual reader and the virtual card: the one card bench, shared with the demo.
CARD_TOOL="$BIN/smartotp-card"
SMARTOTP="$BIN/smartotp"
source "$ROOT/scripts/virtual-reader.sh"
