#!/usr/bin/env bash
# Insiders who cannot turn the fleet (Step 2 of 4), and the fleet's side of a rollout (Step 3:
# host scope, hosts that join and renew, SIGHUP). Each attack is run as the attacker would
# run it, and must fail: a database writer (psql as PostgreSQL's superuser) plants a
# recovery code, resets a used counter, lifts a revocation, puts an earlier enrolment's
# sealed secret back, cuts an audit chain; the helpdesk reads hashes and asks for verdicts;
# a stolen host certificate bursts wrong codes through both replicas, forges offline reports
# and holds connections; a local user of a host fails verdicts through the setuid helper
# and signals the fleet client. Namespaces on a bridge, as in 65-fleet:
#   db 10.80.0.2 · s1 .11 · s2 .12 · h1 .21 · h2 .22
source "$(dirname "$0")/lib/testlib.sh"
source "$ROOT/Tests/Integration/lib/fleet.sh"
fleet_suite ip openssl curl pamtester oathtool python3 setpriv

P="sotr$$"
NODES=(hub db s1 s2 h1 h2)
declare -A ADDR=([db]=10.80.0.2 [s1]=10.80.0.11 [s2]=10.80.0.12 [h1]=10.80.0.21 [h2]=10.80.0.22)
S1="https://${ADDR[s1]}:8443"; S2="https://${ADDR[s2]}:8443"
teardown() {
    fleet_stop
    local n
    for n in "${NODES[@]}"; do ip netns del "$P$n" 2>/dev/null; done
    rm -f /etc/pam.d/"$P"-h1 /etc/pam.d/"$P"-h2
}
at_exit teardown
fleet_net db s1 s2 h1 h2 || { echo "not ok 1 - cannot create network namespaces (needs root and CAP_NET_ADMIN)"; exit 1; }

fleet_ca server-ca "smartotp servers"; fleet_ca hosts-ca "smartotp hosts"; fleet_ca admin-ca "smartotp admins"
fleet_ca helpdesk-ca "smartotp helpdesk"
for s in s1 s2; do fleet_cert server-ca "$s" serverAuth "DNS:$s,IP:${ADDR[$s]}"; done
for h in h1 h2; do fleet_cert hosts-ca "$h" clientAuth; fleet_identity "$h" >/dev/null; done
fleet_cert admin-ca admin1 clientAuth; ADMIN=$(fleet_identity admin1)
fleet_cert helpdesk-ca desk1 clientAuth; DESK=$(fleet_identity desk1)
: >"$FLEET/revoked"
fleet_pg_start "${ADDR[db]}" 5432 "${P}db" || { not_ok "PostgreSQL starts" "$(tail -5 "$FLEET/pg/log" 2>/dev/null)"; finish; exit 1; }
DBURL="postgres://smartotpd@${ADDR[db]}:5432/smartotp?sslmode=disable"
for s in s1 s2; do
    fleet_config "$s" "${ADDR[$s]}:8443" "$DBURL" "helpdesk_ca = $FLEET/pki/helpdesk-ca.pem
audit_checkpoint_interval = 1s
metrics_listen = ${ADDR[$s]}:9464
max_connections_per_certificate = 4"
    sed -i 's/^policy = .*/policy = deny=5 unlock_time=600/' "$FLEET/$s.conf"
