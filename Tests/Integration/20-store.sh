#!/usr/bin/env bash
# The store under concurrency and crashes:
#  - 32 processes present the same valid code at once: exactly one wins, every round;
#  - 32 processes for 32 different users at once: all win, no update is lost;
#  - a writer killed with SIGKILL at random moments: the record always parses and only
#    ever moves forward (old or new, never torn).
source "$(dirname "$0")/lib/testlib.sh"

SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
ROUNDS=${STORE_ROUNDS:-20}
# verify counts and locks as a login does: the racers' own policy never locks, so that
# each round measures the store alone (31 losers would lock the user under deny=5).
POLICY="$WORK/race.conf"
printf 'deny=0\n' >"$POLICY"
"$BIN/smartotp" enroll racer --force --store "$STORE" --secret "$SECRET" >/dev/null || die "enroll failed"

base=$(( $(date +%s) / 30 * 30 ))
bad_rounds=0
for round in $(seq 1 "$ROUNDS"); do
    at=$((base + round * 30))
    code=$(oathtool --totp -b "$SECRET" --now="@$at")
    pids=()
    for i in $(seq 1 32); do
        "$BIN/smartotp" verify racer --store "$STORE" --config "$POLICY" --code "$code" --at "$at" >/dev/null 2>&1 &
        pids+=($!)
    done
    wins=0
    for p in "${pids[@]}"; do if wait "$p"; then wins=$((wins + 1)); fi; done
    [ "$wins" -eq 1 ] || { bad_rounds=$((bad_rounds + 1)); echo "# round $round: $wins winners"; }
done
check "32 concurrent logins with one code: exactly one success in each of $ROUNDS rounds" 0 "$bad_rounds"

for i in $(seq 1 32); do
    "$BIN/smartotp" enroll "user$i" --force --store "$STORE" --secret "$SECRET" >/dev/null || die "enroll user$i"
done
at=$((base + 3000))
code=$(oathtool --totp -b "$SECRET" --now="@$at")
pids=()
for i in $(seq 1 32); do
    "$BIN/smartotp" verify "user$i" --store "$STORE" --config "$POLICY" --code "$code" --at "$at" >/dev/null 2>&1 &
    pids+=($!)
done
wins=0
for p in "${pids[@]}"; do if wait "$p"; then wins=$((wins + 1)); fi; done
check "32 concurrent logins of 32 users: all succeed" 32 "$wins"
step=$((at / 30))
stored=0
for i in $(seq 1 32); do
    if "$BIN/smartotp" show "user$i" --store "$STORE" --json | grep -q "\"last_used\" : $step"; then stored=$((stored + 1)); fi
done
check "every user's accepted step was stored (nothing lost)" 32 "$stored"

TRIALS=${KILL_TRIALS:-200}
"$BIN/smartotp" enroll crash --force --store "$STORE" --secret "$SECRET" >/dev/null || die "enroll crash"
last=0 torn=0 backwards=0 progressed=0
for t in $(seq 1 "$TRIALS"); do
    inode=$(stat -c "%i %.9Y" "$STORE/users/crash")
    "$BIN/smartotp-bench" churn --store "$STORE" --user crash &
    pid=$!
    sleep "$(printf '0.%03d' $((RANDOM % 150 + 50)))"  # 50-199 ms: past the writer's start, amid its writes
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    # Every write renames a new file over the record: another inode or time, a write happened.
    [ "$(stat -c "%i %.9Y" "$STORE/users/crash")" != "$inode" ] && progressed=$((progressed + 1))
    if ! json=$("$BIN/smartotp" show crash --store "$STORE" --json 2>&1); then
        torn=$((torn + 1)); echo "# trial $t: $json"; continue
    fi
    n=$(echo "$json" | sed -n 's/.*"failures" : \([0-9]*\).*/\1/p')
    [ "${n:-0}" -ge "$last" ] || backwards=$((backwards + 1))
    last=${n:-0}
done
# The two checks below mean something only if the writer was writing when it was killed.
[ $((progressed * 2)) -ge "$TRIALS" ] && ok "the churn writer wrote before most kills ($progressed of $TRIALS trials)" ||
    not_ok "the churn writer wrote before most kills" "only $progressed of $TRIALS trials saw a write"
check "SIGKILL at random moments ($TRIALS trials): the record always parses" 0 "$torn"
check "SIGKILL at random moments: the record is old or new, never older" 0 "$backwards"
finish
