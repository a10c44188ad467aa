#!/usr/bin/env bash
# The smartotp CLI: every command's behaviour, output formats, exit codes and refusals,
# against a private store.
source "$(dirname "$0")/lib/testlib.sh"
S="$WORK/store"
SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
c() { OUT=$("$CLI" "$@" 2>&1); RC=$?; }
has() { case "$OUT" in *"$1"*) ok "$2";; *) not_ok "$2" "$(echo "$OUT" | head -3 | tr '\n' '|')";; esac; }
hasnt() { case "$OUT" in *"$1"*) not_ok "$2" "$(echo "$OUT" | head -3 | tr '\n' '|')";; *) ok "$2";; esac; }

for cmd in "" enroll passwd list show remove unlock resync recovery import verify card-status check demo; do
    c $cmd --help
    [ "$RC" -eq 0 ] && [ -n "$OUT" ] && ok "smartotp $cmd --help" || not_ok "smartotp $cmd --help" "$RC"
done
c --help; has "EXIT STATUS" "the root help documents exit codes"

c enroll alice --force --store "$S" --secret "$SECRET" --digits 8 --period 60 --algorithm sha256 --label "phone"
check "enroll --secret" 0 "$RC"
check "the store is created 0700 and the record 0600" "700 600" "$(stat -c %a "$S") $(stat -c %a "$S/users/alice")"
c enroll alice --force --store "$S" --secret GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --hotp --counter 5 --json
check "enroll --hotp --json" 0 "$RC"
has '"token" : "code2"' "a second token gets the next id"
c show alice --store "$S" --json
has '"digits" : 8' "show --json lists the tokens"
hasnt "$SECRET" "show never prints a secret"
hasnt "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" "show never prints the second secret"
c list --store "$S" --json; has '"user" : "alice"' "list --json"

c verify alice --store "$S" --code "$(oathtool --totp=sha256 --digits=8 --time-step-size=60s -b "$SECRET")"
check "verify accepts the TOTP-SHA256/8/60 code" 0 "$RC"
c verify alice --store "$S" --code "$(oathtool --hotp -b GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --counter=5)"
check "verify accepts the HOTP code at the initial counter" 0 "$RC"
c verify alice --store "$S" --code 00000000
check "verify refuses a wrong code (exit 1)" 1 "$RC"

c resync alice --store "$S" "$(oathtool --hotp -b GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --counter=500)" "$(oathtool --hotp -b GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --counter=501)"
check "resync from two consecutive codes far past the window" 0 "$RC"
c verify alice --store "$S" --code "$(oathtool --hotp -b GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --counter=502)"
check "after resync the next code works" 0 "$RC"

echo 12 | "$CLI" passwd alice --force --store "$S" --password-stdin >/dev/null 2>&1
check "passwd refuses a simple password shorter than 4" 1 "$?"
echo 2468 | "$CLI" passwd alice --force --store "$S" --password-stdin >/dev/null 2>&1
check "passwd --password-stdin" 0 "$?"
grep -q '^password \$y\$' "$S/users/alice" && ok "the simple password is stored as yescrypt" || not_ok "yescrypt hash"

c recovery alice --store "$S" --count 3
check "recovery makes codes" 0 "$RC"
code=$(echo "$OUT" | grep -oE '[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}' | head -1)
c verify alice --store "$S" --code "$code"
check "a recovery code works once" 0 "$RC"
c verify alice --store "$S" --code "$code"
check "… and not twice" 1 "$RC"

c unlock alice --store "$S"; check "unlock" 0 "$RC"
grep -q '^failed-at' "$S/users/alice" && not_ok "unlock clears the failure tally" || ok "unlock clears the failure tally"
c remove alice --store "$S" --token code2; check "remove --token" 0 "$RC"
c show alice --store "$S" --json; hasnt '"code2"' "the removed token is gone"

printf 'HOTP/T30 bob 1234 3132333435363738393031323334353637383930\n' >"$WORK/users.oath"
c import --store "$S" --pam-oath "$WORK/users.oath"; check "import --pam-oath" 0 "$RC"
c verify bob --store "$S" --code "$(oathtool --totp -b GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ)"
check "the imported pam_oath token works" 0 "$RC"
printf '%s\n" TOTP_AUTH\n11223344\n' "$SECRET" >"$WORK/ga"
c import --store "$S" --google-authenticator "$WORK/ga" --user carol; check "import --google-authenticator" 0 "$RC"
c verify carol --store "$S" --code 11223344; check "a google-authenticator scratch code works as a recovery code" 0 "$RC"
c verify carol --store "$S" --code 11223344; check "… once" 1 "$RC"
c verify carol --store "$S" --code "$(oathtool --totp -b "$SECRET")"; check "the imported google-authenticator token works" 0 "$RC"

# ---- Step 1 of 5: what an attacker or a careless import could do -------------------
# crypt(3) stops at the first NUL: "\0\0\0\0" would have become the empty password.
printf '\0\0\0\0\n' | "$CLI" passwd dora --force --store "$S" --password-stdin >"$WORK/out" 2>&1
check "passwd refuses a password holding NUL bytes" 1 "$?"
grep -q "NUL" "$WORK/out" && ok "… and says why" || not_ok "… and says why" "$(cat "$WORK/out")"
[ -e "$S/users/dora" ] && not_ok "… and writes no record" || ok "… and writes no record"

