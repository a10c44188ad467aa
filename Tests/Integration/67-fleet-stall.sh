#!/usr/bin/env bash
# A database stall never leaves a verdict half done (Step 1 of 4). Logins for one user race
# through both replicas from two hosts while PostgreSQL is frozen (SIGSTOP on every process
# of the cluster) past the verdicts' 2 s deadline, again and again. Then: no code was
# accepted twice, no code accepted during the race is accepted again once the database's
# own timeouts have run (an answer "accepted" whose transaction was never committed would
# be), no smartotpd connection was ever left idle in a transaction, and fresh codes log in.
#   db 10.79.0.2 · s1 .11 · s2 .12 · h1 .21 · h2 .22
source "$(dirname "$0")/lib/testlib.sh"
source "$ROOT/Tests/Integration/lib/fleet.sh"
fleet_suite ip openssl curl pamtester oathtool

P="sots$$"
NODES=(hub db s1 s2 h1 h2)
declare -A ADDR=([db]=10.79.0.2 [s1]=10.79.0.11 [s2]=10.79.0.12 [h1]=10.79.0.21 [h2]=10.79.0.22)
S1="https://${ADDR[s1]}:8443"; S2="https://${ADDR[s2]}:8443"
ROUNDS=${STALL_ROUNDS:-36}

