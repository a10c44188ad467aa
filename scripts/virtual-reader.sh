# virtual-reader.sh — a test fixture, not a benchmark: pcscd with the virtual reader driver and the virtual card, for the tests
# and for `smartotp demo`. Source it; do not run it. The one place this is done.
#
# pcscd runs in its own network namespace (Debian's vpcd binds 0.0.0.0:35963), and the
# virtual card joins that namespace, so nothing listens on the host's network. Clients
# reach pcscd through /run/pcscd/pcscd.comm as usual. pcscd 1.9.9 ignores
# PCSCLITE_CSOCK_NAME, so a pcscd this file did not start makes it refuse to start one.
#
# Needs: WORK (a private directory), CARD_TOOL (smartotp-card), SMARTOTP (smartotp),
# and a `die` function. Sets PCSCD_PID and CARD_PID; stop_card and stop_pcscd stop them
# by PID (never by name).

PCSCD_PID=${PCSCD_PID:-}
CARD_PID=${CARD_PID:-}
VIRTUAL_READER="Virtual PCD 00 00"

# The PIDs of pcscd processes this file did not start.
foreign_pcscd() {
    local p
    for p in $(pgrep -x pcscd || true); do
        [ "$p" = "$PCSCD_PID" ] && continue
        # Ours is a child of the unshare shell we started.
        [ -n "$PCSCD_PID" ] && [ "$(ps -o ppid= -p "$p" | tr -d ' ')" = "$PCSCD_PID" ] && continue
        echo "$p"
    done
}

# Starts pcscd (foreground, private network namespace) and waits for its socket.
start_pcscd() {
    [ -z "$(foreign_pcscd)" ] || die "a pcscd this did not start is running (pid $(foreign_pcscd | tr '\n' ' ')); stop it first"
    [ -e /etc/reader.conf.d/vpcd ] || die "vsmartcard-vpcd is not installed (apt-get install vsmartcard-vpcd)"
    if [ -e /run/pcscd/pcscd.comm ]; then
        if command -v systemctl >/dev/null && systemctl is-active --quiet pcscd.socket 2>/dev/null; then
            die "systemd's pcscd.socket owns /run/pcscd/pcscd.comm; stop it first (systemctl stop pcscd.socket)"
        fi
        rm -f /run/pcscd/pcscd.comm  # stale: no pcscd runs
    fi
    mkdir -p /run/pcscd
    unshare --net sh -c 'ip link set lo up && exec pcscd --foreground' >"$WORK/pcscd.log" 2>&1 &
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

# start_card STATEFILE [smartotp-card options]: puts the virtual card in the first reader.
start_card() {
    local state=$1; shift
    [ -n "$PCSCD_PID" ] || die "start_pcscd first"
    nsenter --net="/proc/$PCSCD_PID/ns/net" "$CARD_TOOL" --state "$state" "$@" 2>>"$WORK/card.log" &
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

# Waits (up to 5 s) until the first virtual reader shows a card (present) or none (empty).
wait_reader_state() {
    local want=$1 i
    for i in $(seq 1 100); do
        if "$SMARTOTP" card-status --reader "$VIRTUAL_READER" 2>/dev/null | grep -q "^$want"; then return 0; fi
        sleep 0.05
    done
    return 0
}
