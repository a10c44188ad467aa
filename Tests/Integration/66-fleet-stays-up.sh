#!/usr/bin/env bash
# A fleet that stays up (Step 3): logins go on through a flood of connections, a stolen host
# certificate locks at most budget ÷ deny users, a host revoked on any replica is cut off on
# the connection it holds open, a retried verdict counts once, and PostgreSQL fails over to
# its synchronous standby without a restart. Namespaces on a bridge, as in 65-fleet:
#   db 10.78.0.2 (primary) · db2 .3 (synchronous standby) · s1 .11 · s2 .12
#   h1 .21 · h2 .22 · h3 .23 (its certificate stolen) · x .30 (a flood from 40 addresses)
source "$(dirname "$0")/lib/testlib.sh"
source "$ROOT/Tests/Integration/lib/fleet.sh"
fleet_suite ip openssl curl pamtester oathtool python3 prlimit

P="sotq$$"
NODES=(hub db db2 s1 s2 h1 h2 h3 x)
declare -A ADDR=([db]=10.78.0.2 [db2]=10.78.0.3 [s1]=10.78.0.11 [s2]=10.78.0.12 [h1]=10.78.0.21 [h2]=10.78.0.22 [h3]=10.78.0.23 [x]=10.78.0.30)
S1="https://${ADDR[s1]}:8443"; S2="https://${ADDR[s2]}:8443"
SERVERS="$S1,$S2"