HEX=3132333435363738393031323334353637383930   # RFC 4226's key; counter 3's code is 969429
# pam_oath wrote counter 3 and its code after a login, and refuses that code again.
printf 'HOTP fay 4711 %s 3 969429 2024-01-01T00:00:00L\n' "$HEX" >"$WORK/oath-hotp"
c import --store "$S" --pam-oath "$WORK/oath-hotp"; check "import of a used pam_oath HOTP line" 0 "$RC"
has "PIN of fay was not imported" "the PIN is not made a factor on its own (a note says so)"
c verify fay --store "$S" --code 969429; check "the code pam_oath last accepted is refused after import" 1 "$RC"
c verify fay --store "$S" --code "$(oathtool --hotp "$HEX" --counter=4)"; check "… the next one works" 0 "$RC"
c show fay --store "$S" --json; has '"password" : false' "no simple password from the PIN"
c import --store "$S" --pam-oath "$WORK/oath-hotp" --pin-as-password; has "PIN set as the simple password" "--pin-as-password makes the PIN the simple password"
has "already there" "importing the same line again updates the token, adds none"
c show fay --store "$S" --json; check "still one token" 1 "$(echo "$OUT" | grep -c '"id" :')"
# A TOTP line: the code pam_oath accepted last, and when.
code=$(oathtool --totp "$HEX")
printf 'HOTP/T30 gus - %s 0 %s %s\n' "$HEX" "$code" "$(date +%Y-%m-%dT%H:%M:%SL)" >"$WORK/oath-totp"
c import --store "$S" --pam-oath "$WORK/oath-totp"
c verify gus --store "$S" --code "$code"; check "the TOTP code pam_oath last accepted is refused after import" 1 "$RC"
has "replayed" "… as a replay"
# google-authenticator: DISALLOW_REUSE lists the steps already used.
G2=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
step=$(( $(date +%s) / 30 ))
printf '%s\n" TOTP_AUTH\n" DISALLOW_REUSE %s\n" RATE_LIMIT 3 30\n" WINDOW_SIZE 3\n55667788\n' "$G2" "$step" >"$WORK/ga-used"
c import --store "$S" --google-authenticator "$WORK/ga-used" --user hank; check "import of a google-authenticator file with DISALLOW_REUSE" 0 "$RC"
has "RATE_LIMIT" "RATE_LIMIT is reported as replaced by the lock policy"
c verify hank --store "$S" --code "$(oathtool --totp -b "$G2" --now=@$((step * 30)))"
check "the step google-authenticator just accepted is refused after import" 1 "$RC"
c verify hank --store "$S" --code 55667788; check "a scratch code works once" 0 "$RC"
c import --store "$S" --google-authenticator "$WORK/ga-used" --user hank
has "already there" "re-import: the same secret is the same token"
c verify hank --store "$S" --code 55667788; check "re-import does not bring a used scratch code back" 1 "$RC"
c show hank --store "$S" --json; check "re-import adds no second token" 1 "$(echo "$OUT" | grep -c '"id" :')"

