#!/usr/bin/env bash
# fleet-bench.sh — one smartotpd replica on PostgreSQL 15, both on this machine with the
# load client (as privacyIDEA's reference figures were measured: client, server and
# database on the same cores), over mutual TLS on loopback.
#
#   Benchmarks/fleet-bench.sh          (root; after swift build -c release and scripts/build-embedded.sh)
#
# Prints: verdicts/s with p50/p99 at 1, 8 and 64 clients for valid codes over many users
# and for wrong codes, with the CPU per verdict of smartotpd and of PostgreSQL; the racing
# tests (one valid code sent by 32 connections at once, 1,000 rounds; 8 and 32 wrong codes
# at once); smartotpd's memory with 100 and 100,000 users; and the wall time a fleet
# login adds to a local one (pamtester, hyperfine).
# Everything lives in a private directory and is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/.build/release
SO=$ROOT/.build-embedded/release/libpam_smartotp.so
SECONDS_EACH=${BENCH_SECONDS:-10}
for t in openssl curl pamtester oathtool hyperfine python3; do command -v "$t" >/dev/null || { echo "fleet-bench: $t missing (./install.sh --deps-dev)"; exit 1; }; done
for f in "$BIN/smartotpd" "$BIN/fleet-load" "$BIN/smartotp-fleet" "$SO"; do [ -e "$f" ] || { echo "fleet-bench: $f missing (build first)"; exit 1; }; done

FLEET=$(mktemp -d /tmp/smartotp-fleet-bench.XXXXXX)
chmod 711 "$FLEET"
SMARTOTPD=$BIN/smartotpd
source "$ROOT/Tests/Integration/lib/fleet.sh"
cleanup() { fleet_stop; rm -rf "$FLEET" /etc/pam.d/smartotp-fleet-bench-local /etc/pam.d/smartotp-fleet-bench-fleet; }
trap cleanup EXIT

PORT=18443 PGPORT=55433
URL=https://127.0.0.1:$PORT
fleet_ca server-ca "bench servers"; fleet_ca hosts-ca "bench hosts"; fleet_ca admin-ca "bench admins"
fleet_cert server-ca s1 serverAuth "IP:127.0.0.1"
fleet_cert hosts-ca h1 clientAuth; HOST=$(fleet_identity h1)
: >"$FLEET/revoked"
fleet_pg_start 127.0.0.1 "$PGPORT" || { echo "fleet-bench: PostgreSQL did not start"; cat "$FLEET/pg/log"; exit 1; }
fleet_config s1 "127.0.0.1:$PORT" "postgres://smartotpd@127.0.0.1:$PGPORT/smartotp" "database_connections = 16"
sed -i 's/^policy = .*/policy = deny=10 unlock_time=600/' "$FLEET/s1.conf"
"$SMARTOTPD" migrate --config "$FLEET/s1.conf" >/dev/null 2>&1
psql_() { runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U smartotpd -d smartotp -qtA "$@"; }

# users PREFIX COUNT [COUNTER]: HOTP records written straight into the table (COPY).
users() {
    python3 - "$1" "$2" "${3:-0}" <<'PY' | psql_ -c "COPY smartotp_records (username, record) FROM STDIN"
import sys
prefix, n, counter = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(1, n + 1):
    name = "%s%d" % (prefix, i)
    rec = ("smartotp-record 1\nuser %s\ncreated 1\ntoken id=code kind=code type=hotp counter=%d algorithm=sha1 "
           "digits=6 secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ last=- created=1 used=- label=-\n") % (name, counter)
    print(name + "\t" + rec.replace("\\", "\\\\").replace("\n", "\\n"))
PY
}
users u 100
users r 1000
users w 80
users v 80
users x 5000

fleet_server_start s1
fleet_wait_ready s1 "$URL" "$HOST" || exit 1
SPID=${FLEET_SERVER_PID[s1]}
PGPID=$FLEET_PG_PID
ticks() {  # CPU ticks of a process and its children still running (PostgreSQL's backends)
    local pids=("$1") p t=0
    [ "${2:-}" = tree ] && pids+=($(pgrep -P "$1" || true))
    for p in "${pids[@]}"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}
HZ=$(getconf CLK_TCK)
LOAD() { "$BIN/fleet-load" "$@" --server "$URL" --tls-dir "$HOST"; }

echo "smartotpd fleet benchmark, $(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| codes | clients | verdicts/s | p50 ms | p99 ms | smartotpd CPU ms/verdict | PostgreSQL CPU ms/verdict | answers |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for kind in valid wrong; do
    for c in 1 8 64; do
        s0=$(ticks "$SPID"); p0=$(ticks "$PGPID" tree)
        out=$(LOAD throughput --clients "$c" --seconds "$SECONDS_EACH" --users "$([ $kind = valid ] && echo u || echo x)" --count "$([ $kind = valid ] && echo 100 || echo 5000)" --kind "$kind" --counters "$FLEET/counters")
        s1=$(ticks "$SPID"); p1=$(ticks "$PGPID" tree)
        n=$(sed -E 's/.*verdicts=([0-9]+).*/\1/' <<<"$out")
        rate=$(sed -E 's/.*per_second=([0-9]+).*/\1/' <<<"$out")
        p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$out"); p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$out")
        answers=$(grep -oE '(accepted|rejected|replayed|locked|error|http[0-9]+)=[0-9]+' <<<"$out" | tr '\n' ' ')
        cpu_s=$(python3 -c "print('%.2f' % (($s1 - $s0) * 1000 / $HZ / max($n, 1)))")
        cpu_p=$(python3 -c "print('%.2f' % (($p1 - $p0) * 1000 / $HZ / max($n, 1)))")
        echo "| $kind | $c | $rate | $p50 | $p99 | $cpu_s | $cpu_p | $answers|"
        # Wrong codes lock a user after deny=10: every run starts from clean records.
        psql_ <<'SQL'