teardown() {
    fleet_stop
    [ -f "$FLEET/pg2/data/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$FLEET/pg2/data" -m fast -w stop >/dev/null 2>&1
    local n
    for n in "${NODES[@]}"; do ip netns del "$P$n" 2>/dev/null; done
    rm -f /etc/pam.d/"$P"-*
}
at_exit teardown
fleet_net db db2 s1 s2 h1 h2 h3 x || { echo "not ok 1 - cannot create network namespaces (needs root and CAP_NET_ADMIN)"; exit 1; }

fleet_ca server-ca "smartotp servers"; fleet_ca hosts-ca "smartotp hosts"; fleet_ca admin-ca "smartotp admins"
for s in s1 s2; do fleet_cert server-ca "$s" serverAuth "DNS:$s,IP:${ADDR[$s]}"; done
for h in h1 h2 h3; do fleet_cert hosts-ca "$h" clientAuth; fleet_identity "$h" >/dev/null; done
fleet_cert admin-ca admin1 clientAuth; ADMIN=$(fleet_identity admin1)
: >"$FLEET/revoked"

# --- PostgreSQL: a primary and a synchronous standby, each in its namespace ----------------
fleet_pg_start "${ADDR[db]}" 5432 "${P}db" ||
    { not_ok "PostgreSQL starts" "$(tail -5 "$FLEET/pg/log" 2>/dev/null)"; finish; exit 1; }
mkdir -p "$FLEET/pg2"; chown postgres: "$FLEET/pg2"; chmod 700 "$FLEET/pg2"
in_ns db2 runuser -u postgres -- "$PGBIN/pg_basebackup" -h "${ADDR[db]}" -p 5432 -U postgres -D "$FLEET/pg2/data" -R -X stream -c fast >"$FLEET/pg2/basebackup.log" 2>&1
echo "primary_conninfo = 'host=${ADDR[db]} port=5432 user=postgres application_name=standby1'" >>"$FLEET/pg2/data/postgresql.auto.conf"
in_ns db2 runuser -u postgres -- "$PGBIN/pg_ctl" -D "$FLEET/pg2/data" -l "$FLEET/pg2/log" -w -t 30 \
    -o "-c listen_addresses=${ADDR[db2]} -p 5432 -k $FLEET/pg2 -c max_connections=200" start >/dev/null || { not_ok "the standby starts" "$(grep -E "FATAL|HINT" "$FLEET/pg2/log" | head -3)"; finish; exit 1; }
psql_primary() { runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p 5432 -U postgres -tAc "$1"; }
# Synchronous from now on: a commit returns once the standby has it (the standby, promoted,
# must not know this setting: it was copied before).
psql_primary "ALTER SYSTEM SET synchronous_standby_names = 'standby1'" >/dev/null; psql_primary "SELECT pg_reload_conf()" >/dev/null
state=""
for i in $(seq 1 50); do state=$(psql_primary "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'"); [ "$state" = sync ] && break; sleep 0.2; done
check "a primary and a synchronous standby (pg_stat_replication)" sync "$state"

# Both servers in the URL: smartotpd uses the one that accepts writes (libpq's form).
DBURL="postgres://smartotpd@${ADDR[db]}:5432,${ADDR[db2]}:5432/smartotp?sslmode=disable&target_session_attrs=read-write"
# s1 with a connection cap below the flood (2,000) so that the cap itself is tried; s2 with
# a short keep-alive lifetime and a small challenge budget. Failure budgets: the default.
fleet_config s1 "${ADDR[s1]}:8443" "$DBURL" "metrics_listen = ${ADDR[s1]}:9464
max_connections = 1000"
fleet_config s2 "${ADDR[s2]}:8443" "$DBURL" "connection_lifetime = 10s
host_challenge_budget = 5/15m"
sed -i '/^host_failure_budget = off$/d' "$FLEET/s1.conf" "$FLEET/s2.conf"
out=$(in_ns s1 "$SMARTOTPD" migrate --config "$FLEET/s1.conf" 2>&1)
check "smartotpd migrate through the several-host URL (the primary)" 0 "$?"
# The replicas run under the unit's descriptor limit.
FLEET_NOFILE=$(sed -n 's/^LimitNOFILE=//p' "$ROOT/dist/smartotpd.service")
[ -n "$FLEET_NOFILE" ] && ok "the unit sets LimitNOFILE=$FLEET_NOFILE" || not_ok "the unit sets LimitNOFILE"
fleet_server_start s1 "${P}s1"; fleet_server_start s2 "${P}s2"
curl_as() { local who=$1 ns=$2; shift 2; in_ns "$ns" curl -s --max-time 5 --cacert "$FLEET/tls/$who/ca.pem" --cert "$FLEET/tls/$who/cert.pem" --key "$FLEET/tls/$who/key.pem" "$@"; }
ready() { local i; for i in $(seq 1 50); do curl_as admin1 h1 -f --max-time 1 "$1/v1/health" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
ready "$S1" && ready "$S2" && ok "two replicas answer" || { not_ok "replicas ready" "$(tail -3 "$FLEET/s1.log")"; finish; exit 1; }

for h in h1 h2 h3; do
    echo "auth required $SO methods=code server=$SERVERS tls_dir=$FLEET/tls/$h client=$CLIENT server_timeout=5" >/etc/pam.d/"$P-$h"
done
echo "auth required $SO methods=code server=$S1 tls_dir=$FLEET/tls/h1 client=$CLIENT server_timeout=5" >/etc/pam.d/"$P-h1s1"
admin() { in_ns h1 "$CLI" "$@" --server "$SERVERS" --tls-dir "$ADMIN"; }
HOTP_B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
next() { local f="$FLEET/counter.$1" c; c=$(( $(cat "$f" 2>/dev/null || echo 0) + 1 )); echo "$c" >"$f"; oathtool --hotp -c "$c" -b "$HOTP_B32"; }
enroll_hotp() { echo "$HOTP_B32" | admin enroll "$1" --secret - --hotp --force >/dev/null 2>&1; }
UNAVAIL="pamtester: Authentication service cannot retrieve authentication info"
OK="pamtester: successfully authenticated"
login() { nss_user "$2"; echo "$3" | in_ns "${1%s1}" "${NSS_ENV[@]}" pamtester "$P-$1" "$2" authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1; }
ask() { local h=$1 u=$2 op=$3; shift 3; printf '%s\n' "$@" | in_ns "$h" "$CLIENT" --server "$SERVERS" --tls-dir "$FLEET/tls/$h" "$u" "$op"; }
metric() { in_ns h1 curl -s --max-time 5 "http://${ADDR[s1]}:9464/metrics" | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }

# --- 2,000 connections held open without a certificate: the hosts' logins go on -----------
for i in $(seq 100 139); do ip -n "${P}x" addr add "10.78.0.$i/24" dev eth0; done
enroll_hotp flood
# Silent ones and ones that trickle a byte a second, from 40 addresses (50 each; .100 tries
# 100, past the per-source cap), reopened as soon as the server closes them, for 25 s;
# and 80 on the metrics port.
# A ClientHello as a real client sends it, for the connections that trickle.
python3 -c 'import ssl; i, o = ssl.MemoryBIO(), ssl.MemoryBIO(); t = ssl.create_default_context().wrap_bio(i, o, server_hostname="s1")
try: t.do_handshake()
except ssl.SSLWantReadError: pass
open("'"$FLEET/hello.bin"'", "wb").write(o.read())'
in_ns x bash -c 'ulimit -n 8192 && exec python3 - "$@"' flood "${ADDR[s1]}" 25 "$FLEET/hello.bin" <<'PY' >"$FLEET/flood.out" 2>&1 &
import errno, socket, sys, time
target, seconds = sys.argv[1], float(sys.argv[2])
# The tricklers send a real ClientHello, a byte a second: TLS that never completes.
hello = open(sys.argv[3], "rb").read()
slots = []
for a in range(100, 140):
    src = "10.78.0.%d" % a
    slots += [(src, 8443, i % 2 == 1) for i in range(100 if a == 100 else 50)]
    slots += [(src, 9464, False)] * 2
live, sent, pos = [None] * len(slots), [0.0] * len(slots), [0] * len(slots)
opened = closed = peak = 0
end = time.time() + seconds
while time.time() < end:
    now = time.time()
    for i, (src, port, trickle) in enumerate(slots):
        s = live[i]
        if s is None:
            s = socket.socket()
            s.setblocking(False)
            s.bind((src, 0))
            try:
                s.connect((target, port))
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            live[i], sent[i], pos[i] = s, now, 0
            opened += 1
            continue
        try:
            if s.recv(4096) == b"":
                raise ConnectionResetError()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                s.close(); live[i] = None; closed += 1
                continue
        if trickle and now - sent[i] >= 1:
            try:
                s.send(hello[pos[i]:pos[i] + 1])
                sent[i], pos[i] = now, pos[i] + 1
            except OSError:
                pass
    peak = max(peak, sum(1 for s in live if s is not None))
    time.sleep(0.2)
print("opened=%d closed_by_server=%d peak_open=%d" % (opened, closed, peak))
PY
FLOOD=$!
sleep 4
good=0; slowest=0
for i in 1 2 3 4 5; do
    t0=$(date +%s%N); out=$(login h1s1 flood "$(next flood)"); t1=$(date +%s%N)
    [ "$out" = "$OK" ] && good=$((good + 1))
    ms=$(( (t1 - t0) / 1000000 )); [ "$ms" -gt "$slowest" ] && slowest=$ms
    sleep 2
done
scrape=$(in_ns h1 curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://${ADDR[s1]}:9464/metrics")
wait "$FLOOD"
flood=$(cat "$FLEET/flood.out")
kill -0 "${FLEET_SERVER_PID[s1]}" 2>/dev/null && ok "s1 is still up after the flood ($flood)" || not_ok "s1 survives the flood" "$(tail -3 "$FLEET/s1.log")"
check "during the flood, every login through s1 alone succeeds (slowest $slowest ms)" 5 "$good"
check "… and a scrape of /metrics is answered" 200 "$scrape"
case "$flood" in *peak_open=*) peak=${flood##*peak_open=}; [ "$peak" -ge 1900 ] && ok "the flood held up to $peak connections open at once" || not_ok "the flood held ~2,000 connections" "$flood";; *) not_ok "the flood ran" "$flood";; esac
# Below the cap, the handshake deadline: 20 silent connections and 20 that trickle a real
# ClientHello a byte every quarter second are each closed 5 s after they opened.
out=$(in_ns x python3 - "${ADDR[s1]}" "$FLEET/hello.bin" <<'PY'
import socket, sys, time
# A real ClientHello, sent a byte at a time: TLS that never completes.
hello = open(sys.argv[2], "rb").read()
socks = []
for i in range(40):
    s = socket.create_connection((sys.argv[1], 8443), timeout=2)
    s.setblocking(False)
    socks.append([s, i % 2 == 1, time.time(), None, 0])
while time.time() - socks[0][2] < 12 and any(x[3] is None for x in socks):
    for x in socks:
        if x[3] is not None:
            continue
        try:
            if x[0].recv(1024) == b"":
                x[3] = time.time() - x[2]
                continue
        except BlockingIOError:
            pass
        except OSError:
            x[3] = time.time() - x[2]
            continue
        if x[1]:
            try:
                x[0].send(hello[x[4]:x[4] + 1])
                x[4] += 1
            except OSError:
                pass
    time.sleep(0.25)
done = [x[3] for x in socks if x[3] is not None]
print("%d %.1f %.1f" % (len(done), min(done or [0]), max(done or [0])))
PY
)
read -r closed first last <<<"$out"
# All 40 closed within the 12 s watched proves the deadline (a trickle that reset it would
# keep its connection open); not before 2 s, that it is the deadline and not a refusal. The
# window is an order of magnitude around the 5 s deadline, not a measurement.
python3 -c "import sys; sys.exit(0 if $closed == 40 and 2 <= $first and $last <= 11 else 1)" &&
    ok "40 connections that never finish a handshake (half trickling) are closed by the 5 s deadline (${first}-${last} s)" ||
    not_ok "the handshake deadline closes silent and trickling connections" "$out"
for reason in deadline evicted per_source; do
    n=$(metric "smartotpd_connection_refusals_total{listener=\"verifier\",reason=\"$reason\"}")
    [ "$n" -gt 0 ] && ok "/metrics counts connections refused or closed for $reason: $n" || not_ok "refusals for $reason in /metrics" "$n"
done
n=$(metric 'smartotpd_connection_refusals_total{listener="metrics"')
[ "$n" -gt 0 ] && ok "… and the metrics listener's own: $n" || not_ok "the metrics listener is capped too" "$n"

# --- A keep-alive connection lives connection_lifetime at most (s2: 10 s) -------------------
enroll_hotp keeper
out=$(in_ns h1 python3 "$ROOT/Tests/Integration/lib/keepalive.py" "${ADDR[s2]}" "$FLEET/tls/h1" /v1/verify/summary/keeper 14)
last=$(echo "$out" | grep -c '^200@')
closing=$(echo "$out" | grep ':close' | head -1); closing=${closing#*@}; closing=${closing%:close}
case "$closing" in 10.*|11.*) ok "s2 answers 'Connection: close' once the connection is 10 s old (at ${closing} s, after $last answers)";;
    *) not_ok "keep-alive ends at connection_lifetime" "$(echo "$out" | tail -3 | tr '\n' ' ')";; esac

# --- One stolen host certificate: at most budget ÷ deny users locked, then refused ---------
for i in $(seq 1 40); do enroll_hotp "victim$i"; done
declare -A statuses=()
for i in $(seq 1 40); do for k in 1 2 3; do
    st=$(curl_as h3 h3 -o /dev/null -w '%{http_code}' -X POST --data-binary $'000000\n' "$S1/v1/verify/code/victim$i")
    statuses[$st]=$(( ${statuses[$st]:-0} + 1 ))
done; done
locked=0
for i in $(seq 1 40); do [ "$(ask h1 "victim$i" summary | awk '/^lock/{print $2}')" = open ] || locked=$((locked + 1)); done
check "h3 sends 3 wrong codes for each of 40 users (deny=3, budget 30/15m): 30 ÷ 3 users locked" 10 "$locked"
check "… its 90 verdicts past the budget answered 429" 90 "${statuses[429]:-0}"
grep -q "over its failures budget" "$FLEET/s1.log" && ok "… logged" || not_ok "the budget refusal is logged"
# The budget is the fleet's: the next replica refuses h3 too, and spends nothing more.
check "… and the next replica refuses h3 too: the budget is the fleet's (429 at s2)" 429 \
    "$(curl_as h3 h3 -o /dev/null -w '%{http_code}' -X POST --data-binary $'000000\n' "$S2/v1/verify/code/victim39")"
n=$(metric 'smartotpd_host_budget_refusals_total{budget="failures"}')
check "… and counted in /metrics" 90 "$n"
for u in victim11 victim25 victim40; do
    check "$u's valid code works from h2" "$OK" "$(login h2 "$u" "$(next "$u")")"
done
# Challenges are budgeted too (s2: 5 a window here): one host cannot churn every record.
codes=""
for i in 1 2 3 4 5 6; do codes+="$(curl_as h1 h1 -o /dev/null -w '%{http_code}' -X POST --data-binary '' "$S2/v1/verify/challenge/victim$((i + 20))") "; done
case "$codes" in *429*429*) not_ok "the challenge budget refuses the sixth only" "$codes";; *" 429 ") ok "h1's sixth challenge in the window is refused (429): $codes";; *) not_ok "the challenge budget" "$codes";; esac

