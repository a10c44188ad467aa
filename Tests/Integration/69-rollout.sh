#!/usr/bin/env bash
# What a rollout needs (Step 3 of 4), on one host, through the documented commands and
# real PAM stacks (pam-harness, pam_start_confdir): a phone token generated and refused
# until a code from the phone confirms it; temporary codes for a lost card, good until
# they end or are used up. (groups= and the example sshd stack are in 30-pam; the fleet's
# side of the same commands in 65-fleet.)
source "$(dirname "$0")/lib/testlib.sh"
[ -z "$(foreign_pcscd)" ] || die "a pcscd is running: this suite needs none (stop it)"

ARGS="store=$STORE timeout=2 deny=5 unlock_time=60"
service code "auth required $SO $ARGS methods=code"
totp() { oathtool --totp -b "$1" ${2:+--now=@$2}; }
secret_of() { sed -n 's/.*secret=\([A-Z2-7]*\).*/\1/p' <<<"$1" | head -1; }

# --- enroll --generate: a pending token until the phone's code confirms it ------------------
out=$("$CLI" enroll grace --force --generate --store "$STORE" 2>&1); rc=$?
check "enroll --generate exits 0" 0 "$rc"
case "$out" in *"otpauth://totp/"*"secret="*) ok "… prints the otpauth:// URI";; *) not_ok "the URI is printed" "$out";; esac
case "$out" in *"█"*|*"▀"*|*"▄"*) ok "… and a QR code in the terminal (libqrencode)";; *) not_ok "a QR code is drawn" "$out";; esac
case "$out" in *"pending"*"smartotp enroll grace --confirm"*) ok "… and says the token is pending, and how to confirm it";; *) not_ok "pending is said" "$out";; esac
S=$(secret_of "$out")
check "the secret is 160 bits (32 Base32 characters)" 32 "${#S}"
grep -q ' pending=1' "$STORE/users/grace" && ok "the record marks the token pending" || not_ok "pending in the record" "$(cat "$STORE/users/grace")"
run code grace --answer "$(totp "$S")"
check "a pending token's right code does not log in (no usable token: PAM_AUTHINFO_UNAVAIL or AUTH_ERR)" 1 "$([ "$RC" != 0 ] && echo 1 || echo 0)"
out=$("$CLI" show grace --store "$STORE" 2>&1)
case "$out" in *"pending=yes"*) ok "smartotp show says the token is pending";; *) not_ok "show says pending" "$out";; esac
out=$(echo 000000 | "$CLI" enroll grace --confirm --store "$STORE" 2>&1); rc=$?
case "$rc:$out" in 1:*"matches no pending token"*) ok "a wrong code does not confirm it (exit 1, nothing changed)";; *) not_ok "a wrong confirm code" "$rc: $out";; esac
grep -q ' pending=1' "$STORE/users/grace" || not_ok "the token is still pending after a wrong code"
out=$(totp "$S" | "$CLI" enroll grace --confirm --store "$STORE" 2>&1); rc=$?
case "$rc:$out" in 0:*"is confirmed"*) ok "enroll --confirm with the phone's code confirms it";; *) not_ok "confirm" "$rc: $out";; esac
run code grace --answer "$(totp "$S")"
check "… the code that confirmed it is used: a replay at the prompt (PAM_AUTH_ERR)" 7 "$RC"
run code grace --answer "$(totp "$S" $(( $(date +%s) + 30 )))"
check "… and the phone's next code logs in" 0 "$RC"
# --generate --confirm in one command, the code asked for on the terminal (a pty).
out=$(python3 - "$CLI" "$STORE" <<'PY'
import base64, hmac, hashlib, re, struct, sys, time
import pexpect
child = pexpect.spawn(sys.argv[1], ["enroll", "heidi", "--force", "--generate", "--confirm", "--store", sys.argv[2]], encoding="utf-8", timeout=20)
child.expect(r"secret=([A-Z2-7]+)")
key = base64.b32decode(child.match.group(1))
child.expect("Code from the phone: ")
mac = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
o = mac[-1] & 15
child.sendline("%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7fffffff) % 1000000))
child.expect(pexpect.EOF)
child.close()
print(child.exitstatus, child.before.strip().splitlines()[-1])
PY
)
case "$out" in "0 "*"is confirmed"*) ok "enroll --generate --confirm asks for the phone's code on the terminal and confirms it";;
    *) not_ok "--generate --confirm on a terminal" "$out";; esac
grep -q ' pending=1' "$STORE/users/heidi" && not_ok "heidi's token is confirmed" "$(cat "$STORE/users/heidi")" || ok "… and the record says so (no pending=)"

