#!/usr/bin/env bash
# pam_smartotp in a window, as a person sees it: xscreensaver 6 locks an Xvfb screen, its
# unlock dialog runs the real PAM stack as the user (through the setuid helper), and the
# virtual card is held to the virtual reader. xdotool presses the keys; every step is a
# screenshot (PNG), and what the dialog says is read back from the picture with tesseract.
#
# Artefacts: the screenshots stay in $SMARTOTP_ARTEFACTS/62-graphical (default
# .build/artefacts/62-graphical); docs/images/xscreensaver-tap.png is the first of them.
#
# System files this suite changes, each restored or removed on exit (also on failure):
# /etc/pam.d/xscreensaver (backed up, then our stack), /etc/smartotp/smartotp.conf (the
# helper's policy), the test user smartotp-g1 (and its home), /usr/local/lib/smartotp-test.*
# (the setuid helper copy). Xvfb listens on no TCP port and is stopped by PID, and so is
# xscreensaver (its whole process group).
source "$(dirname "$0")/lib/testlib.sh"

for cmd in Xvfb xscreensaver xscreensaver-command xdotool import tesseract xauth mcookie; do
    command -v "$cmd" >/dev/null || die "$cmd is missing (./install.sh --deps-dev)"
done
CONVERT=/usr/bin/convert   # ImageMagick's (a program of another name may come first in PATH)
ART=${SMARTOTP_ARTEFACTS:-$ROOT/.build/artefacts}/62-graphical
rm -rf "$ART" && mkdir -p "$ART"

U=smartotp-g1
S_TYPED=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP S_AFTER=ONSWG4TFORPWK6DQONSWG4TFORPWK6DQ   # one code token per phase: no TOTP-step waits
READER="Virtual PCD 00 00"
public_dir
add_user "$U"
HOME_U=$(getent passwd "$U" | cut -d: -f6)

install -o root -g root -m 4755 "$HELPER" "$PUB/smartotp-chkotp"
install -m 644 "$SO" "$PUB/pam_smartotp.so"
backup /etc/smartotp/smartotp.conf
mkdir -p /etc/smartotp
printf 'store=%s\ndeny=3\nunlock_time=600\n' "$STORE" >/etc/smartotp/smartotp.conf
backup /etc/pam.d/xscreensaver
# No prompts= here: the module sees xscreensaver's PAM_TTY (":N") and asks as a window.
printf '%s\n' "auth required $PUB/pam_smartotp.so helper=$PUB/smartotp-chkotp timeout=10 reader=Virtual" \
    "account required $PUB/pam_smartotp.so" >/etc/pam.d/xscreensaver
for s in $S_TYPED $S_AFTER; do "$CLI" enroll "$U" --force --store "$STORE" --secret "$s" >/dev/null || die "enroll $U"; done
echo 2468 | "$CLI" passwd "$U" --force --store "$STORE" --password-stdin >/dev/null

start_pcscd
start_card "$WORK/card.state"
"$CLI" enroll "$U" --force --card --reader "$READER" --store "$STORE" >/dev/null 2>&1 || die "card enrolment failed"
stop_card

# ---- the screen: Xvfb with a cookie only the user and root hold ---------------------------
XA="$HOME_U/.Xauthority"
# A display number no other X server holds (its lock file and socket are in /tmp).
for n in $(seq 70 99); do [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ] || break; done
D=":$n"
xauth -q -f "$XA" add "$D" . "$(mcookie)" 2>/dev/null && chown "$U:" "$XA" && chmod 600 "$XA"
Xvfb "$D" -screen 0 1024x768x24 -nolisten tcp -auth "$XA" >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
at_exit "kill $XVFB_PID 2>/dev/null; wait $XVFB_PID 2>/dev/null"
x() { DISPLAY=$D XAUTHORITY=$XA "$@"; }
for i in $(seq 1 100); do x xdotool getdisplaygeometry >/dev/null 2>&1 && break; sleep 0.05; done

# ---- xscreensaver as the user: blank screen, no fading, lock on demand ----------------------
printf '%s\n' 'mode: blank' 'fade: False' 'unfade: False' 'splash: False' 'lock: True' 'timeout: 1:00:00' \
    'passwdTimeout: 0:01:00' 'dpmsEnabled: False' >"$HOME_U/.xscreensaver"
