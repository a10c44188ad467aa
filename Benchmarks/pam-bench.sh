#!/usr/bin/env bash
# pam-bench.sh — pamtester logins through pam_smartotp and Debian's pam_oath with the same
# TOTP secret, side by side, plus a pam_permit stack for what pamtester and libpam cost
# alone. Prints a Markdown table: instructions (callgrind), wall time (hyperfine), peak
# RSS, module size, and the growth with 10, 10,000 and 100,000 enrolled users. The *nss
# stacks put pam_succeed_if (a getpwnam, as pam_unix makes in every real stack) before
# each module, so the name service is loaded before either module runs; the closing
# lines give the module's instructions over pam_permit's as a ratio to pam_oath's there.
#
#   Benchmarks/pam-bench.sh [MODULE]     (root; MODULE defaults to the Embedded build)
#
# Every login is a success with a fresh record state (the record / users file is restored
# before each run), so both modules do their whole job, write-back included.
# It writes its services /etc/pam.d/smartotp-bench-* and removes them on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODULE=${1:-$ROOT/.build-embedded/release/libpam_smartotp.so}
COUNTS=${BENCH_USERS:-10 10000 100000}
RUNS=${BENCH_RUNS:-20}
for t in pamtester valgrind hyperfine oathtool python3 /usr/bin/time; do command -v "$t" >/dev/null || { echo "pam-bench: $t missing (./install.sh --deps-only)"; exit 1; }; done
[ -f "$MODULE" ] || { echo "pam-bench: no module at $MODULE (scripts/build-embedded.sh)"; exit 1; }
OATH=$(ls /lib/*/security/pam_oath.so 2>/dev/null | head -1)
[ -n "$OATH" ] || { echo "pam-bench: pam_oath.so missing (apt-get install libpam-oath)"; exit 1; }

W=$(mktemp -d /tmp/smartotp-bench.XXXXXX)
chmod 700 "$W"
trap 'rm -rf "$W" /etc/pam.d/smartotp-bench-permit /etc/pam.d/smartotp-bench-oath /etc/pam.d/smartotp-bench-faillock /etc/pam.d/smartotp-bench-smartotp /etc/pam.d/smartotp-bench-smartotpconf /etc/pam.d/smartotp-bench-permitnss /etc/pam.d/smartotp-bench-oathnss /etc/pam.d/smartotp-bench-smartotpnss' EXIT
HEX=3132333435363738393031323334353637383930
B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ

# The measured user: a real account (pam_faillock skips users it cannot look up), in the
# middle of N enrolled users.
BUSER=daemon
# populate N: a smartotp store and a pam_oath users file with N users, $BUSER in the middle.
populate() {
    python3 - "$W" "$1" "$B32" "$HEX" "$BUSER" <<'PY'
import os, sys
w, n, b32, hexs, buser = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
store = os.path.join(w, "store")
for d in (store, store + "/users", store + "/locks"):
    os.makedirs(d, mode=0o700, exist_ok=True)
def record(user):
    return ("smartotp-record 1\nuser %s\ncreated 1\nfailures 0 0\n"
            "token id=code kind=code type=totp period=30 algorithm=sha1 digits=6 secret=%s last=- created=1 used=- label=-\n" % (user, b32))
names = ["user%d" % i for i in range(n - 1)]
names.insert(len(names) // 2, buser)
existing = set(os.listdir(store + "/users"))
for name in names:
    if name in existing and name != buser: continue  # the measured user: always a fresh record
    fd = os.open(os.path.join(store, "users", name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, record(name).encode()); os.close(fd)
with open(os.path.join(w, "users.oath"), "w") as f:
    for name in names:
        f.write("HOTP/T30 %s - %s\n" % (name, hexs))
os.chmod(os.path.join(w, "users.oath"), 0o600)
PY
    cp -p "$W/store/users/$BUSER" "$W/bench.record"
    cp -p "$W/users.oath" "$W/users.oath.clean"
}
# Each stack's own state only: copying pam_oath's 8 MB file before a pam_smartotp run would
# make its fsync pay for flushing that copy.
reset_smartotp="cp -p $W/bench.record $W/store/users/$BUSER; sync"
reset_oath="cp -p $W/users.oath.clean $W/users.oath; sync"
reset_faillock="$reset_oath; rm -f $W/tally/*"
reset_permit="true"
reset="$reset_smartotp; $reset_faillock"
mkdir -p "$W/tally"

echo "auth required pam_permit.so" >/etc/pam.d/smartotp-bench-permit
echo "auth required $OATH usersfile=$W/users.oath window=1 digits=6" >/etc/pam.d/smartotp-bench-oath
# pam_oath with a lockout, as pam_faillock(8) wraps a module: the like-for-like reference for
# pam_smartotp, which counts every attempt (pam_oath alone counts nothing).
printf '%s\n' "auth requisite pam_faillock.so preauth dir=$W/tally" \
    "auth [success=1 default=ignore] $OATH usersfile=$W/users.oath window=1 digits=6" \
    "auth [default=die] pam_faillock.so authfail dir=$W/tally" \
    "auth sufficient pam_faillock.so authsucc dir=$W/tally" >/etc/pam.d/smartotp-bench-faillock
echo "auth required $MODULE store=$W/store methods=code skew=1" >/etc/pam.d/smartotp-bench-smartotp
# The same with the packaged policy file (comments only) read first, as every login on an
# installed host does; conf= names a copy, so the machine's /etc/smartotp is not touched.
install -m 0644 "$(dirname "$0")/../docs/smartotp.conf.example" "$W/smartotp.conf"
echo "auth required $MODULE conf=$W/smartotp.conf store=$W/store methods=code skew=1" >/etc/pam.d/smartotp-bench-smartotpconf
reset_smartotpconf=$reset_smartotp
# After a name-service user: pam_succeed_if looks the user up first, as pam_unix does.
nss="auth required pam_succeed_if.so uid >= 0 quiet"
printf '%s\n' "$nss" "auth required pam_permit.so" >/etc/pam.d/smartotp-bench-permitnss
printf '%s\n' "$nss" "auth required $OATH usersfile=$W/users.oath window=1 digits=6" >/etc/pam.d/smartotp-bench-oathnss
printf '%s\n' "$nss" "auth required $MODULE store=$W/store methods=code skew=1" >/etc/pam.d/smartotp-bench-smartotpnss
reset_permitnss=$reset_permit reset_oathnss=$reset_oath reset_smartotpnss=$reset_smartotp

reset_of() { local v="reset_$1"; printf "%s" "${!v}"; }
login() { echo "$(oathtool --totp -b "$B32")" | pamtester "smartotp-bench-$1" $BUSER authenticate >/dev/null 2>&1; }
instructions() {  # instructions SERVICE: total Ir of one pamtester login
    eval "$(reset_of "$1")"
    local code; code=$(oathtool --totp -b "$B32")
    echo "$code" | valgrind --tool=callgrind --callgrind-out-file="$W/cg.$1" pamtester "smartotp-bench-$1" $BUSER authenticate >/dev/null 2>"$W/vg.$1" || true
    grep -m1 -oE 'Collected : [0-9]+' "$W/vg.$1" | awk '{print $3}'
}
wall() {  # wall SERVICE: mean ms of a login (hyperfine)
    hyperfine -N --runs "$RUNS" --warmup 2 --prepare "sh -c '$(reset_of "$1")'" --export-json "$W/h.json" \
        "sh -c 'oathtool --totp -b $B32 | pamtester smartotp-bench-$1 $BUSER authenticate'" >/dev/null 2>&1
    python3 -c "import json;print('%.2f' % (json.load(open('$W/h.json'))['results'][0]['mean']*1000))"
}
rss() {  # peak RSS (KiB) of one pamtester login, from GNU time (a small parent: its fork adds little)
    eval "$(reset_of "$1")"
    local code; code=$(oathtool --totp -b "$B32")
    echo "$code" | /usr/bin/time -f %M -o "$W/rss" pamtester "smartotp-bench-$1" $BUSER authenticate >/dev/null 2>&1 || true
    cat "$W/rss"
}

stripped=$(mktemp); strip --strip-unneeded -o "$stripped" "$MODULE"
size=$(stat -c %s "$stripped")
echo "Module: $(stat -c %s "$MODULE") bytes as built, $size stripped (as install.sh installs it; budget 300,000: $([ "$size" -le 300000 ] && echo within || echo OVER)); pam_oath.so: $(stat -c %s "$OATH") bytes + liboath $(stat -L -c %s "$(ldd "$OATH" | awk '/liboath/{print $3}')") bytes"
rm -f "$stripped"
echo
echo "| stack | users | instructions | minus pam_permit (its own stack) | wall time (ms) | peak RSS (KiB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
ratios=()
for n in $COUNTS; do
    populate "$n"
    base=$(instructions permit)
    nssbase=$(instructions permitnss)
    for svc in permit oath faillock smartotp smartotpconf permitnss oathnss smartotpnss; do
        ir=$(instructions "$svc")
        case $svc in *nss) over=$((ir - nssbase));; *) over=$((ir - base));; esac
        case $svc in oathnss) oath_over=$over;; smartotpnss) ratios+=("$n users: pam_smartotp $over, pam_oath $oath_over instructions over pam_permit after a name-service user: $(python3 -c "print('%.3f' % ($over / $oath_over))")× pam_oath");; esac
        if [ "$svc" != permit ] && [ "$svc" != permitnss ]; then
            eval "$reset"; login "$svc" || { echo "pam-bench: a $svc login failed:"; echo "$(oathtool --totp -b "$B32")" | pamtester -v "smartotp-bench-$svc" $BUSER authenticate; exit 1; }
        fi
        echo "| $svc | $n | $ir | $over | $(wall "$svc") | $(rss "$svc") |"
    done
done
echo
printf '%s\n' "${ratios[@]}"