# --- temporary codes --------------------------------------------------------------------------
code=$("$CLI" temp-code grace --valid 8h --uses 2 --store "$STORE" 2>/dev/null); rc=$?
case "$rc:$code" in 0:[a-z2-7][a-z2-7][a-z2-7][a-z2-7]-????-????) ok "temp-code prints one code on a line of its own ($code)";; *) not_ok "temp-code" "$rc: $code";; esac
out=$("$CLI" show grace --store "$STORE" 2>&1)
case "$out" in *"temporary code: good until 20"*"2 use(s) left"*) ok "smartotp show says it exists and when it ends";; *) not_ok "show the temporary code" "$out";; esac
grep -q "$code" "$STORE/users/grace" && not_ok "only the code's hash is kept" || ok "only the code's hash is kept (yescrypt)"
run code grace --answer "$code"; check "a temporary code logs in" 0 "$RC"
run code grace --answer "$(echo "$code" | tr a-z A-Z)"; check "… twice (--uses 2; typed in capitals too)" 0 "$RC"
run code grace --answer "$code"; check "… and not a third time (PAM_AUTH_ERR)" 7 "$RC"
grep -q '^temp ' "$STORE/users/grace" && not_ok "a used-up code leaves the record" || ok "… a used-up code leaves the record"
code=$("$CLI" temp-code grace --valid 1h --store "$STORE" 2>/dev/null)
sed -i 's/^temp \([^ ]*\) [0-9]* /temp \1 1000 /' "$STORE/users/grace"
run code grace --answer "$code"; check "a temporary code past its end is refused" 7 "$RC"
grep -q 'failed-at' "$STORE/users/grace" && ok "… and counted as a failure, like any wrong code" || not_ok "a refused temporary code is counted" "$(cat "$STORE/users/grace")"
"$CLI" temp-code grace --store "$STORE" >/dev/null 2>&1
out=$("$CLI" temp-code grace --remove --store "$STORE" 2>&1)
case "$out" in *"Removed the temporary codes of grace"*) ok "temp-code --remove: the card was found";; *) not_ok "temp-code --remove" "$out";; esac
grep -q '^temp ' "$STORE/users/grace" && not_ok "no temporary code is left" "$(cat "$STORE/users/grace")" || ok "… none is left in the record"
out=$("$CLI" temp-code nobody-here --store "$STORE" 2>&1); rc=$?
case "$rc:$out" in 1:*"has no smartotp record"*) ok "temp-code for a user without a record: refused";; *) not_ok "temp-code without a record" "$rc: $out";; esac
out=$("$CLI" temp-code grace --valid 90d --store "$STORE" 2>&1); rc=$?
case "$rc:$out" in 64:*"1m to 30d"*) ok "temp-code --valid past 30 days: refused, in words (exit 64)";; *) not_ok "--valid bounds" "$rc: $out";; esac