chown "$U:" "$HOME_U/.xscreensaver"
LOG="$WORK/xscreensaver.log"
setsid runuser -u "$U" -- env DISPLAY="$D" XAUTHORITY="$XA" HOME="$HOME_U" xscreensaver -no-splash -verbose >"$LOG" 2>&1 &
XSS_PID=$!
at_exit "kill -- -$XSS_PID 2>/dev/null; wait $XSS_PID 2>/dev/null"
as_u() { runuser -u "$U" -- env DISPLAY="$D" XAUTHORITY="$XA" HOME="$HOME_U" "$@"; }
for i in $(seq 1 100); do as_u xscreensaver-command -time >/dev/null 2>&1 && break; sleep 0.1; done

# waits (up to $2 s) until xscreensaver's log holds $1 more than $3 times
wait_log() {
    local i
    for i in $(seq 1 $(($2 * 10))); do
        [ "$(grep -c -- "$1" "$LOG")" -gt "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
locked() { as_u xscreensaver-command -time 2>&1 | grep -q "screen locked"; }
# waits (up to 10 s) until the screen is unlocked
wait_unlocked() { local i; for i in $(seq 1 100); do locked || return 0; sleep 0.1; done; return 1; }
# shot NAME [GEOMETRY]: the whole screen as $ART/NAME.png; prints what it says (tesseract,
# on the dialog: trimmed from the black around it, or cut out at GEOMETRY; enlarged)
shot() {
    x import -window root "$ART/$1.png"
    local cut=(-trim +repage)
    [ -z "${2:-}" ] || cut=(-crop "$2" +repage)
    "$CONVERT" "$ART/$1.png" "${cut[@]}" -resize 300% -colorspace Gray "$WORK/ocr.png"
    tesseract "$WORK/ocr.png" - 2>/dev/null | tr '\n' ' ' | tr -s ' '
}
# lock_and_wake: locks the screen, presses a key, waits for the module's first prompt
lock_and_wake() {
    local before
    as_u xscreensaver-command -lock >/dev/null 2>&1
    for i in $(seq 1 50); do locked && break; sleep 0.1; done
    before=$(grep -c "pam_conversation (TEXT_INFO" "$LOG")
    # xscreensaver ignores input for a moment after it locks: a key each second until
    # the dialog asks.
    for i in $(seq 1 15); do
        x xdotool key shift
        wait_log "pam_conversation (TEXT_INFO" 1 "$before" && break
    done
    wait_log "pam_conversation (TEXT_INFO" 1 "$before" || return 1
    sleep 0.7   # the dialog draws itself
}
fails() { awk '$1 == "failed-at" { n = NF - 1 } END { print n + 0 }' "$STORE/users/$U"; }
totp() { oathtool --totp -b "$1"; }

# ---- 1. the tap ----------------------------------------------------------------------------
lock_and_wake || die "no unlock dialog came up: $(tail -5 "$LOG")"
text=$(shot 1-tap-prompt)
case "$text" in *"Hold your card on the reader and press Enter"*"or type your one-time code"*"Code:"*)
    ok "the dialog asks for the card and offers the code, in one window";;
    *) not_ok "the dialog asks for the card and offers the code, in one window" "$text";; esac
check "the screen is locked" yes "$(locked && echo yes || echo no)"
grep -q "pam_conversation (TEXT_INFO=\"Hold your card" "$LOG" && ! grep -q "Waiting for your card" "$LOG"
check "one conversation call (message and prompt together), no reminder dialogs" 0 $?
start_card "$WORK/card.state"
x xdotool key Return
wait_unlocked; check "the card held to the reader and Enter: unlocked" 0 $?
stop_card
x import -window root "$ART/2-after-tap.png"   # the desktop again: nothing to read
check "… nothing counted" 0 "$(fails)"

# ---- 2. a typed code -----------------------------------------------------------------------
lock_and_wake || die "no unlock dialog came up"
x xdotool type --delay 40 "$(totp $S_TYPED)"
text=$(shot 3-code-typed)
case "$text" in *"Code:"*) ok "the code is typed into the dialog's field";; *) not_ok "the code is typed into the dialog's field" "$text";; esac
x xdotool key Return
wait_unlocked; check "a typed code (no card): unlocked" 0 $?

