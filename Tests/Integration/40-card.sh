#!/usr/bin/env bash
# The card side against a real pcscd with vsmartcard's vpcd driver and the virtual card:
# ykman as an independent YKOATH client, enrolment, and PAM logins by tap — with the
# card removed, a wrong card, a protected applet, touch, no reader, and pcscd stopped.
source "$(dirname "$0")/lib/testlib.sh"

READER="Virtual PCD 00 00"
has() { case "$OUT" in *"$1"*) ok "$2";; *) not_ok "$2" "$(echo "$OUT" | tr '\n' '|')";; esac; }
ykman_() { timeout 30 ykman --reader "$READER" oath "$@"; }

ARGS="store=$STORE reader=Virtual deny=10"
service tap "auth required $SO $ARGS timeout=5"
service quick "auth required $SO $ARGS timeout=2"
service codeonly "auth required $SO $ARGS methods=code"
service noreader "auth required $SO store=$STORE reader=NoSuchReader timeout=2"

start_pcscd
status=$("$CLI" card-status --reader "$READER")
check "pcscd with vpcd: the virtual reader is there, empty" "empty $READER" "$status"

# ykman, a real YKOATH client, against the virtual card.
start_card "$WORK/card-a.state"
check "the card is in the reader" "present $READER" "$("$CLI" card-status --reader "$READER")"
ykman_ accounts add -f yk-test JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP >/dev/null 2>&1
check "ykman oath accounts add / list" "yk-test" "$(ykman_ accounts list 2>/dev/null)"
ours=$(ykman_ accounts code yk-test 2>/dev/null | awk '{print $NF}')
theirs=$(oathtool --totp -b JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP)
check "ykman oath accounts code matches oathtool" "$theirs" "$ours"

# Enrol alice on card A with a phone credential too (the card's codes to type over SSH); a
# tap logs her in.
"$CLI" enroll alice --force --card --phone --reader "$READER" --store "$STORE" >/dev/null 2>&1
check "smartotp enroll --card --phone writes a tap credential and a phone credential (ykman sees both)" "1 1" \
    "$(ykman_ accounts list 2>/dev/null | grep -c '^smartotp-tap:alice@') $(ykman_ accounts list 2>/dev/null | grep -c '^smartotp:alice@')"
echo 2468 | "$CLI" passwd alice --force --store "$STORE" --password-stdin >/dev/null
secret=$(sed -n 's/.*kind=card .*secret=\([A-Z2-7]*\) .*/\1/p' "$STORE/users/alice")
cardcode=$(ykman_ accounts code "smartotp-tap:alice" 2>/dev/null | awk '{print $NF}')
check "the card's code for the tap credential matches oathtool with the recorded secret" "$(oathtool --totp -b "$secret")" "$cardcode"
grep -q 'kind=card .* codes=0' "$STORE/users/alice" && ok "… recorded as answering taps only (codes=0)" || not_ok "the tap credential is tap-only" "$(cat "$STORE/users/alice")"

run tap alice
check "a tap logs in with no prompt (PAM_SUCCESS)" 0 "$RC"
has "info: Tap your card on the reader (5 s)..." "the user is told to tap, with the seconds"
check "no prompt was shown for a tap" 0 "$(echo "$OUT" | grep -c '^prompt:')"
run tap alice
check "a second tap right away works too (fresh challenge, no replay window)" 0 "$RC"

# A window (PAM_TTY ":0", as xscreensaver sets it): one conversation call, message and
# prompt together; Enter with the card on the reader logs in (62-graphical: the real locker).
run tap alice --tty :0 --answer ""
check "as a window: the card held there and Enter logs in" 0 "$RC"
check "… asked in one call: the message, then the short prompt" "info: Hold your card on the reader and press Enter,|or type your one-time code.|prompt: Code:" \
    "$(echo "$OUT" | grep -v '^authenticate' | tr '\n' '|' | sed 's/|$//')"
service tapastext "auth required $SO $ARGS timeout=5 prompts=text"
run tapastext alice --tty :0
check "prompts=text under an X display: the terminal's tap, no prompt" 0 "$RC"
has "info: Tap your card on the reader (5 s)..." "… with the terminal's message"

# A host that asks the card for time steps during a tap gets codes of the tap credential:
# typed at a prompt they log nobody in (the attack: the coming steps as challenges).
for step in 0 1 2; do
    stepcode=$(oathtool --totp -b "$secret" --now "@$(( $(date +%s) + step * 30 ))")
    run codeonly alice --answer "$stepcode"
    [ "$RC" = 0 ] && break