FROZEN=()
thaw() { [ ${#FROZEN[@]} -gt 0 ] && kill -CONT "${FROZEN[@]}" 2>/dev/null; FROZEN=(); return 0; }
teardown() {
    [ -n "${STALL_KEEP:-}" ] && mkdir -p "$STALL_KEEP" && cp "$FLEET"/*.log "$FLEET"/race.* "$STALL_KEEP"/ 2>/dev/null
    thaw
    touch "$FLEET/stop-churn"
    fleet_stop
    local n
    for n in "${NODES[@]}"; do ip netns del "$P$n" 2>/dev/null; done
    rm -f /etc/pam.d/"$P"-*
}
at_exit teardown
fleet_net db s1 s2 h1 h2 || { echo "not ok 1 - cannot create network namespaces (needs root and CAP_NET_ADMIN)"; exit 1; }

fleet_ca server-ca "smartotp servers"; fleet_ca hosts-ca "smartotp hosts"; fleet_ca admin-ca "smartotp admins"
for s in s1 s2; do fleet_cert server-ca "$s" serverAuth "DNS:$s,IP:${ADDR[$s]}"; done
for h in h1 h2; do fleet_cert hosts-ca "$h" clientAuth; fleet_identity "$h" >/dev/null; done
fleet_cert admin-ca admin1 clientAuth; ADMIN=$(fleet_identity admin1)
: >"$FLEET/revoked"
fleet_pg_start "${ADDR[db]}" 5432 "${P}db" || { not_ok "PostgreSQL starts" "$(tail -5 "$FLEET/pg/log" 2>/dev/null)"; finish; exit 1; }
DBURL="postgres://smartotpd@${ADDR[db]}:5432/smartotp?sslmode=disable"
# Nine of a race's ten logins find the code used, and the churn below fails for ever: no lock.
for s in s1 s2; do fleet_config "$s" "${ADDR[$s]}:8443" "$DBURL"; sed -i "s/^policy = .*/policy = deny=0\ndatabase_connections = 4/" "$FLEET/$s.conf"; done
in_ns s1 "$SMARTOTPD" migrate --config "$FLEET/s1.conf" >/dev/null 2>&1
check "smartotpd migrate" 0 "$?"
fleet_server_start s1 "${P}s1"; fleet_server_start s2 "${P}s2"
curl_as() { local who=$1 ns=$2; shift 2; in_ns "$ns" curl -s --max-time 5 --cacert "$FLEET/tls/$who/ca.pem" --cert "$FLEET/tls/$who/cert.pem" --key "$FLEET/tls/$who/key.pem" "$@"; }
ready() { local i; for i in $(seq 1 50); do curl_as admin1 h1 -f --max-time 1 "$1/v1/health" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
ready "$S1" && ready "$S2" && ok "two replicas answer" || { not_ok "replicas ready" "$(tail -3 "$FLEET/s1.log")"; finish; exit 1; }

# h1 asks s1 first, h2 asks s2 first: both replicas decide on the same rows at once. A
# verifier that gives no verdict in time (503) sends the client on to the other.
echo "auth required $SO methods=code server=$S1,$S2 tls_dir=$FLEET/tls/h1 client=$CLIENT server_timeout=8" >/etc/pam.d/"$P-h1"
echo "auth required $SO methods=code server=$S2,$S1 tls_dir=$FLEET/tls/h2 client=$CLIENT server_timeout=8" >/etc/pam.d/"$P-h2"
admin() { in_ns h1 "$CLI" "$@" --server "$S1,$S2" --tls-dir "$ADMIN"; }
HOTP_B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
OK="pamtester: successfully authenticated"
login() { nss_user "$2"; echo "$3" | in_ns "$1" "${NSS_ENV[@]}" pamtester "$P-$1" "$2" authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1; }
psql_db() { runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p 5432 -U postgres -d smartotp -qAtc "$1"; }
# A user a round, enrolled once: the round's code is that user's first, so a use that was
# answered but never committed shows as the same code accepted a second time.
enrolled=0
for r in $(seq 1 "$ROUNDS"); do
    echo "$HOTP_B32" | admin enroll "stall$r" --secret - --hotp --force >/dev/null 2>&1 && enrolled=$((enrolled + 1))
done
check "$ROUNDS users enrolled" "$ROUNDS" "$enrolled"

# The cluster's processes: the postmaster and its children (by PID, never by name).
cluster() { local pm; pm=$(head -1 "$FLEET/pg/data/postmaster.pid"); echo "$pm" $(ps -o pid= --ppid "$pm"); }
# Every third round the whole cluster stops for 2.5 s: past the verdicts' 2 s deadline,
# short of the hosts' server_timeout. Half of the round's logins are in flight when it
# stops, the other half start the moment it runs again and meet whatever the stall left in
# the replicas' pools; 2.5 s later the replicas' connections are looked at: a transaction
# left behind shows as "idle in transaction" for more than a second and a half (one in
# progress waits for its next statement for milliseconds), until
# idle_in_transaction_session_timeout ends it 5 s after it stopped, rolling back whatever
# was answered on that connection meanwhile; a failed one left behind as "idle in
# transaction (aborted)" (a ROLLBACK follows a failure at once), where every statement lent
# it fails until a restart.
# All the while, wrong codes for one more user and for a name without a record race from
# both hosts to both replicas (lib/churn.py, a keep-alive connection each): a verdict that
# loses its race three times, and one for a name without a record, is decided in the locked
# transaction (BEGIN … COMMIT), so whenever the cluster stops, some of those are in flight.
echo "$HOTP_B32" | admin enroll churn --secret - --hotp --force >/dev/null 2>&1
CHURN=()
for h in h1 h2; do for s in s1 s2; do
    in_ns "$h" python3 "$ROOT/Tests/Integration/lib/churn.py" "${ADDR[$s]}" "$FLEET/tls/$h" "$FLEET/stop-churn" \
        /v1/verify/code/churn /v1/verify/code/nobody >"$FLEET/churn.$h.$s" 2>&1 & CHURN+=($!)
done; done
idle_in_tx() {
    local q="FROM pg_stat_activity WHERE application_name = 'smartotpd' AND (state = 'idle in transaction' AND now() - state_change > interval '1.5 seconds'
        OR state = 'idle in transaction (aborted)' AND now() - state_change > interval '0.2 seconds')"
    [ -n "${STALL_KEEP:-}" ] && psql_db "SELECT pid, state, backend_start, state_change, query $q" >>"$STALL_KEEP/idle.txt"
    psql_db "SELECT count(*) $q"
}
twice=0; stalls=0; looks=0; idle=0
declare -A accepted=()
for r in $(seq 1 "$ROUNDS"); do
    code=$(oathtool --hotp -c 1 -b "$HOTP_B32")
    rm -f "$FLEET"/race.*
    jobs=()
    race() { local i; for i in "$@"; do login "h$(( i % 2 + 1 ))" "stall$r" "$code" >"$FLEET/race.$i" & jobs+=($!); done; }
    if [ $((r % 3)) -eq 0 ]; then
        race 1 2 3 4 5
        sleep "0.$((RANDOM % 3 + 1))$((RANDOM % 10))"
        FROZEN=($(cluster))
        kill -STOP "${FROZEN[@]}" 2>/dev/null && stalls=$((stalls + 1))
        sleep 2.5
        thaw
        race 6 7 8 9 10
        sleep 2.5
        n=$(idle_in_tx); looks=$((looks + 1))
        [ "${n:-0}" -gt 0 ] && { idle=$((idle + 1)); echo "# round $r: $n smartotpd connection(s) idle in transaction after the stall"; }
    else
        race 1 2 3 4 5 6 7 8 9 10
    fi
    for j in "${jobs[@]}"; do wait "$j"; done
    wins=$(grep -l "$OK" "$FLEET"/race.* 2>/dev/null | wc -l)
    [ "$wins" -gt 1 ] && { twice=$((twice + 1)); echo "# round $r: $wins logins accepted one code"; }
    [ "$wins" -ge 1 ] && accepted[$r]=1
done
touch "$FLEET/stop-churn"; for j in "${CHURN[@]}"; do wait "$j"; done
[ "$stalls" -ge 5 ] && ok "$ROUNDS rounds of 10 racing logins (two hosts, two replicas), $stalls of them through a stall of 2.5 s" ||
    not_ok "the database was frozen during the race at least five times" "$stalls stalls"
check "no code was accepted twice in a race" 0 "$twice"
[ "${#accepted[@]}" -ge $((ROUNDS / 2)) ] && ok "${#accepted[@]} of $ROUNDS rounds accepted their code (the others got no verdict in time)" ||
    not_ok "most rounds get a verdict" "${#accepted[@]} of $ROUNDS"
check "no smartotpd connection idle in a transaction after any stall ($looks looks)" 0 "$idle"
# Past idle_in_transaction_session_timeout (5 s): an abandoned transaction has rolled back by
# now, and with it any use it held.
sleep 8
check "… nor now" 0 "$(idle_in_tx)"
again=0
for r in "${!accepted[@]}"; do
    out=$(login "h$(( r % 2 + 1 ))" "stall$r" "$(oathtool --hotp -c 1 -b "$HOTP_B32")")
    [ "$out" = "$OK" ] && { again=$((again + 1)); echo "# stall$r: its code was accepted again"; }
done
check "no code accepted in the race is accepted again 8 s later (${#accepted[@]} tried)" 0 "$again"
fresh=0
for r in 1 2 3; do h="h$(( r % 2 + 1 ))"; [ "$(login "$h" "stall$r" "$(oathtool --hotp -c 2 -b "$HOTP_B32")")" = "$OK" ] && fresh=$((fresh + 1)); done
check "fresh codes log in afterwards, on both hosts" 3 "$fresh"
n=$(grep -c "did not answer in time\|cannot answer now\|request failed" "$FLEET"/s1.log "$FLEET"/s2.log | awk -F: '{s += $2} END {print s + 0}')
[ "$n" -gt 0 ] && ok "the replicas logged the verdicts they could not give in time ($n lines)" || not_ok "the stalls reached the replicas" "no deadline in their logs"

finish