# ---- 3. a wrong code -----------------------------------------------------------------------
lock_and_wake || die "no unlock dialog came up"
before=$(grep -c "pam_conversation (ERROR_MSG" "$LOG")
x xdotool type --delay 40 000000
x xdotool key Return
wait_log "pam_conversation (ERROR_MSG" 10 "$before"
sleep 0.7
text=$(shot 4-wrong-code)
case "$text" in *"Wrong code"*) ok "a wrong code: the dialog says so";; *) not_ok "a wrong code: the dialog says so" "$text";; esac
x xdotool key Return   # the message's OK
wait_log "authentication failed" 10 0
sleep 1
check "a wrong code: still locked" yes "$(locked && echo yes || echo no)"
check "… and the failure is counted" 1 "$(fails)"

# ---- 4. Enter with no card: the message rides with the code prompt ---------------------------
lock_and_wake || die "no unlock dialog came up"
before=$(grep -c "No card was on the reader" "$LOG")
x xdotool key Return
wait_log "No card was on the reader" 15 "$before"
sleep 0.7
text=$(shot 5-no-card)
case "$text" in *"No card was on the reader"*"simple password"*"One-time code:"*) ok "Enter without a card: said in the dialog that asks for the code";;
    *) not_ok "Enter without a card: said in the dialog that asks for the code" "$text";; esac
x xdotool type --delay 40 "$(totp $S_AFTER)"
x xdotool key Return
wait_unlocked; check "… then a typed code: unlocked" 0 $?
check "a success clears the count" 0 "$(fails)"

cp "$LOG" "$ART/xscreensaver.log"
kill -- -"$XSS_PID" 2>/dev/null; wait "$XSS_PID" 2>/dev/null
kill "$XVFB_PID" 2>/dev/null; wait "$XVFB_PID" 2>/dev/null

# ---- LightDM and its GTK greeter: a login from the display manager ---------------------------
# LightDM runs as root with a system bus of this run's own (a private dbus-daemon; the
# machine's, if any, is left alone), an Xvfb for its X server, and this run's folders for
# its state. The module runs as root here, in LightDM's session process.
LDM="$WORK/lightdm"
mkdir -p "$LDM/run" "$LDM/cache" "$LDM/log" "$LDM/xsessions"
cat >"$LDM/bus.conf" <<BUS
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$LDM/system_bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/> <allow own="*"/> <allow send_destination="*"/> <allow receive_sender="*"/>
  </policy>
</busconfig>
BUS
dbus-daemon --config-file="$LDM/bus.conf" --nofork >"$LDM/bus.log" 2>&1 &
BUS_PID=$!
at_exit "kill $BUS_PID 2>/dev/null; wait $BUS_PID 2>/dev/null"
cat >"$LDM/xserver" <<'XS'
#!/bin/sh
# LightDM gives a real X server vtN and -novtswitch: Xvfb has no VT.
for a; do shift; case $a in vt[0-9]*|-novtswitch) ;; *) set -- "$@" "$a";; esac; done
exec Xvfb -screen 0 1024x768x24 "$@"
XS
chmod 755 "$LDM/xserver"
# The user's session (the greeter asks for lightdm-xsession): it says it started, then
# waits to be stopped. It runs as the user: beside the helper copy, not in $WORK (0700).
printf '#!/bin/sh\ntouch "$HOME/session-started"\nexec sleep 600\n' >"$PUB/session"
printf '#!/bin/sh\nexec "$@"\n' >"$PUB/session-wrapper"
chmod 755 "$PUB/session" "$PUB/session-wrapper"
printf '%s\n' '[Desktop Entry]' 'Name=smartotp test session' "Exec=$PUB/session" >"$LDM/xsessions/lightdm-xsession.desktop"
for n in $(seq $((n + 1)) 99); do [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ] || break; done
cat >"$LDM/lightdm.conf" <<CONF
[LightDM]
minimum-display-number=$n
run-directory=$LDM/run
cache-directory=$LDM/cache
log-directory=$LDM/log
sessions-directory=$LDM/xsessions
[Seat:*]
xserver-command=$LDM/xserver
greeter-session=lightdm-gtk-greeter
user-session=lightdm-xsession
session-wrapper=$PUB/session-wrapper
CONF
# The greeter keeps its state in the lightdm user's home and LightDM makes
# /var/lib/lightdm-data: both put back as they were.
for d in /var/lib/lightdm /var/lib/lightdm-data; do
    if [ -e "$d" ]; then cp -a "$d" "$WORK/keep.${d##*/}"; at_exit "rm -rf '$d' && cp -a '$WORK/keep.${d##*/}' '$d'"
    else at_exit "rm -rf '$d'"; fi