# --- A retried request is answered, not counted again --------------------------------------
enroll_hotp retry
id=$(openssl rand -hex 16)
verdict_at() { curl_as h1 h1 -H "X-SmartOTP-Request: $2" -X POST --data-binary "$3"$'\n' "$1/v1/verify/code/retry" | awk '/^verdict/{print $2}'; }
a=$(verdict_at "$S1" "$id" 000000); b=$(verdict_at "$S2" "$id" 000000)
check "a wrong code at s1, the same request (its id) retried at s2: the same verdict" "rejected rejected" "$a $b"
check "… counted once" 1 "$(ask h1 retry summary | awk '/^failures/{print $2}')"
code=$(next retry); id=$(openssl rand -hex 16)
a=$(verdict_at "$S1" "$id" "$code"); b=$(verdict_at "$S2" "$id" "$code"); c=$(verdict_at "$S2" "$(openssl rand -hex 16)" "$code")
check "a right code, retried with its id at s2: accepted again, not called replayed; a new request with it: replayed" \
    "accepted accepted replayed" "$a $b $c"

# --- revoke-host: every replica, within 5 s, on a connection already open --------------------
enroll_hotp revoked
in_ns h2 python3 "$ROOT/Tests/Integration/lib/keepalive.py" "${ADDR[s2]}" "$FLEET/tls/h2" /v1/verify/summary/revoked 9 >"$FLEET/revoke.out" &
WATCH=$!
sleep 1.5
t0=$(date +%s.%N)
out=$(admin revoke-host h2 2>&1) && case "$out" in *"revoked h2"*) ok "smartotp revoke-host h2 (through s1 or s2): $out";; *) not_ok "revoke-host" "$out";; esac || not_ok "revoke-host" "$out"
wait "$WATCH"
first403=$(grep -m1 '^403@' "$FLEET/revoke.out"); first403=${first403#403@}; first403=${first403%:close}
start=$(sed -n 's/^start=//p' "$FLEET/revoke.out")
if [ -n "$first403" ] && grep -q '^200@' "$FLEET/revoke.out"; then
    lag=$(python3 -c "print(round($start + $first403 - $t0, 1))")
    # The replicas read the revocation list every 2 s; without that the connection would
    # never be refused. An order of magnitude, not a target.
    python3 -c "import sys; sys.exit(0 if $lag <= 8 else 1)" && ok "h2's open keep-alive connection to s2 is refused ${lag} s after its revocation through s1 (403)" || not_ok "refused within a few poll intervals" "$lag s"
else
    not_ok "the open connection is refused after revoke-host" "$(tail -3 "$FLEET/revoke.out" | tr '\n' ' ')"
fi
check "a revoked host's login fails closed on both replicas" "$UNAVAIL" "$(login h2 revoked "$(next revoked)")"
case "$(admin revoke-host --list 2>&1)" in h2*admin1*) ok "revoke-host --list shows it, and who";; *) not_ok "revoke-host --list" "$(admin revoke-host --list 2>&1)";; esac
out=$(in_ns h1 "$CLI" revoke-host h3 --server "$SERVERS" --tls-dir "$FLEET/tls/h1" 2>&1)
case "$out" in *403*) ok "a host certificate cannot revoke another (403)";; *) not_ok "revoke-host is the administrators'" "$out";; esac
admin audit --limit 20 2>/dev/null | grep -q "revoke-host" && ok "the revocation is in the audit trail" || not_ok "revocation audited" "$(admin audit --limit 3 2>&1)"
admin revoke-host --restore h2 >/dev/null 2>&1
sleep 2.5
check "revoke-host --restore: h2 logs in again" "$OK" "$(login h2 revoked "$(next revoked)")"

