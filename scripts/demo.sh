#!/usr/bin/env bash
# demo.sh — what `smartotp demo` runs: pcscd with the virtual reader, the virtual card, the
# system's user "nobody" enrolled on it in a temporary store (the module logs in only users
# the name service knows, and the demo adds none), and three real PAM logins through
# pamtester — a tap, the fallback to the simple password once the card is gone, and a
# wrong code refused. Everything it starts or writes is stopped and removed on exit.
#
# Environment: MODULE (pam_smartotp.so to load), TIMEOUT (seconds to wait for a tap),
# SMARTOTP and CARD_TOOL (the two programs; default: from PATH).
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
die() { echo "smartotp demo: $*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || die "run as root (it starts pcscd and writes a PAM service)"
SMARTOTP=${SMARTOTP:-$(command -v smartotp || true)}
CARD_TOOL=${CARD_TOOL:-$(command -v smartotp-card || true)}
TIMEOUT=${TIMEOUT:-5}
[ -x "$SMARTOTP" ] && [ -x "$CARD_TOOL" ] || die "smartotp and smartotp-card must be installed (./install.sh)"
MODULE=${MODULE:-$("$SMARTOTP" check --module-directory)/pam_smartotp.so}
for tool in pamtester pcscd unshare nsenter python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (./install.sh --demo installs what the demo needs)"
done
# A plain path: PAM module arguments are split at spaces.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/smartotp-demo.XXXXXX")
SERVICE=smartotp-demo-$$
source "$HERE/virtual-reader.sh"
cleanup() {
    stop_card
    stop_pcscd
    rm -f "/etc/pam.d/$SERVICE"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# login ANSWER…: pamtester on a pseudo-terminal, as at a console, answering each prompt
# when it appears: prompts and the module's messages come out in the order a person sees.
DEMO_USER=nobody
login() { python3 "$HERE/answer-prompts.py" "$@" -- pamtester -v "$SERVICE" "$DEMO_USER" authenticate; }

say "Step 0: a reader and a card"
start_pcscd
say "  started pcscd (pid $PCSCD_PID) with the vpcd driver, in a private network namespace"
start_card "$WORK/card.state"
say "  the virtual card is in the reader \"$VIRTUAL_READER\""
"$SMARTOTP" enroll "$DEMO_USER" --card --phone --reader "$VIRTUAL_READER" --store "$WORK/store" >/dev/null
echo 2468 | "$SMARTOTP" passwd "$DEMO_USER" --password-stdin --store "$WORK/store" >/dev/null
say "  enrolled user \"$DEMO_USER\" on the card (a tap credential and a phone one), simple password 2468, store $WORK/store (a temporary one)"
echo "auth required $MODULE store=$WORK/store timeout=$TIMEOUT reader=Virtual" >"/etc/pam.d/$SERVICE"
say "  PAM service /etc/pam.d/$SERVICE: $(cat "/etc/pam.d/$SERVICE")"

say ""
say "Step 1: log in with a tap (pamtester $SERVICE $DEMO_USER authenticate)"
login || die "the tap login failed"

say ""
say "Step 2: the card is taken away; after $TIMEOUT s the simple password is asked"
stop_card
login "" 2468 || die "the password fallback failed"

say ""
say "Step 3: a wrong one-time code is refused"
if login 123456; then die "a wrong code was accepted"; fi

say ""
say "Demo complete: tap accepted, password fallback accepted, wrong code refused. Cleaning up."
