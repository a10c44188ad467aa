#!/usr/bin/env bash
# The smartotp CLI: every command's behaviour, output formats, exit codes and refusals,
# against a private store.
source "$(dirname "$0")/lib/bench.sh"
S="$WORK/store"
SECRET=JBSWY3DPEHPK3PXP
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
c enroll alice --force --store "$S" --secret GEZDGNBVGY3TQOJQ --hotp --counter 5 --json
check "enroll --hotp --json" 0 "$RC"
has '"token" : "code2"' "a second token gets the next id"
c show alice --store "$S" --json
has '"digits" : 8' "show --json lists the tokens"
hasnt "$SECRET" "show never prints a secret"
hasnt "GEZDGNBVGY3TQOJQ" "show never prints the second secret"
c list --store "$S" --json; has '"user" : "alice"' "list --json"

c verify alice --store "$S" --code "$(oathtool --totp=sha256 --digits=8 --time-step-size=60s -b "$SECRET")"
check "verify accepts the TOTP-SHA256/8/60 code" 0 "$RC"
c verify alice --store "$S" --code "$(oathtool --hotp -b GEZDGNBVGY3TQOJQ --counter=5)"
check "verify accepts the HOTP code at the initial counter" 0 "$RC"
c verify alice --store "$S" --code 00000000
check "verify refuses a wrong code (exit 1)" 1 "$RC"

c resync alice --store "$S" "$(oathtool --hotp -b GEZDGNBVGY3TQOJQ --counter=500)" "$(oathtool --hotp -b GEZDGNBVGY3TQOJQ --counter=501)"
check "resync from two consecutive codes far past the window" 0 "$RC"
c verify alice --store "$S" --code "$(oathtool --hotp -b GEZDGNBVGY3TQOJQ --counter=502)"
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
grep -q '^failures 0 0' "$S/users/alice" && ok "unlock clears the failure count" || not_ok "unlock clears the failure count"
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

c enroll zed --force --store "$S" --secret "$SECRET" --qr
has "█" "enroll --qr draws a QR code"
c enroll zed --force --store "$S" --secret "$SECRET" --uri
has "otpauth://totp/smartotp:zed%40" "enroll --uri prints the otpauth URI"

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