# --- PostgreSQL fails over: smartotpd follows the promoted standby -------------------------
enroll_hotp switch
before=$(next switch)
check "before the switch: a code logs in" "$OK" "$(login h1 switch "$before")"
check "… and a wrong one is counted" "pamtester: Authentication failure" "$(login h1 switch 000000)"
t0=$(date +%s%N)
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$FLEET/pg/data" -m immediate -w stop >/dev/null 2>&1
in_ns db2 runuser -u postgres -- "$PGBIN/pg_ctl" -D "$FLEET/pg2/data" -w promote >/dev/null 2>&1
after=$(next switch); out=""
for i in $(seq 1 30); do
    failures=$(ask h1 switch summary 2>/dev/null | awk '/^failures/{print $2}')
    [ -n "$failures" ] && break
    sleep 0.5
done
check "primary stopped, standby promoted: the failure counted before the switch is still counted" 1 "$failures"
check "… the code accepted before the switch is refused after it" "pamtester: Authentication failure" "$(login h1 switch "$before")"
for i in $(seq 1 30); do out=$(login h1 switch "$after"); [ "$out" = "$OK" ] && break; sleep 0.5; done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "… and a new code logs in" "$OK" "$out"
# The loop above gives up after about 15 s of tries plus the logins' own time: reaching
# here with a login proves the move; the time is printed, not judged (a figure, not a target).
echo "# logins work again ${ms} ms after the primary stopped"
grep -q "the database in use is now another server" "$FLEET/s1.log" "$FLEET/s2.log" && ok "… and the replicas say they moved" || not_ok "the move is logged"

finish