done
backup /etc/pam.d/lightdm
printf '%s\n' "auth required $PUB/pam_smartotp.so store=$STORE timeout=10 reader=Virtual" \
    "account required $PUB/pam_smartotp.so store=$STORE" "session required pam_permit.so" >/etc/pam.d/lightdm
DBUS_SYSTEM_BUS_ADDRESS="unix:path=$LDM/system_bus" setsid lightdm -d -c "$LDM/lightdm.conf" >"$LDM/lightdm.out" 2>&1 &
LDM_PID=$!
at_exit "kill $LDM_PID 2>/dev/null; for _w in \$(seq 1 50); do kill -0 $LDM_PID 2>/dev/null || break; sleep 0.1; done; kill -9 -- -$LDM_PID 2>/dev/null"
D=":$n" XA="$LDM/run/root/:$n"
DLOG="$LDM/log/lightdm.log"
wait_dlog() {  # wait_dlog PATTERN SECONDS BEFORE: like wait_log, in LightDM's log
    local i
    for i in $(seq 1 $(($2 * 10))); do
        [ "$(cat "$DLOG" 2>/dev/null | grep -c -- "$1")" -gt "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
wait_dlog "Prompt greeter with" 30 0 || die "LightDM's greeter did not start: $(tail -5 "$LDM/lightdm.out")"
sleep 2   # the greeter draws itself
x import -window root "$ART/6-greeter.png"
GREETER_BOX=440x250+292+258   # where the GTK greeter puts its login box on 1024x768
# greeter_user: types the user's name; waits for the module's dialog
greeter_user() {
    local before
    before=$(grep -c "Prompt greeter with 2 message" "$DLOG")
    x xdotool type --delay 40 "$U"
    x xdotool key Return
    wait_dlog "Prompt greeter with 2 message" 15 "$before" || return 1
    sleep 1.5
}
greeter_user || die "the greeter did not ask for smartotp-g1's card: $(tail -5 "$DLOG")"
text=$(shot 7-greeter-tap-prompt "$GREETER_BOX")
case "$text" in *"Hold your card on the reader and press Enter"*"one-time code"*) ok "LightDM's greeter shows the card message with the code field";;
    *) not_ok "LightDM's greeter shows the card message with the code field" "$text";; esac
before=$(grep -c "Authentication complete with return value 7" "$DLOG")
x xdotool type --delay 40 000000
x xdotool key Return
wait_dlog "Authentication complete with return value 7" 10 "$before"
check "LightDM: a wrong code is refused (PAM_AUTH_ERR)" 0 $?
sleep 1.5
text=$(shot 8-greeter-wrong-code "$GREETER_BOX")
# The greeter asks again at once, and the new dialog's message takes the place of "Wrong
# code.": the module says how many failed instead.
case "$text" in *"1 failed attempt since your last login"*"Hold your card"*) ok "… and the greeter's next dialog says one attempt failed";;
    *) not_ok "… and the greeter's next dialog says one attempt failed" "$text";; esac
check "… counted" 1 "$(fails)"
check "… no session" no "$([ -e "$HOME_U/session-started" ] && echo yes || echo no)"
start_card "$WORK/card.state"
x xdotool key Return
for i in $(seq 1 100); do [ -e "$HOME_U/session-started" ] && break; sleep 0.1; done
check "LightDM: the card held to the reader and Enter: the user's session starts" yes "$([ -e "$HOME_U/session-started" ] && echo yes || echo no)"
grep -q "Authenticate result for user $U: Success" "$DLOG"
check "… LightDM says the user authenticated" 0 $?
stop_card
check "… and the count is cleared" 0 "$(fails)"
cp "$DLOG" "$ART/lightdm.log"
# The README's picture: the dialog alone.
"$CONVERT" "$ART/1-tap-prompt.png" -trim +repage "$ART/xscreensaver-tap.png"
echo "# screenshots: $ART"
finish
