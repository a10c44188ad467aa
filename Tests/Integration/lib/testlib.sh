# Shared helpers for the integration suites: TAP-style results, private PAM services,
# cleanup on EXIT, and the card bench (scripts/virtual-reader.sh: a private pcscd with the
# vpcd driver and the virtual card). Source it; do not run it.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
BIN=${SMARTOTP_BIN:-$ROOT/.build/release}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/smartotp-it.XXXXXX")
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
T_SKIP=0

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

# backup FILE: restores FILE on exit (or removes it if it did not exist). The copy is kept
# outside WORK, under BACKUPS/PID, until it is restored: a run killed before its EXIT trap
# (SIGKILL, a power cut) would otherwise leave /etc/pam.d/sudo or su pointing at a store
# that is gone, and the next suite to start (restore_leftovers below) puts back what a run
# no longer alive left there.
BACKUPS=/var/lib/smartotp-tests/backups
backup() {
    local f=$1 b
    b="$BACKUPS/$$/$(echo "$1" | sed 's|/|%|g')"
    mkdir -p -m 700 "$BACKUPS/$$"
    if [ -e "$f" ]; then cp -p "$f" "$b"; else : >"$b.absent"; fi
    at_exit "restore_backup '$f' '$b'"
}
# restore_backup FILE COPY: FILE as it was (the copy back, or removed if it did not exist).
restore_backup() {
    if [ -e "$2" ]; then cp -p "$2" "$1" && rm -f "$2"; elif [ -e "$2.absent" ]; then rm -f "$1" "$2.absent"; fi
    rmdir "$(dirname "$2")" "$BACKUPS" "$(dirname "$BACKUPS")" 2>/dev/null || true
}
restore_leftovers() {
    local d b f
    [ -d "$BACKUPS" ] || return 0
    for d in "$BACKUPS"/*/; do
        [ -d "$d" ] || continue
        kill -0 "$(basename "$d")" 2>/dev/null && continue  # a run still going
        for b in "$d"*; do
            [ -e "$b" ] || continue
            b=${b%.absent}
            f=$(basename "$b" | sed 's|%|/|g')
            echo "# restoring $f, left changed by a run that was killed"
            restore_backup "$f" "$b"
        done
        rmdir "$d" 2>/dev/null || true
    done
}
restore_leftovers
# public_dir: sets PUB, a folder the test users can read (not under a nosuid /tmp: the
# setuid helper's copy goes there), and STORE, a record store (0700) in it; removed on exit.
public_dir() {
    PUB=$(mktemp -d /usr/local/lib/smartotp-test.XXXXXX)
    chmod 755 "$PUB"
    at_exit "rm -rf '$PUB'"
    STORE="$PUB/store"
    mkdir -m 700 "$STORE"
}
# add_user NAME: a real user with a home and no password, removed on exit once none of
# its processes is left (a screen locker's take a moment to go).
add_user() {
    id "$1" >/dev/null 2>&1 && die "user $1 exists already; remove it first"
    useradd -m -s /bin/sh "$1" && usermod -p '*' "$1"
    at_exit "for _w in \$(seq 1 50); do pgrep -u '$1' >/dev/null || break; sleep 0.1; done; userdel -r '$1' 2>/dev/null || userdel '$1'"
}

# service NAME LINE…: writes a private PAM service into $CONF.
service() { local name=$1; shift; printf '%s\n' "$@" >"$CONF/$name"; }
# The name service of this run's PAM transactions. The module refuses a user the name
# service does not know, or spells otherwise (PAM_USER_UNKNOWN), so the suites' users are
# made to resolve, without touching /etc/passwd: nss_wrapper with a passwd file of this
# run's own (/etc/passwd's entries, and each test user as it is first used).
NSS_WRAPPER_LIB=$(for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
    [ -e "$d/libnss_wrapper.so" ] && echo "$d/libnss_wrapper.so" && break; done)
mkdir -p "$WORK/nss"
cp /etc/passwd "$WORK/nss/passwd"; cp /etc/group "$WORK/nss/group"
chmod 755 "$WORK/nss"; chmod 644 "$WORK/nss/passwd" "$WORK/nss/group"
# nss_user NAME…: NAME resolves in with_nss (names of other shapes are left to fail)
nss_user() {
    local u
    for u in "$@"; do
        case $u in ''|[!A-Za-z0-9_]*|*[!A-Za-z0-9._-]*) continue;; esac
        grep -q "^$u:" "$WORK/nss/passwd" || echo "$u:x:$((40000 + $(wc -l <"$WORK/nss/passwd"))):65534::/nonexistent:/usr/sbin/nologin" >>"$WORK/nss/passwd"
    done
}
# with_nss COMMAND…: COMMAND with this run's name service (libnss-wrapper)
with_nss() {
    [ -n "$NSS_WRAPPER_LIB" ] || { echo "libnss-wrapper is missing (./install.sh --deps-dev)" >&2; return 97; }
    LD_PRELOAD="$NSS_WRAPPER_LIB${LD_PRELOAD:+:$LD_PRELOAD}" NSS_WRAPPER_PASSWD="$WORK/nss/passwd" NSS_WRAPPER_GROUP="$WORK/nss/group" "$@"
}
# The same as words for a command that sets no environment of its own (ip netns exec …).
NSS_ENV=(env "LD_PRELOAD=$NSS_WRAPPER_LIB" "NSS_WRAPPER_PASSWD=$WORK/nss/passwd" "NSS_WRAPPER_GROUP=$WORK/nss/group")
# run SERVICE USER [harness args…]: one PAM transaction; sets OUT (the transcript) and RC.
run() { local s=$1 u=$2; shift 2; nss_user "$u"; OUT=$(with_nss "$H" --confdir "$CONF" --service "$s" --user "$u" "$@" 2>&1); RC=$?; }

ok() { T_PASS=$((T_PASS + 1)); echo "ok $((T_PASS + T_FAIL)) - $1"; }
# skip NAME WHY: a check that could not run here; counted and printed by run-all, never a pass.
skip() { T_SKIP=$((T_SKIP + 1)); echo "skip - $1: $2"; }
not_ok() { T_FAIL=$((T_FAIL + 1)); echo "not ok $((T_PASS + T_FAIL)) - $1"; [ $# -gt 1 ] && printf '#   %s\n' "$2"; return 0; }

# check NAME EXPECTED ACTUAL
check() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected '$2', got '$3'"; fi
}

finish() {
    echo "# $T_PASS passed, $T_FAIL failed, $T_SKIP skipped"
    [ "$T_FAIL" -eq 0 ]
}

die() { echo "bench: $*" >&2; exit 1; }

# pcscd, the virtual reader and the virtual card: the one card bench, shared with the demo.
CARD_TOOL="$BIN/smartotp-card"
SMARTOTP="$BIN/smartotp"
source "$ROOT/scripts/virtual-reader.sh"