done
in_ns s1 "$SMARTOTPD" migrate --config "$FLEET/s1.conf" >/dev/null 2>&1
check "smartotpd migrate" 0 "$?"
curl_as() { local who=$1 ns=$2; shift 2; in_ns "$ns" curl -s --max-time 5 --cacert "$FLEET/tls/$who/ca.pem" --cert "$FLEET/tls/$who/cert.pem" --key "$FLEET/tls/$who/key.pem" "$@"; }
ready() { local i; for i in $(seq 1 50); do curl_as admin1 h1 -f --max-time 1 "$1/v1/health" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
start_replicas() {
    fleet_server_start s1 "${P}s1"; fleet_server_start s2 "${P}s2"
    ready "$S1" && ready "$S2"
}
restart_replicas() { fleet_kill "${FLEET_SERVER_PID[s1]}"; fleet_kill "${FLEET_SERVER_PID[s2]}"; start_replicas; }
start_replicas && ok "two replicas answer" || { not_ok "replicas ready" "$(tail -3 "$FLEET/s1.log")"; finish; exit 1; }

echo "auth required $SO methods=code,password server=$S1,$S2 tls_dir=$FLEET/tls/h1 client=$CLIENT server_timeout=5" >/etc/pam.d/"$P-h1"
echo "auth required $SO methods=code,password server=$S2,$S1 tls_dir=$FLEET/tls/h2 client=$CLIENT server_timeout=5" >/etc/pam.d/"$P-h2"
admin() { in_ns h1 "$CLI" "$@" --server "$S1,$S2" --tls-dir "$ADMIN"; }
desk() { in_ns h1 "$CLI" "$@" --server "$S1,$S2" --tls-dir "$DESK"; }
OK="pamtester: successfully authenticated"
UNAVAIL="pamtester: Authentication service cannot retrieve authentication info"
nss_user alice bob carol dave erin $(seq -f w%g 1 30)
login() { nss_user "$2"; printf '%s\n' "${@:3}" | in_ns "$1" "${NSS_ENV[@]}" pamtester "$P-$1" "$2" authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1; }
psql_db() { runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p 5432 -U postgres -d smartotp -qAtc "$1"; }
HOTP_B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
# Each user's next HOTP code (a file a user: `next` runs in command substitutions).
enroll_hotp() { echo "$HOTP_B32" | admin enroll "$1" --secret - --hotp --force >/dev/null 2>&1; rm -f "$FLEET/counter.$1"; }
next() { local f="$FLEET/counter.$1" c; c=$(cat "$f" 2>/dev/null || echo 0); echo $((c + 1)) >"$f"; oathtool --hotp -b "$HOTP_B32" --counter="$c"; }

# --- A database writer ----------------------------------------------------------------------
enroll_hotp alice
check "alice logs in" "$OK" "$(login h1 alice "$(next alice)")"
hash=$(python3 -c 'import crypt; print(crypt.crypt("abcdabcdabcd", crypt.mksalt(crypt.METHOD_SHA512)))' 2>/dev/null)
psql_db "UPDATE smartotp_records SET record = record || 'recovery $hash' || E'\n' WHERE username = 'alice'" >/dev/null
check "a recovery code the writer planted in the row logs nobody in" "$UNAVAIL" "$(login h1 alice abcd-abcd-abcd)"
grep -q "alice: the row was changed outside smartotpd" "$FLEET"/s1.log "$FLEET"/s2.log && ok "… and the refusal names the row" || not_ok "the planted row is logged"
admin remove alice >/dev/null 2>&1

enroll_hotp bob
used=$(next bob)
check "bob logs in with his code" "$OK" "$(login h1 bob "$used")"
psql_db "UPDATE smartotp_records SET record = regexp_replace(record, 'last=[0-9]+', 'last=-') WHERE username = 'bob'" >/dev/null
check "the used counter reset in SQL: the code is not accepted again" "$UNAVAIL" "$(login h2 bob "$used")"
admin remove bob >/dev/null 2>&1

# An earlier enrolment's sealed secret put back under the same token id.
echo "$HOTP_B32" | admin enroll carol --secret - --hotp --force >/dev/null 2>&1
old=$(psql_db "SELECT sealed FROM smartotp_secrets WHERE username = 'carol'")
admin remove carol --token code >/dev/null 2>&1
sleep 1
echo "MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK" | admin enroll carol --secret - --hotp --force >/dev/null 2>&1
check "carol's new token has the same id as the one removed" "code" "$(psql_db "SELECT token_id FROM smartotp_secrets WHERE username = 'carol'")"
psql_db "UPDATE smartotp_secrets SET sealed = '$old' WHERE username = 'carol'" >/dev/null
check "the removed token's sealed secret put back: its codes log nobody in" "$UNAVAIL" \
    "$(login h1 carol "$(oathtool --hotp -b "$HOTP_B32" --counter=0)")"
admin remove carol >/dev/null 2>&1

# A revocation lifted in SQL: the replicas that saw it keep it.
enroll_hotp dave
out=$(admin revoke-host h2 2>&1)
case "$out" in *"revoked h2"*) ok "revoke-host h2";; *) not_ok "revoke-host h2" "$out";; esac
sleep 3
psql_db "DELETE FROM smartotp_revocations" >/dev/null
psql_db "INSERT INTO smartotp_revocations (entry, revoked_by) VALUES ('h1', 'writer')" >/dev/null
sleep 3
check "the revocation row deleted in SQL: h2 stays refused" "$UNAVAIL" "$(login h2 dave "$(next dave)")"
check "a revocation row planted in SQL (no mac) fails closed: h1 is refused too, until restored" "$UNAVAIL" "$(login h1 dave "$(next dave)")"
grep -q "the revocation of h2 vanished from the database" "$FLEET"/s1.log "$FLEET"/s2.log && ok "… and both are logged" || not_ok "the lifted revocation is logged"
psql_db "DELETE FROM smartotp_revocations WHERE entry = 'h1'" >/dev/null
out=$(admin revoke-host --restore h2 2>&1)
sleep 3
check "an administrator's restore lifts it" "$OK" "$(login h2 dave "$(next dave)")"

