#!/usr/bin/env bash
# Bad input through real PAM, beyond what 30-pam and 40-card cover: records cut at every
# line and at random bytes, random garbage records, and a store on a full disk. Each must
# end in a clear PAM code, with the host process alive and the record unchanged.
source "$(dirname "$0")/lib/testlib.sh"

SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP

# ---- truncated and corrupt records ------------------------------------------------------
printf '%s\n' "auth required $SO store=$STORE methods=code,password" >"$CONF/std"
"$CLI" enroll alice --force --store "$STORE" --secret "$SECRET" >/dev/null
echo 2468 | "$CLI" passwd alice --force --store "$STORE" --password-stdin >/dev/null
cp -p "$STORE/users/alice" "$WORK/alice.good"
size=$(stat -c %s "$WORK/alice.good")
crashed=0 changed=0 unexpected=0 trials=0
for cut in $(seq 0 7 "$size") $(shuf -i 1-"$size" -n 20); do
    head -c "$cut" "$WORK/alice.good" >"$STORE/users/alice"
    cp -p "$STORE/users/alice" "$WORK/alice.cut"
    run std alice --answer "" --answer 2468
    trials=$((trials + 1))
    case "$OUT" in *"authenticate: "*) ;; *) crashed=$((crashed + 1)); echo "# cut $cut: $OUT";; esac
    # A cut record either still parses (then the login may succeed and rewrite it) or is refused unchanged.
    if [ "$RC" -eq 9 ]; then
        cmp -s "$STORE/users/alice" "$WORK/alice.cut" || changed=$((changed + 1))
    elif [ "$RC" -ne 0 ] && [ "$RC" -ne 7 ] && [ "$RC" -ne 10 ]; then
        unexpected=$((unexpected + 1)); echo "# cut $cut: code $RC"
    fi
done
check "records cut at $trials points: the host always gets a PAM code" 0 "$crashed"
check "a refused cut record is never rewritten" 0 "$changed"
check "a cut record ends in PAM_SUCCESS, PAM_AUTH_ERR, PAM_USER_UNKNOWN or PAM_AUTHINFO_UNAVAIL only" 0 "$unexpected"

crashed=0 wrong=0
for i in $(seq 1 20); do
    { echo "smartotp-record 1"; echo "user alice"; head -c $((RANDOM % 400 + 1)) /dev/urandom; } >"$STORE/users/alice"
    run std alice --answer "" --answer 2468
    case "$OUT" in *"authenticate: "*) ;; *) crashed=$((crashed + 1));; esac
    [ "$RC" -eq 9 ] || [ "$RC" -eq 7 ] || wrong=$((wrong + 1))
done
check "20 records with random garbage: no crash" 0 "$crashed"
check "random garbage is refused (PAM_AUTHINFO_UNAVAIL) or fails (PAM_AUTH_ERR)" 0 "$wrong"
cp -p "$WORK/alice.good" "$STORE/users/alice"

# ---- a store on a full disk --------------------------------------------------------------
FULL="$WORK/full"
mkdir -p "$FULL"
mount -t tmpfs -o size=256k,mode=700 tmpfs "$FULL" || die "cannot mount a tmpfs (root needed)"
at_exit "umount '$FULL'"
FSTORE="$FULL/store"
printf '%s\n' "auth required $SO store=$FSTORE methods=code" >"$CONF/full"
"$CLI" enroll bob --force --store "$FSTORE" --secret "$SECRET" >/dev/null
cp -p "$FSTORE/users/bob" "$WORK/bob.before"
dd if=/dev/zero of="$FULL/filler" bs=4k 2>/dev/null || true
run full bob --answer "$(oathtool --totp -b "$SECRET")"
check "a full disk: the login cannot record the code, so it fails closed (PAM_AUTHINFO_UNAVAIL)" 9 "$RC"
if cmp -s "$FSTORE/users/bob" "$WORK/bob.before"; then ok "a full disk: the record is the old one, intact"; else not_ok "a full disk: the record is intact"; fi
check "a full disk: no temporary file is left behind" "bob" "$(ls -A "$FSTORE/users" | tr '\n' ' ' | sed 's/ $//')"
rm -f "$FULL/filler"
run full bob --answer "$(oathtool --totp -b "$SECRET")"
check "space again: the same code now logs in (it was never recorded as used)" 0 "$RC"
finish