# --- Self-service: an invitation, the user enrols their own phone and sets their own password --
# As a real unprivileged user, through the setuid helper (root's smartotp.conf names the store).
PRIVATE_STORE=$STORE
public_dir
install -o root -g root -m 4755 "$HELPER" "$PUB/smartotp-chkotp"
cp "$CLI" "$PUB/smartotp"; chmod 755 "$PUB/smartotp"
backup /etc/smartotp/smartotp.conf
mkdir -p /etc/smartotp
printf 'store=%s\ndeny=5\nunlock_time=600\nskew=3\n' "$STORE" >/etc/smartotp/smartotp.conf
add_user smartotp-ss
as_user() { runuser -u smartotp-ss -- "$PUB/smartotp" "$@" --helper "$PUB/smartotp-chkotp"; }
service selfcode "auth [ignore=1 default=done] $SO store=$STORE methods=code nullok" "auth required pam_deny.so" "auth required pam_permit.so"
service selfpw "auth required $SO store=$STORE methods=password timeout=2"
invite=$("$CLI" invite smartotp-ss --valid 1h --store "$STORE" 2>/dev/null)
case "$invite" in [a-z2-7][a-z2-7][a-z2-7][a-z2-7]-????-????) ok "smartotp invite prints a one-time code ($invite)";; *) not_ok "invite" "$invite";; esac
grep -q "^invite " "$STORE/users/smartotp-ss" && ok "… kept as a hash in a record of its own" || not_ok "the invitation is kept" "$(cat "$STORE/users/smartotp-ss" 2>&1)"
run selfcode smartotp-ss --answer 000000
check "an invitation alone is no enrolment: nullok still lets the user through" 0 "$RC"
check "… unasked" 0 "$(echo "$OUT" | grep -c 'code')"
out=$(echo "wrong-code-0000" | as_user enroll --self 2>&1); rc=$?
case "$rc:$out" in 1:*"invitation code is not valid"*) ok "enroll --self with a wrong invitation: refused";; *) not_ok "a wrong invitation" "$rc: $out";; esac
out=$(echo "$invite" | as_user enroll --self 2>&1); rc=$?
SS=$(secret_of "$out")
case "$rc:$out" in 0:*"otpauth://"*"pending until you confirm"*) ok "enroll --self, as the user, through the helper: the QR code, the token pending";; *) not_ok "enroll --self" "$rc: $out";; esac
check "… a 160-bit secret made by the user's own program" 32 "${#SS}"
out=$(echo "$invite" | as_user enroll --self 2>&1); rc=$?
case "$rc:$out" in 1:*"used already"*) ok "… the invitation works once";; *) not_ok "an invitation is single use" "$rc: $out";; esac
out=$(echo "$invite" | runuser -u smartotp-ss -- "$PUB/smartotp" enroll --self grace --helper "$PUB/smartotp-chkotp" 2>&1); rc=$?
case "$rc:$out" in 1:*"for yourself only"*) ok "… and a user enrols nobody else";; *) not_ok "enroll --self for another user" "$rc: $out";; esac
out=$(totp "$SS" | as_user enroll --self --confirm 2>&1); rc=$?
case "$rc:$out" in 0:*"is confirmed"*) ok "enroll --self --confirm with the phone's code";; *) not_ok "self confirm" "$rc: $out";; esac
run selfcode smartotp-ss --answer "$(totp "$SS" $(( $(date +%s) + 30 )))"
check "… and the phone's next code logs in" 0 "$RC"
run selfcode smartotp-ss --answer 000000
check "… and the user is asked now (a wrong code: PAM_AUTH_ERR)" 7 "$RC"
# An invitation past its end.
invite=$("$CLI" invite smartotp-ss --valid 1h --store "$STORE" 2>/dev/null)
sed -i 's/^invite \([^ ]*\) [0-9]*$/invite \1 1000/' "$STORE/users/smartotp-ss"
out=$(echo "$invite" | as_user enroll --self 2>&1); rc=$?
case "$rc:$out" in 1:*"not valid"*) ok "an invitation past its end is refused";; *) not_ok "an ended invitation" "$rc: $out";; esac
"$CLI" unlock smartotp-ss --store "$STORE" >/dev/null
# The user's own simple password, after a code of theirs.
out=$(printf '000000\n\n9753\n' | as_user passwd --password-stdin 2>&1); rc=$?
case "$rc:$out" in 1:*"not accepted; the simple password is unchanged"*) ok "passwd by the user with a wrong code: refused, nothing changed";; *) not_ok "self passwd, wrong code" "$rc: $out";; esac
out=$(printf '%s\n\n9753\n' "$(totp "$SS" $(( $(date +%s) + 60 )))" | as_user passwd --password-stdin 2>&1); rc=$?
case "$rc:$out" in 0:*"Simple password changed for smartotp-ss"*) ok "passwd by the user, proving a code of theirs first";; *) not_ok "self passwd" "$rc: $out";; esac
run selfpw smartotp-ss --answer 9753
check "… and the new simple password logs in" 0 "$RC"
out=$(printf '%s\n9753\n1111\n' "$(totp "$SS" $(( $(date +%s) + 90 )))" | runuser -u smartotp-ss -- "$PUB/smartotp" passwd grace --password-stdin --helper "$PUB/smartotp-chkotp" 2>&1); rc=$?
case "$rc:$out" in 1:*"for yourself only"*) ok "… and a user sets no one else's";; *) not_ok "self passwd for another" "$rc: $out";; esac
# Once a simple password is set, changing it takes the current one too: a code alone
# (relayed by a host the user logged in on) sets nothing.
out=$(printf '%s\n\n2222\n' "$(totp "$SS" $(( $(date +%s) + 90 )))" | as_user passwd --password-stdin 2>&1); rc=$?
case "$rc:$out" in 1:*"unchanged"*) ok "a code without the current simple password changes nothing";; *) not_ok "self passwd needs the current password" "$rc: $out";; esac
run selfpw smartotp-ss --answer 9753
check "… the simple password is still the one set before" 0 "$RC"
out=$(echo "x" | "$CLI" invite smartotp-ss --store "$STORE" 2>&1); rc=$?
case "$rc:$out" in 1:*"enrolled already"*) ok "no invitation for a user who is enrolled already (whoever held it could add a token of theirs)";; *) not_ok "invite an enrolled user" "$rc: $out";; esac
check "the record stays root's 0600" "root 600" "$(stat -c '%U %a' "$STORE/users/smartotp-ss")"
STORE=$PRIVATE_STORE
finish