# The database reached over TCP without verify-full: refused unless said in words.
grep -v '^database_tls' "$FLEET/s1.conf" >"$FLEET/plain.conf"
out=$(in_ns s1 timeout 20 "$SMARTOTPD" --config "$FLEET/plain.conf" 2>&1); rc=$?
case "$rc:$out" in 1:*"over TCP with sslmode=disable"*"database_tls = insecure"*) ok "a TCP database below verify-full is refused at start (database_tls)";;
    *) not_ok "a TCP database below verify-full is refused" "$rc: $(echo "$out" | tail -2)";; esac

# --- The helpdesk -----------------------------------------------------------------------------
echo 2468 | admin passwd dave --password-stdin --force >/dev/null 2>&1
out=$(desk show dave 2>&1)
case "$out" in *'$y$'*|*'$6$'*) not_ok "the helpdesk reads no hash" "$out";; *"simple password set"*) ok "the helpdesk reads no hash: \"simple password set\"";; *) not_ok "desk show" "$out";; esac
code=$(curl_as desk1 h1 -o /dev/null -w '%{http_code}' -X POST --data-binary $'2468\n' "$S1/v1/verify/password/dave")
check "a helpdesk certificate gets no verdict (403)" 403 "$code"
code=$(curl_as admin1 h1 -o /dev/null -w '%{http_code}' -X POST --data-binary $'2468\n' "$S1/v1/verify/password/dave")
check "… nor an administrator's" 403 "$code"

# --- A stolen host certificate: budgets are the fleet's ----------------------------------------
for s in s1 s2; do
    sed -i -e 's#^host_failure_budget = .*#host_failure_budget = 10/15m#' -e 's#^host_request_budget = .*#host_request_budget = 200/15m#' "$FLEET/$s.conf"
done
restart_replicas || not_ok "replicas restart" "$(tail -3 "$FLEET/s1.log")"
# Offline reports (before the burst below spends h1's budgets): a host cannot write one for a
# name without a record.
n=$(psql_db "SELECT count(*) FROM smartotp_audit WHERE operation = 'offline-tap' AND username = 'nobody'")
code=$(curl_as h1 h1 -o /dev/null -w '%{http_code}' -X POST --data-binary "$(date +%s) success sudo -" "$S1/v1/verify/offline/nobody")
check "an offline report for a name without a record is answered and writes nothing" "200 $n" \
    "$code $(psql_db "SELECT count(*) FROM smartotp_audit WHERE operation = 'offline-tap' AND username = 'nobody'")"
for i in $(seq 1 30); do enroll_hotp "w$i"; done
# 30 wrong codes for 30 users at once, half through s1 first, half through s2 first.
pids=()
for i in $(seq 1 30); do
    h=h1; [ $((i % 2)) = 0 ] && h=h2
    ( nss_user "w$i"; echo 000000 | in_ns "$h" "${NSS_ENV[@]}" pamtester "$P-$h" "w$i" authenticate >/dev/null 2>&1 ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
# h2 has its own budget; h1 made 15 of them, h2 15: each host at most 10 failures fleet-wide.
for h in h1 h2; do
    n=$(psql_db "SELECT count(*) FROM smartotp_audit WHERE actor = '$h' AND result = 'rejected' AND username LIKE 'w%'")
    [ "$n" -le 10 ] && ok "a burst of 15 wrong codes from $h through both replicas: $n counted (budget 10, fleet-wide)" || not_ok "$h's failure budget holds fleet-wide" "$n counted"
done
# Offline reports: every line a request; a host cannot fill the trail.
report=$(for i in $(seq 1 64); do echo "$(date +%s) success sudo -"; done)
a=$(curl_as h1 h1 -o /dev/null -w '%{http_code}' -X POST --data-binary "$report" "$S1/v1/verify/offline/w1")
b=$(curl_as h1 h1 -o /dev/null -w '%{http_code}' -X POST --data-binary "$report" "$S2/v1/verify/offline/w1")
c=$(curl_as h1 h1 -o /dev/null -w '%{http_code}' -X POST --data-binary "$report" "$S1/v1/verify/offline/w1")
d=$(curl_as h1 h1 -o /dev/null -w '%{http_code}' -X POST --data-binary "$report" "$S2/v1/verify/offline/w1")
case "$a $b $c $d" in *429*) ok "offline reports are charged a request a line: a host's request budget ends them ($a $b $c $d)";;
    *) not_ok "offline reports are charged" "$a $b $c $d";; esac
