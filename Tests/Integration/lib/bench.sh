# Shared helpers for the integration suites: a private pcscd with the vpcd driver,
# the virtual card, TAP-style results, and cleanup on EXIT. Source it; do not run it.
#
# pcscd runs in its own network namespace (vpcd binds 0.0.0.0:35963), and the virtual
# card joins that namespace, so nothing listens on the host's network. Clients reach
# pcscd through /run/pcscd/pcscd.comm as usual. pcscd 1.9.9 ignores
# PCSCLITE_CSOCK_NAME, so a pcscd we did not start makes the bench refuse to run.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
BIN=${SMARTOTP_BIN:-$ROOT/.build/release}
WORK=$(mktemp -d /tmp/smartotp-it.XXXXXX)
chmod 700 "$WORK"
SO="$BIN/libpam_smartotp.so"   # the module under test
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

foreign_pcscd() {
    local p
    for p in $(pgrep -x pcscd || true); do
        [ "$p" = "$PCSCD_PID" ] && continue
        # Our pcscd is a child of the unshare shell we started.
        [ -n "$PCSCD_PID" ] && [ "$(ps -o ppid= -p "$p" | tr -d ' ')" = "$PCSCD_PID" ] && continue
        echo "$p"
    done
}

# Starts pcscd (foreground, private netns); waits for its socket.
start_pcscd() {
    [ -z "$(foreign_pcscd)" ] || die "a pcscd this bench did not start is running (pid $(foreign_pcscd | tr '\n' ' ')); stop it first"
    [ -e /etc/reader.conf.d/vpcd ] || die "vsmartcard-vpcd is not installed (apt-get install vsmartcard-vpcd)"
    if [ -e /run/pcscd/pcscd.comm ]; then
        if command -v systemctl >/dev/null && systemctl is-active --quiet pcscd.socket 2>/dev/null; then
            die "systemd's pcscd.socket owns /run/pcscd/pcscd.comm; stop it first (systemctl stop pcscd.socket)"
        fi
        rm -f /run/pcscd/pcscd.comm  # stale: no pcscd runs
    fi
    mkdir -p /run/pcscd
    unshare --net sh -c 'ip link set lo up && exec pcscd --foreground' \
        >"$WORK/pcscd.log" 2>&1 &
    PCSCD_PID=$!
    local i
    for i in $(seq 1 100); do
        [ -S /run/pcscd/pcscd.comm ] && [ -e "/proc/$PCSCD_PID/ns/net" ] && break
        sleep 0.05
    done
    [ -S /run/pcscd/pcscd.comm ] || die "pcscd did not start: $(cat "$WORK/pcscd.log")"
    # Give vpcd a moment to open its listening socket.
    sleep 0.3
}

stop_pcscd() {
    [ -n "$PCSCD_PID" ] || return 0
    kill "$PCSCD_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do kill -0 "$PCSCD_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$PCSCD_PID" 2>/dev/null || true
    wait "$PCSCD_PID" 2>/dev/null || true
    PCSCD_PID=""
}

# start_card STATEFILE [extra args]: puts the virtual card in the first reader.
start_card() {
    local state=$1; shift
    [ -n "$PCSCD_PID" ] || die "start_pcscd first"
    nsenter --net="/proc/$PCSCD_PID/ns/net" "$BIN/smartotp-card" --state "$state" "$@" 2>>"$WORK/card.log" &
    CARD_PID=$!
    wait_reader_state present
}

stop_card() {
    [ -n "$CARD_PID" ] || return 0
    kill "$CARD_PID" 2>/dev/null || true
    wait "$CARD_PID" 2>/dev/null || true
    CARD_PID=""
    [ -n "$PCSCD_PID" ] && wait_reader_state empty
    return 0
}

# Waits until the first virtual reader shows a card (present) or none (empty).
wait_reader_state() {
    local want=$1 i
    for i in $(seq 1 100); do
        if "$BIN/smartotp" card-status --reader "Virtual PCD 00 00" 2>/dev/null | grep -q "^$want"; then return 0; fi
        sleep 0.05
    done
    return 0
}