UPDATE smartotp_records SET record = regexp_replace(record, E'failed-at[^\n]*\n', '', 'g') WHERE username LIKE 'x%';
SQL
    done
done
echo
echo "Racing (one user a round, its next valid HOTP code, sent by all connections at once):"
LOAD race --clients 32 --rounds 1000 --users r | sed 's/^/  /'
echo "Racing wrong codes (deny=10; a fresh user a round): 8 at once must all be counted, 32 at once must see exactly 10 checked:"
LOAD wrong --clients 8 --rounds 80 --users w | sed 's/^/  8 at once:  /'
for i in $(seq 1 80); do
    f=$(printf '' | "$BIN/smartotp-fleet" --server "$URL" --tls-dir "$HOST" "w$i" summary | awk '/^failures/{print $2}')
    echo "$f"
done | sort | uniq -c | awk '{printf "  failure count %s in %s of 80 rounds\n", $2, $1}'
LOAD wrong --clients 32 --rounds 80 --users v | sed 's/^/  32 at once: /'
echo
echo "Memory: smartotpd peak RSS $(awk '/VmHWM/{print $2, $3}' /proc/$SPID/status) after the runs above ($(psql_ -c "SELECT count(*) FROM smartotp_records") users)"
users big 100000
out=$(LOAD throughput --clients 64 --seconds "$SECONDS_EACH" --users big --count 100000 --kind valid --counters "$FLEET/counters.big")
echo "With 100,000 more users: 64 clients, valid codes over all of them: $out"
echo "  smartotpd peak RSS $(awk '/VmHWM/{print $2, $3}' /proc/$SPID/status); database $(psql_ -c "SELECT pg_size_pretty(pg_database_size('smartotp'))")"
echo

# A fleet login against a local one: the same module, pamtester, a fresh TOTP record each run.
B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
mkdir -p "$FLEET/store/users" "$FLEET/store/locks"; chmod -R 700 "$FLEET/store"
rec="smartotp-record 1\nuser daemon\ncreated 1\ntoken id=code kind=code type=totp period=30 algorithm=sha1 digits=6 secret=$B32 last=- created=1 used=- label=-\n"
printf "$rec" >"$FLEET/daemon.record"; chmod 600 "$FLEET/daemon.record"
psql_ -c "DELETE FROM smartotp_records WHERE username = 'daemon'"
printf "$rec" | python3 -c "import sys; r=sys.stdin.read(); print('daemon\t' + r.replace('\\\\','\\\\\\\\').replace('\n','\\\\n'))" | psql_ -c "COPY smartotp_records (username, record) FROM STDIN"
echo "auth required $SO store=$FLEET/store methods=code" >/etc/pam.d/smartotp-fleet-bench-local
echo "auth required $SO methods=code server=$URL tls_dir=$HOST client=$BIN/smartotp-fleet" >/etc/pam.d/smartotp-fleet-bench-fleet
echo "cp -p $FLEET/daemon.record $FLEET/store/users/daemon" >"$FLEET/reset-local.sh"
cat >"$FLEET/reset-fleet.sh" <<SH
runuser -u postgres -- $PGBIN/psql -h $FLEET/pg -p $PGPORT -U smartotpd -d smartotp -qc "UPDATE smartotp_records SET record = regexp_replace(record, ' last=[0-9]+', ' last=-') WHERE username = 'daemon'"
SH
for kind in local fleet; do
    sh "$FLEET/reset-$kind.sh"
    oathtool --totp -b $B32 | pamtester "smartotp-fleet-bench-$kind" daemon authenticate >/dev/null 2>&1 || {
        echo "fleet-bench: a $kind login failed:"; sh "$FLEET/reset-$kind.sh"; oathtool --totp -b $B32 | pamtester -v "smartotp-fleet-bench-$kind" daemon authenticate; exit 1; }
    hyperfine -N --runs 30 --warmup 3 --prepare "sh $FLEET/reset-$kind.sh" --export-json "$FLEET/h.$kind.json" \
        "sh -c 'oathtool --totp -b $B32 | pamtester smartotp-fleet-bench-$kind daemon authenticate'" >/dev/null 2>&1
done
python3 - "$FLEET/h.local.json" "$FLEET/h.fleet.json" <<'PY'
import json, sys
l = json.load(open(sys.argv[1]))["results"][0]; f = json.load(open(sys.argv[2]))["results"][0]
print("Login wall time (pamtester, hyperfine 30 runs): local store %.1f ms, fleet %.1f ms (median %.1f / %.1f): the fleet adds %.1f ms"
      % (l["mean"] * 1000, f["mean"] * 1000, l["median"] * 1000, f["median"] * 1000, (f["mean"] - l["mean"]) * 1000))
PY