for s in s1 s2; do sed -i -e 's#^host_request_budget = .*#host_request_budget = off#' "$FLEET/$s.conf"; done
restart_replicas || not_ok "replicas restart" "$(tail -3 "$FLEET/s1.log")"

# Connections: a certificate holds at most 4 (max_connections_per_certificate here); a
# revoked one is closed when its handshake completes.
held=$(in_ns h1 python3 - "${ADDR[s1]}" "$FLEET/tls/h1" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2] + "/ca.pem")
ctx.load_cert_chain(sys.argv[2] + "/cert.pem", sys.argv[2] + "/key.pem")
ctx.check_hostname = False
conns = []
for i in range(7):
    raw = socket.create_connection((sys.argv[1], 8443), timeout=5)
    try:
        conns.append(ctx.wrap_socket(raw))
    except OSError:
        pass
time.sleep(0.5)
alive = 0
for c in conns:
    try:
        c.settimeout(0.5)
        c.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        if c.recv(64).startswith(b"HTTP/1.1 200"):
            alive += 1
    except OSError:
        pass
print(alive)
PY
)
check "one certificate holds at most 4 connections to a replica" 4 "$held"

# --- A local user of a host: their own failures spend their own share ------------------------
public_dir
install -o root -g root -m 4755 "$HELPER" "$PUB/smartotp-chkotp"
backup /etc/smartotp/smartotp.conf
mkdir -p /etc/smartotp
printf 'server=%s,%s\ntls_dir=%s\nclient=%s\nserver_timeout=5\n' "$S1" "$S2" "$FLEET/tls/h1" "$CLIENT" >/etc/smartotp/smartotp.conf
# h1's failure budget: 30 (10 spent above); each user's share of it: 5.
for s in s1 s2; do
    sed -i -e 's#^host_user_failure_budget = .*#host_user_failure_budget = 5/15m#' -e 's#^host_failure_budget = .*#host_failure_budget = 30/15m#' "$FLEET/$s.conf"
done
restart_replicas || not_ok "replicas restart" "$(tail -3 "$FLEET/s1.log")"
add_user smartotp-ins
enroll_hotp smartotp-ins
for i in $(seq 1 30); do
    printf 'card\n00\n00\n' | in_ns h1 runuser -u smartotp-ins -- "$PUB/smartotp-chkotp" smartotp-ins access >/dev/null 2>&1
    printf '000000\n' | in_ns h1 runuser -u smartotp-ins -- "$PUB/smartotp-chkotp" smartotp-ins code >/dev/null 2>&1
done
n=$(psql_db "SELECT count(*) FROM smartotp_audit WHERE actor = 'h1' AND username = 'smartotp-ins' AND result IN ('rejected', 'none')")
[ "$n" -le 5 ] && ok "60 failed verdicts of a local user's own, through the helper: $n counted against h1 (the user's share, 5)" ||
    not_ok "a local user spends only their own share" "$n"
enroll_hotp erin
check "… and every other user still logs in on that host" "$OK" "$(login h1 erin "$(next erin)")"

# The fleet client the module starts inside an application runs as root and in a session of
# its own: the application's user cannot stop it past its timeout.
sleep 5 | setpriv --ruid="$(id -u smartotp-ins)" "$CLIENT" --session -- "server=$S1,$S2" "tls_dir=$FLEET/tls/h1" server_timeout=5 >/dev/null 2>&1 &
cpid=$!
sleep 1
check "the fleet client, started with the user's real uid (as inside sudo), takes root as its real uid" "0" \
    "$(awk '/^Uid:/{print $2}' /proc/$cpid/status 2>/dev/null)"
if [ ! -d "/proc/$cpid" ]; then not_ok "the fleet client is still waiting for its request" "it has exited"
elif runuser -u smartotp-ins -- kill -STOP "$cpid" 2>/dev/null; then not_ok "the user cannot stop the fleet client"
else ok "the user cannot stop the fleet client (SIGSTOP: not permitted)"; fi
kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null