done
check "a code of the tap credential, now or in the coming steps, is refused at the prompt" 7 "$RC"
"$CLI" unlock alice --store "$STORE" >/dev/null
# The phone path: the phone credential's code (its own secret) read from the card and typed.
phonecode=$(ykman_ accounts code "smartotp:alice" 2>/dev/null | awk '{print $NF}')
run codeonly alice --answer "$phonecode"
check "the phone credential's code, read from the card, logs in at the prompt" 0 "$RC"
"$CLI" enroll dave --force --card --reader "$READER" --store "$STORE" >/dev/null 2>&1
check "enroll --card without --phone writes no phone credential" "1 0" \
    "$(ykman_ accounts list 2>/dev/null | grep -c '^smartotp-tap:dave@') $(ykman_ accounts list 2>/dev/null | grep -c '^smartotp:dave@')"
out=$("$CLI" enroll erin --force --card --qr --reader "$READER" --store "$STORE" 2>&1); rc=$?
case "$rc $out" in 64*"never leave the card"*) ok "no QR code (nor URI) of a card's secret";; *) not_ok "--card --qr is refused" "$rc $out";; esac

# Card removed: the tap times out, then code → simple password.
stop_card
run quick alice --answer "" --answer 2468
check "no tap in time: fallback to the simple password (PAM_SUCCESS)" 0 "$RC"
has "info: No card was presented." "the user is told no card came"
run quick alice --tty :0 --answer "" --answer "" --answer 2468
check "as a window, Enter with no card: code, then the simple password (PAM_SUCCESS)" 0 "$RC"
has "info: No card was on the reader." "… said with the code prompt"

# A card pulled away mid-exchange: typed error, fallback, host survives.
start_card "$WORK/card-a.state" --vanish-after 1
run quick alice --answer "" --answer 2468
check "card removed mid-exchange: fallback to the password (PAM_SUCCESS)" 0 "$RC"
has "could not be used" "the removal is explained"
stop_card

# A card that answers garbage.
start_card "$WORK/card-a.state" --garbage
run quick alice --answer "" --answer 2468
check "a card answering garbage: fallback, no crash (PAM_SUCCESS)" 0 "$RC"
stop_card

# Another card (a different device id) is refused, whatever credential it holds.
start_card "$WORK/card-b.state"
ykman_ accounts add -f "smartotp-tap:alice@$(hostname -s)" "$secret" >/dev/null 2>&1
run quick alice --answer "" --answer 2468
check "another card with a copied credential is not accepted as a tap" 0 "$RC"
has "not your enrolled card" "the wrong card is named"
stop_card

# An access-code-protected applet: enrolment asks for the code; taps use the stored key.
start_card "$WORK/card-c.state"
ykman_ access change -n "open sesame" >/dev/null 2>&1
echo "open sesame" | "$CLI" enroll bob --force --card --reader "$READER" --card-password-stdin --store "$STORE" >/dev/null 2>&1
check "enrolment on a protected applet records the access key" 1 "$(grep -c 'access-key=[0-9a-f]\{32\}' "$STORE/users/bob")"
run tap bob
check "a tap on a protected applet (SELECT, VALIDATE, CALCULATE) logs in" 0 "$RC"
stop_card

# Touch-required credential: no touch → fallback; touch → in.
start_card "$WORK/card-d.state" --touch yes
"$CLI" enroll carol --force --card --touch --reader "$READER" --store "$STORE" >/dev/null 2>&1
echo 1357 | "$CLI" passwd carol --force --store "$STORE" --password-stdin >/dev/null
run tap carol
check "touch-required credential, touched: PAM_SUCCESS" 0 "$RC"
has "info: Touch your key..." "the user is asked to touch"
stop_card
start_card "$WORK/card-d.state" --touch no
run quick carol --answer 1357   # her card answers taps only: no code prompt, the password next
check "touch-required credential, no touch in time: fallback (PAM_SUCCESS)" 0 "$RC"
has "not touched in time" "the missing touch is explained"

# No matching reader: straight to the code prompt.
run noreader alice --answer "" --answer 2468
check "no matching reader: the tap is skipped (PAM_SUCCESS by password)" 0 "$RC"
check "no tap message without a reader" 0 "$(echo "$OUT" | grep -c 'Tap your card')"
stop_card

# pcscd not running: code and password still work.
stop_pcscd
run tap alice --answer "" --answer 2468
check "pcscd down: falls through to the simple password (PAM_SUCCESS)" 0 "$RC"
"$CLI" card-status >/dev/null 2>&1
check "smartotp card-status says pcscd is down (exit 1)" 1 "$?"

# The README's main job: `smartotp demo` (its own pcscd, card, store and PAM service) ends
# with its three logins as promised, and leaves no service behind.
OUT=$(timeout 120 "$CLI" demo --module "$SO" --script "$ROOT/scripts/demo.sh" 2>&1); RC=$?
check "smartotp demo: tap, password fallback, wrong code refused (exit 0)" 0 "$RC"
has "Demo complete" "… and says so"
check "the demo removes its PAM service" 0 "$(ls /etc/pam.d | grep -c '^smartotp-demo-')"
finish