# ---- what an administrator expects -------------------------------------------------
c --version; has "smartotp $(sed -n 's/.*current = "\(.*\)".*/\1/p' "$ROOT/Sources/Verifier/Version.swift")" "smartotp --version"
echo "$SECRET" | "$CLI" enroll ivy --force --store "$S" --secret - >/dev/null 2>&1; check "enroll --secret - reads standard input" 0 "$?"
c verify ivy --store "$S" --code "$(oathtool --totp -b "$SECRET")"; check "… and that token works" 0 "$RC"
printf '%s\n' "$G2" >"$WORK/secret.txt"
c enroll jo --force --store "$S" --secret "@$WORK/secret.txt"; check "enroll --secret @FILE" 0 "$RC"
c verify jo --store "$S" --code "$(oathtool --totp -b "$G2")"; check "… and that token works" 0 "$RC"
c enroll no-such-user-here --store "$S" --secret "$SECRET"; check "enroll refuses a name that is not a user here" 1 "$RC"
has "not a user of this machine" "… and says so, naming --force"
c enroll root --store "$S" --secret "$SECRET"; check "enroll takes a real user without --force" 0 "$RC"
c enroll alice --force --store "$S" --card --hotp; check "enroll --card refuses code-only options (exit 64)" 64 "$RC"
c --generate-completion-script bash; has "-F _smartotp smartotp" "bash completion is generated"
PD="$WORK/pam.d.check"
mkdir -p "$PD"
printf 'auth required /lib/security/pam_smartotp.so nullok\n' >"$PD/smartotp-auth"
printf '@include smartotp-auth\n' >"$PD/included"
printf 'auth substack included\n' >"$PD/substacked"
printf '@include smartotp-auth\nauth required pam_smartotp.so\n' >"$PD/double"
printf 'auth required pam_unix.so\n' >"$PD/plain"
touch "$S/users/.alice.tmp-0123abcd"
# A card enrolled before tap credentials of their own (no codes=0): one credential for taps
# and typed codes.
printf 'smartotp-record 1\nuser oldcard\ncreated 1\ntoken id=card kind=card type=totp period=30 algorithm=sha1 digits=6 secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ last=- created=1 used=- label=- name=smartotp%%3Aoldcard device=- access-key=- touch=0\n' >"$S/users/oldcard"
chmod 600 "$S/users/oldcard"
c check --store "$S" --pam-directory "$PD"
has "1 card(s) share one credential between taps and typed codes: oldcard/card" "check names a card that shares its credential with typed codes"
rm -f "$S/users/oldcard"
has "included (through an include)" "check follows @include"
has "substacked (through an include)" "check follows substack"
hasnt "plain" "check does not list a service without smartotp"
has "double runs pam_smartotp 2 times" "check warns about two smartotp lines in one stack"
has ".alice.tmp-0123abcd" "check reports a temporary file a killed writer left"
rm -f "$S/users/.alice.tmp-0123abcd"
if [ -e /etc/reader.conf.d/vpcd ]; then has "loads the virtual reader driver vpcd" "check warns that the system's pcscd would load vpcd"
else skip "check warns that the system's pcscd would load vpcd" "no /etc/reader.conf.d/vpcd here"; fi
printf 'deny=x\n' >"$WORK/bad.conf"
c check --store "$S" --pam-directory "$PD" --conf "$WORK/bad.conf"; check "check with a malformed smartotp.conf fails (exit 1)" 1 "$RC"
has "every login through pam_smartotp fails closed" "… and says every login fails closed until it is fixed"
printf 'deny=5\nfrobnicate=1\n' >"$WORK/typo.conf"
c check --store "$S" --pam-directory "$PD" --conf "$WORK/typo.conf"
has "frobnicate=1: unknown setting, ignored by every login" "check names an unknown setting in smartotp.conf"
c check --store "$WORK/typo-store" --pam-directory "$PD"; check "check with a missing store fails (exit 1)" 1 "$RC"
has "does not exist" "… saying the store does not exist"
[ -e "$WORK/typo-store" ] && not_ok "check does not create a missing store" || ok "check does not create a missing store"

c enroll zed --force --store "$S" --secret "$SECRET" --qr
has "█" "enroll --qr draws a QR code"
c enroll zed --force --store "$S" --secret "$SECRET" --uri
has "otpauth://totp/smartotp:zed%40" "enroll --uri prints the otpauth URI"

# verify decides as a login would: the policy file's lock, counted attempts.
printf 'deny=2 unlock_time=600 fail_interval=900\n' >"$WORK/policy.conf"
c enroll vera --force --store "$S" --secret "$SECRET"; check "enroll vera" 0 "$RC"
c verify vera --store "$S" --config "$WORK/policy.conf" --code 000000; check "verify: a wrong code (exit 1)" 1 "$RC"
c verify vera --store "$S" --config "$WORK/policy.conf" --code 111111; check "verify: a second wrong code (exit 1)" 1 "$RC"
has "now locked" "the failure that locks says so"
c verify vera --store "$S" --config "$WORK/policy.conf" --code "$(oathtool --totp -b "$SECRET")"
check "verify refuses a locked user's right code (exit 1)" 1 "$RC"
has "locked" "… and says the user is locked"
c show vera --store "$S" --json; has '"failures" : 2' "… the right code did not clear the count"
c unlock vera --store "$S"; check "unlock vera" 0 "$RC"
c verify vera --store "$S" --config "$WORK/policy.conf" --code "$(oathtool --totp -b "$SECRET")"
check "after unlock the right code is accepted" 0 "$RC"
chmod 666 "$WORK/policy.conf"
c verify vera --store "$S" --config "$WORK/policy.conf" --code 000000; check "verify refuses a policy file others can write (exit 1)" 1 "$RC"
has "not writable by group or others" "… and says why"
c verify vera --store "$S" --config "$WORK/policy.conf" --server https://example.invalid --code 000000
check "verify --server is refused: the policy file says where a login asks" 1 "$RC"

c show "../etc/passwd" --store "$S"; check "a hostile user name is refused (exit 1)" 1 "$RC"
has "invalid user name" "the refusal says why"
c show nobody-here --store "$S"; check "an unknown user (exit 1)" 1 "$RC"
c enroll alice --force --store "$S"; check "enroll without --card or --secret is a usage error (exit 64)" 64 "$RC"
c enroll alice --force --store "$S" --secret "A1B2"; check "a bad Base32 secret is refused (exit 1)" 1 "$RC"
has "position" "the Base32 error names the position"
c enroll alice --force --store "$S" --secret "$SECRET" --digits 9; check "--digits 9 is a usage error" 64 "$RC"
chmod 755 "$S"
c show alice --store "$S"; check "a loose store is refused" 1 "$RC"
has "chmod 700" "the refusal names the fix"
chmod 700 "$S"
finish