# --- Self-service through the fleet (Step 3): the helpdesk invites; the user, on h1, enrols -----
# their own phone and sets their own simple password through the setuid helper and the fleet
# client (root's smartotp.conf above names the verifiers).
add_user smartotp-ss2
cp "$CLI" "$PUB/smartotp"; chmod 755 "$PUB/smartotp"
ss2() { in_ns h1 runuser -u smartotp-ss2 -- "$PUB/smartotp" "$@" --helper "$PUB/smartotp-chkotp"; }
inv=$(desk invite smartotp-ss2 --valid 1h 2>/dev/null)
case "$inv" in ????-????-????) ok "the helpdesk invites a user ($inv)";; *) not_ok "helpdesk invite" "$inv";; esac
out=$(echo "$inv" | ss2 enroll --self 2>&1); rc=$?
SS2=$(sed -n 's/.*secret=\([A-Z2-7]*\).*/\1/p' <<<"$out" | head -1)
case "$rc:$out" in 0:*"otpauth://"*) ok "enroll --self through the fleet: the user's phone token, pending";; *) not_ok "enroll --self through the fleet" "$rc: $out";; esac
out=$(oathtool --totp -b "$SS2" | ss2 enroll --self --confirm 2>&1); rc=$?
case "$rc:$out" in 0:*"is confirmed"*) ok "… confirmed with the phone's code";; *) not_ok "confirm through the fleet" "$rc: $out";; esac
out=$(echo "$inv" | ss2 enroll --self 2>&1); rc=$?
case "$rc:$out" in 1:*"not valid"*) ok "… the invitation works once, fleet-wide";; *) not_ok "single-use invitation in the fleet" "$rc: $out";; esac
out=$(printf '%s\n\n8642\n' "$(oathtool --totp -b "$SS2" --now=@$(( $(date +%s) + 30 )))" | ss2 passwd --password-stdin 2>&1); rc=$?
case "$rc:$out" in 0:*"Simple password changed"*) ok "passwd by the user through the fleet, after a code of theirs";; *) not_ok "self passwd through the fleet" "$rc: $out";; esac
check "each step in the audit trail, with h1 as the host" "self-confirm self-enroll self-passwd" \
    "$(psql_db "SELECT DISTINCT operation FROM smartotp_audit WHERE username = 'smartotp-ss2' AND actor = 'h1' AND result = 'accepted' ORDER BY 1" | tr '\n' ' ' | sed 's/ $//')"
check "… the invitation by the helpdesk" 1 "$(psql_db "SELECT count(*) FROM smartotp_audit WHERE username = 'smartotp-ss2' AND operation = 'invite' AND actor = 'desk1'")"
out=$(desk invite smartotp-ss2 2>&1); rc=$?
case "$rc:$out" in 1:*"enrolled already"*) ok "the helpdesk cannot invite a user who is enrolled (no token of its own through the back door)";; *) not_ok "helpdesk invite of an enrolled user" "$rc: $out";; esac

# --- The audit chain: a cut tail or a wiped chain, found by the journal's checkpoints ---------
login h1 nobody1 000000 >/dev/null; login h1 nobody2 000000 >/dev/null; login h1 nobody3 000000 >/dev/null
sleep 2
in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" >/dev/null 2>&1
check "audit-verify: the trail is intact before the cut" 0 "$?"
seq0=$(psql_db "SELECT seq FROM smartotp_audit_heads WHERE chain = 0")
psql_db "DELETE FROM smartotp_audit WHERE chain = 0 AND seq > $((seq0 - 2))" >/dev/null
psql_db "UPDATE smartotp_audit_heads SET seq = $((seq0 - 2)), mac = (SELECT mac FROM smartotp_audit WHERE chain = 0 AND seq = $((seq0 - 2))) WHERE chain = 0" >/dev/null
in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" >/dev/null 2>&1
check "chain 0's last two rows cut and its head rewound: the database alone cannot tell" 0 "$?"
cat "$FLEET"/s1.log "$FLEET"/s2.log >"$FLEET/journal"
out=$(in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" --checkpoints "$FLEET/journal" 2>&1); rc=$?
case "$rc:$out" in 1:*"chain 0 ends at seq"*"were cut"*) ok "audit-verify --checkpoints finds the cut tail";; *) not_ok "the checkpoints find the cut" "$rc: $out";; esac
psql_db "DELETE FROM smartotp_audit WHERE chain = 0" >/dev/null
psql_db "UPDATE smartotp_audit_heads SET seq = 0, mac = '' WHERE chain = 0" >/dev/null
out=$(in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" --checkpoints "$FLEET/journal" 2>&1); rc=$?
case "$rc:$out" in 1:*"wiped"*) ok "… and a wiped chain";; *) not_ok "the checkpoints find the wiped chain" "$rc: $out";; esac
sed 's/tag=\([0-9a-f]\)/tag=0\1/' "$FLEET/journal" | grep 'audit checkpoint' | head -1 >"$FLEET/forged"
out=$(in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" --checkpoints "$FLEET/forged" 2>&1); rc=$?
case "$rc:$out" in 1:*"not under the audit key"*) ok "a checkpoint line not under the audit key is reported";; *) not_ok "a forged checkpoint" "$rc: $out";; esac

# --- Host scope: web servers may not ask about the database administrators -------------------
# (Step 3.) The verifier's own name service decides membership: real groups and users here.
groupadd smartotp-dba && at_exit "groupdel smartotp-dba 2>/dev/null"
add_user smartotp-sc1; usermod -aG smartotp-dba smartotp-sc1
add_user smartotp-sc2
enroll_hotp smartotp-sc1; enroll_hotp smartotp-sc2
for s in s1 s2; do printf 'scope = h1 *\nscope = h2 smartotp-dba\n' >>"$FLEET/$s.conf"; done
restart_replicas || not_ok "replicas restart with scope lines" "$(tail -3 "$FLEET/s1.log")"
check "scope: h2 may ask about a member of smartotp-dba" "$OK" "$(login h2 smartotp-sc1 "$(next smartotp-sc1)")"
check "… not about anyone else: refused (no verdict)" "$UNAVAIL" "$(login h2 smartotp-sc2 "$(next smartotp-sc2)")"
n=$(psql_db "SELECT count(*) FROM smartotp_audit WHERE chain = 0 AND actor = 'h2' AND username = 'smartotp-sc2' AND result = 'out-of-scope'")
[ "$n" -ge 1 ] && ok "… audited in chain 0 ($n row(s): out-of-scope, the user named)" || not_ok "out of scope is audited" "$n"
check "… and the code h2 sent was not spent: it logs in on h1 (scope = h1 *)" "$OK" "$(login h1 smartotp-sc2 "$(oathtool --hotp -b "$HOTP_B32" --counter=0)")"
check "… with no failure counted against the user" 0 "$(psql_db "SELECT count(*) FROM smartotp_audit WHERE username = 'smartotp-sc2' AND result = 'rejected'")"
for s in s1 s2; do sed -i '/^scope = /d' "$FLEET/$s.conf"; done
restart_replicas || not_ok "replicas restart" "$(tail -3 "$FLEET/s1.log")"

# --- Hosts that join: a one-time token, a certificate from the host CA, renewal, expiry ---------
# (Step 3.) The replicas sign with the hosts' CA key (host_ca_key); web9 joins from h2's namespace.
for s in s1 s2; do printf 'host_ca_key = %s\nhost_cert_days = 3\n' "$FLEET/pki/hosts-ca.key" >>"$FLEET/$s.conf"; done
restart_replicas || not_ok "replicas restart with host_ca_key" "$(tail -3 "$FLEET/s1.log")"
token=$(admin hosts add web9 --valid 1h 2>&1)
case "$token" in web9.*) ok "smartotp hosts add: a one-time join token for web9";; *) not_ok "hosts add" "$token";; esac
desk_out=$(desk hosts add web10 2>&1)
case "$desk_out" in *403*|*"administrator"*) ok "… the helpdesk may not make one";; *) not_ok "the helpdesk makes no join token" "$desk_out";; esac
WEB9="$FLEET/tls/web9"
out=$(in_ns h2 "$CLI" join --server "$S2,$S1" --token "${token}x" --tls-dir "$WEB9" --ca "$FLEET/pki/server-ca.pem" 2>&1); rc=$?
case "$rc:$out" in 1:*"not valid"*) ok "a tampered token is refused";; *) not_ok "a tampered join token" "$rc: $out";; esac
out=$(echo "$token" | in_ns h2 "$CLI" join --server "$S2,$S1" --token - --tls-dir "$WEB9" --ca "$FLEET/pki/server-ca.pem" 2>&1); rc=$?
case "$rc:$out" in 0:*"Joined the fleet"*) ok "smartotp join: web9 makes its key and gets its certificate ($(echo "$out" | grep -o 'valid until [^.]*'))";;
    *) not_ok "smartotp join" "$rc: $out";; esac
check "… the key stays root's, 0600; the certificate names web9, signed by the hosts' CA" "600 root CN = web9 OK" \
    "$(stat -c '%a %U' "$WEB9/key.pem") $(openssl x509 -noout -subject -in "$WEB9/cert.pem" 2>/dev/null | sed 's/^subject=//') $(openssl verify -CAfile "$FLEET/pki/hosts-ca.pem" "$WEB9/cert.pem" 2>&1 | awk '{print $NF}')"
out=$(in_ns h1 "$CLI" join --server "$S1" --token "$token" --tls-dir "$FLEET/tls/web9b" --ca "$FLEET/pki/server-ca.pem" 2>&1); rc=$?
case "$rc:$out" in 1:*"used already"*) ok "… the token works once, fleet-wide (the other replica refuses it: 409)";; *) not_ok "a join token is single use" "$rc: $out";; esac
echo "auth required $SO methods=code server=$S1,$S2 tls_dir=$WEB9 client=$CLIENT server_timeout=5" >/etc/pam.d/"$P-web9"
at_exit "rm -f /etc/pam.d/$P-web9"
web9() { nss_user "$1"; printf '%s\n' "$2" | in_ns h2 "${NSS_ENV[@]}" pamtester "$P-web9" "$1" authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1; }
enroll_hotp joiner; nss_user joiner
check "a login through the joined host" "$OK" "$(web9 joiner "$(next joiner)")"
check "… audited with web9 as the actor" 1 "$(psql_db "SELECT count(*) FROM smartotp_audit WHERE actor = 'web9' AND username = 'joiner' AND result = 'accepted'")"
check "… and its join too (host-join, chain 0)" 1 "$(psql_db "SELECT count(*) FROM smartotp_audit WHERE chain = 0 AND operation = 'host-join' AND actor = 'web9'")"
printf 'server=%s,%s\ntls_dir=%s\n' "$S1" "$S2" "$WEB9" >"$FLEET/web9.conf"
out=$(in_ns h2 "$CLI" check --conf "$FLEET/web9.conf" 2>&1)
case "$out" in *"OK    $FLEET/web9.conf reads as every login reads it"*"OK    the host certificate is valid until"*"OK    verifier $S1 answers this host"*"OK    verifier $S2 answers this host"*)
    ok "smartotp check on the joined host: smartotp.conf, the certificate's end, both verifiers";; *) not_ok "smartotp check on a fleet host" "$out";; esac
out=$(admin hosts list 2>&1)
case "$out" in *"web9  serial"*"until 20"*"last seen"*) ok "smartotp hosts list shows web9's certificate and its end";; *) not_ok "hosts list" "$out";; esac
curl -s --max-time 5 "http://${ADDR[s1]}:9464/metrics" >/dev/null 2>&1 || true
m=$(in_ns h1 curl -s --max-time 5 "http://${ADDR[s1]}:9464/metrics" | grep -c 'smartotpd_host_certificate_expiry_seconds{host="web9"}')
check "… and the metric smartotpd_host_certificate_expiry_seconds names it" 1 "$m"
serial0=$(openssl x509 -noout -serial -in "$WEB9/cert.pem")
cp "$WEB9/cert.pem" "$FLEET/web9-old.pem"; cp "$WEB9/key.pem" "$FLEET/web9-old.key"
out=$(in_ns h2 "$CLI" renew --if-due --server "$S1,$S2" --tls-dir "$WEB9" 2>&1)
case "$out" in *"Not due"*) ok "smartotp renew --if-due: a fresh certificate is not due";; *) not_ok "renew --if-due" "$out";; esac
out=$(in_ns h2 "$CLI" renew --server "$S1,$S2" --tls-dir "$WEB9" 2>&1); rc=$?
serial1=$(openssl x509 -noout -serial -in "$WEB9/cert.pem")
case "$rc:$out" in 0:*"Renewed"*) [ "$serial0" != "$serial1" ] && ok "smartotp renew: a new key and certificate for web9 ($serial1)" || not_ok "renew changes the certificate" "$serial0";;
    *) not_ok "smartotp renew" "$rc: $out";; esac
check "… and the host logs in with it" "$OK" "$(web9 joiner "$(next joiner)")"
sleep 3
code=$(in_ns h2 curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$WEB9/ca.pem" --cert "$FLEET/web9-old.pem" --key "$FLEET/web9-old.key" "$S2/v1/health")
case "$code" in 403|000) ok "… and the certificate it replaced is revoked on every replica ($code)";; *) not_ok "the replaced certificate is refused" "$code";; esac
# The same host after its certificate ended (one the hosts' CA signed for 2026-01-01 alone).
mkdir -p "$FLEET/oldca" && touch "$FLEET/oldca/index.txt" && echo 01 >"$FLEET/oldca/serial"
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=%s/index.txt\nnew_certs_dir=%s\nserial=%s/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' \
    "$FLEET/oldca" "$FLEET/oldca" "$FLEET/oldca" >"$FLEET/oldca/ca.cnf"
openssl req -new -key "$WEB9/key.pem" -subj /CN=web9 -out "$FLEET/oldca/web9.csr" 2>/dev/null
openssl ca -batch -config "$FLEET/oldca/ca.cnf" -cert "$FLEET/pki/hosts-ca.pem" -keyfile "$FLEET/pki/hosts-ca.key" -in "$FLEET/oldca/web9.csr" \
    -out "$WEB9/cert.pem" -startdate 20260101000000Z -enddate 20260102000000Z -notext >/dev/null 2>&1
check "web9 with its certificate ended: refused (no verdict)" "$UNAVAIL" "$(web9 joiner "$(next joiner)")"
out=$(in_ns h2 "$CLI" renew --server "$S1,$S2" --tls-dir "$WEB9" 2>&1); rc=$?
case "$rc:$out" in 1:*"join again"*) ok "… and it cannot renew itself: join again";; *) not_ok "an ended certificate does not renew" "$rc: $out";; esac
out=$(in_ns h2 "$CLI" check --conf "$FLEET/web9.conf" 2>&1)
case "$out" in *"FAIL  the host certificate $WEB9/cert.pem ended on 2026-01-02"*) ok "… and smartotp check says it ended";; *) not_ok "check an ended certificate" "$out";; esac

# --- SIGHUP: a new server certificate, connections kept -------------------------------------------
held=$(in_ns h1 python3 - "${ADDR[s1]}" "$FLEET/tls/h1" "${FLEET_SERVER_PID[s1]}" "$FLEET" <<'PY'
import os, signal, socket, ssl, subprocess, sys, time
addr, tls, pid, fleet = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=tls + "/ca.pem")
ctx.load_cert_chain(tls + "/cert.pem", tls + "/key.pem")
ctx.check_hostname = False
old = ctx.wrap_socket(socket.create_connection((addr, 8443), timeout=5))
def health(c):
    # One whole answer: its head, then its body ("ok\n").
    c.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not got.endswith(b"ok\n"):
        part = c.recv(256)
        if not part:
            break
        got += part
    return got.startswith(b"HTTP/1.1 200") and got.endswith(b"ok\n")
first = old.getpeercert(binary_form=True)
ok1 = health(old)
# A new certificate for s1 from the same CA, then SIGHUP.
subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", fleet + "/pki/s1.key.new",
                "-out", fleet + "/pki/s1.csr.new", "-subj", "/CN=s1"], check=True, capture_output=True)
subprocess.run(["openssl", "x509", "-req", "-in", fleet + "/pki/s1.csr.new", "-CA", fleet + "/pki/server-ca.pem", "-CAkey", fleet + "/pki/server-ca.key",
                "-CAcreateserial", "-days", "30", "-extfile", fleet + "/pki/s1.ext", "-out", fleet + "/pki/s1.pem.new"], check=True, capture_output=True)
os.rename(fleet + "/pki/s1.key.new", fleet + "/pki/s1.key")
os.rename(fleet + "/pki/s1.pem.new", fleet + "/pki/s1.pem")
os.kill(pid, signal.SIGHUP)
time.sleep(1)
ok2 = health(old)
new = ctx.wrap_socket(socket.create_connection((addr, 8443), timeout=5))
second = new.getpeercert(binary_form=True)
print(ok1, ok2, first != second, health(new))
PY
)
check "SIGHUP with a new server certificate: the open connection still answers; a new one gets the new certificate" "True True True True" "$held"
grep -q "reloaded the certificate, key and CAs" "$FLEET/s1.log" && ok "… and the journal says so" || not_ok "the reload is logged" "$(tail -3 "$FLEET/s1.log")"
kill -0 "${FLEET_SERVER_PID[s1]}" 2>/dev/null && ok "… and smartotpd kept running" || not_ok "smartotpd survives SIGHUP"

# --- Small things ------------------------------------------------------------------------------
out=$(echo "GEZDGNBVGY3TQOJQ" | admin enroll shortie --secret - --force 2>&1); rc=$?
case "$rc:$out" in [1-9]*:*"RFC 4226 requires at least 128"*) ok "a secret of 80 bits is refused (RFC 4226)";; *) not_ok "short secrets refused" "$rc: $out";; esac
finish
