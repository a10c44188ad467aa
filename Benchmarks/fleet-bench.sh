#!/usr/bin/env bash
# fleet-bench.sh — one smartotpd replica on PostgreSQL 15, both on this machine with the
# load client (as privacyIDEA's reference figures were measured: client, server and
# database on the same cores), over mutual TLS on loopback.
#
#   Benchmarks/fleet-bench.sh          (root; after swift build -c release and scripts/build-embedded.sh)
#
# Prints: PostgreSQL's own ceiling (pgbench, a verdict-shaped transaction: BEGIN; SELECT …
# FOR UPDATE; UPDATE; COMMIT; fsync on; one row a user, 100,000 users) at 1, 8 and 64
# clients; verdicts/s with p50/p99 at 1, 8 and 64 clients for valid codes over many users
# and for wrong codes, with the CPU per verdict of smartotpd and of PostgreSQL, with
# sealed secrets and the audit trail (and, with BASE_SMARTOTPD=PATH, the same for a
# smartotpd built before them, in the same run); the ratios to the ceiling; the racing
# tests (one valid code sent by 32 connections at once, 1,000 rounds; 8 and 32 wrong codes
# at once); smartotpd's memory with 100 and 100,000 users; and the wall time a fleet
# login adds to a local one, and what a black-holed first verifier adds (pamtester,
# hyperfine). Writes fleet-bench.png (PLOT=PATH): verdicts/s and p99 against clients.
# Everything lives in a private directory and is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# SMARTOTP_BIN: the programs to measure (default .build/release). A folder of links to
# them with smartotpd swapped for an earlier build measures that build in the same setup
# (QUICK=1 stops after the verdicts table and the interleaved turns, LOGIN_ONLY=1 measures the logins alone: run two builds alternately, each with its own
# ceiling, to tell a change from the machine's spread).
BIN=${SMARTOTP_BIN:-$ROOT/.build/release}
SO=$ROOT/.build-embedded/release/libpam_smartotp.so
SECONDS_EACH=${BENCH_SECONDS:-10}
for t in openssl curl pamtester oathtool hyperfine python3; do command -v "$t" >/dev/null || { echo "fleet-bench: $t missing (./install.sh --deps-dev)"; exit 1; }; done
for f in "$BIN/smartotpd" "$BIN/fleet-load" "$BIN/smartotp-fleet" "$SO"; do [ -e "$f" ] || { echo "fleet-bench: $f missing (build first)"; exit 1; }; done

FLEET=$(mktemp -d /tmp/smartotp-fleet-bench.XXXXXX)
chmod 711 "$FLEET"
SMARTOTPD=$BIN/smartotpd
source "$ROOT/Tests/Integration/lib/fleet.sh"
NS="sotpbench$$"   # the black-holed login's network namespace
cleanup() {
    fleet_stop; ip netns del "$NS" 2>/dev/null || true
    rm -rf "$FLEET" /etc/pam.d/smartotp-fleet-bench-local /etc/pam.d/smartotp-fleet-bench-fleet /etc/pam.d/smartotp-fleet-bench-blackholed /etc/pam.d/smartotp-fleet-bench-agent
}
trap cleanup EXIT

PORT=18443 PGPORT=55433
URL=https://127.0.0.1:$PORT
fleet_ca server-ca "bench servers"; fleet_ca hosts-ca "bench hosts"; fleet_ca admin-ca "bench admins"
fleet_cert server-ca s1 serverAuth "IP:127.0.0.1"
fleet_cert hosts-ca h1 clientAuth; HOST=$(fleet_identity h1)
: >"$FLEET/revoked"
fleet_pg_start 127.0.0.1 "$PGPORT" || { echo "fleet-bench: PostgreSQL did not start"; cat "$FLEET/pg/log"; exit 1; }
fleet_config s1 "127.0.0.1:$PORT" "postgres://smartotpd@127.0.0.1:$PGPORT/smartotp" "database_connections = ${DB_CONNECTIONS:-16}"
sed -i 's/^policy = .*/policy = deny=10 unlock_time=600/' "$FLEET/s1.conf"
"$SMARTOTPD" migrate --config "$FLEET/s1.conf" >/dev/null 2>&1
psql_() { runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U smartotpd -d smartotp -qtA "$@"; }

# users PREFIX COUNT [COUNTER] [SECRET] [totp] [VERSION]: HOTP records (with totp: one
# TOTP record named PREFIX itself) written straight into the tables (COPY), as smartotpd
# keeps them: the record's text with the secret taken out (secret=AA), the secret sealed
# under seal.key in smartotp_secrets (AES-256-GCM, the user, the token's enrolment and the
# key id bound in), and the row's mac under audit.key over all of it (chains reserved from
# the database's sequence). SmartOTPVault's and LedgerCodec's formats, written a second time
# here in Python: a login that succeeds proves the two agree. VERSION (default 1): the rows'
# version; a reset writes them again above any version a replica has seen.
cat >"$FLEET/users.py" <<'PY'
import base64, hashlib, hmac, os, sys
totp = sys.argv[8] == "totp"
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
prefix, n, counter, b32, keyfile, records, secrets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
audit_key, first_chain, version = open(sys.argv[9], "rb").read(), int(sys.argv[10]), int(sys.argv[11])
key = open(keyfile, "rb").read()
kid = hashlib.sha256(b"smartotp key id 1" + key).digest()[:8].hex()
secret = base64.b32decode(b32)
aes = AESGCM(key)
esc = lambda t: t.replace("\\", "\\\\").replace("\n", "\\n")
def tag(label, parts):
    data = label.encode()
    for p in parts:
        data += len(p).to_bytes(4, "big") + p
    return hmac.new(audit_key, data, hashlib.sha256).digest()[:16].hex()
with open(records, "w") as r, open(secrets, "w") as s:
    for i in range(1, n + 1):
        name = prefix if totp else "%s%d" % (prefix, i)
        kind = "type=totp period=30" if totp else "type=hotp counter=%d" % counter
        rec = ("smartotp-record 1\nuser %s\ncreated 1\ntoken id=code kind=code %s algorithm=sha1 "
               "digits=6 secret=AA last=- created=1 used=- label=-\n") % (name, kind)
        nonce = os.urandom(12)
        aad = b"smartotp sealed secret 2\0" + name.encode() + b"\0code@1\0" + kid.encode()
        box = base64.b64encode(nonce + aes.encrypt(nonce, bytes([len(secret)]) + secret, aad)).decode()
        chain, epoch = first_chain + i - 1, 1
        mac = tag("smartotp row 1", [x.encode() for x in (name, str(version), rec, "0", str(epoch), str(chain), "0", "", "1", "code", kid, box)])
        r.write("%s\t%s\t%d\t%d\t%d\t%s\n" % (name, esc(rec), version, chain, epoch, mac))
        s.write("%s\tcode\t%s\t%s\n" % (name, kid, box))
PY
# users.sh: the same from any shell (a hyperfine --prepare writes the login's user again).
cat >"$FLEET/users.sh" <<SH
set -e
psql_() { runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U smartotpd -d smartotp -qtA "\$@"; }
first=\$(psql_ -c "SELECT nextval('smartotp_audit_chains')")
psql_ -c "SELECT setval('smartotp_audit_chains', \$first + \$2)" >/dev/null
python3 "$FLEET/users.py" "\$1" "\$2" "\${3:-0}" "\${4:-GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ}" "$FLEET/seal.key" "$FLEET/users.records" "$FLEET/users.secrets" \\
    "\${5:-hotp}" "$FLEET/audit.key" "\$first" "\${6:-1}"
psql_ -c "COPY smartotp_records (username, record, version, audit_chain, offline_epoch, row_mac) FROM STDIN" <"$FLEET/users.records"
psql_ -c "COPY smartotp_secrets (username, token_id, key_id, sealed) FROM STDIN" <"$FLEET/users.secrets"
SH
users() { bash "$FLEET/users.sh" "$@"; }
users u 100
users r 1000
users w 80
users v 80
users x 20000

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

# LOGIN_ONLY=1: the login timings alone (what a change to smartotp-fleet or the TLS set-up
# moves), without the ceiling, the verdicts, the races and the memory.
if [ -z "${LOGIN_ONLY:-}" ]; then
# PostgreSQL's own ceiling, in this run, on this server: pgbench with a verdict-shaped
# transaction (a row a user, 100,000 users, a record-sized value rewritten; fsync on).
runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U postgres -qc "CREATE DATABASE ceiling OWNER smartotpd"
runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U smartotpd -d ceiling -qc \
    "CREATE TABLE u (username text PRIMARY KEY, record text NOT NULL); INSERT INTO u SELECT 'u' || i, repeat('x', 300) FROM generate_series(1, 100000) i"
runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U smartotpd -d ceiling -qc "VACUUM ANALYZE u"
cat >"$FLEET/verdict.sql" <<'SQL'
\set id random(1, 100000)
BEGIN;
SELECT record FROM u WHERE username = 'u' || :id FOR UPDATE;
UPDATE u SET record = md5(random()::text) || substr(record, 33) WHERE username = 'u' || :id;
COMMIT;
SQL
# Warmed first, unmeasured, as smartotpd's own rows are by the time it is measured: a
# table just written is packed full, so each row's first update cannot stay on its page
# (no HOT update: a new index entry too). On this machine the ceiling at 64 clients rose
# from about 6,500 to 10,400 tx/s over its first 40 s, then stayed.
runuser -u postgres -- "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$PGPORT" -U smartotpd -f "$FLEET/verdict.sql" \
    -c 64 -j 2 -T "$((SECONDS_EACH * 3))" ceiling >/dev/null 2>&1
# ceiling_run CLIENTS: "TPS MEAN-MS" of one run of the verdict-shaped transaction.
ceiling_run() {
    local out
    out=$(runuser -u postgres -- "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$PGPORT" -U smartotpd -f "$FLEET/verdict.sql" \
        -c "$1" -j "$([ "$1" -ge 2 ] && echo 2 || echo 1)" -T "$SECONDS_EACH" ceiling 2>&1)
    echo "$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<<"$out" | head -1) $(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' <<<"$out")"
}
declare -A CEIL_TPS CEIL_MS
echo "PostgreSQL's ceiling (pgbench, BEGIN; SELECT … FOR UPDATE; UPDATE; COMMIT over TCP, 100,000 users):"
echo
echo "| clients | transactions/s | mean latency ms |"
echo "| ---: | ---: | ---: |"
for c in 1 8 64; do
    read -r "CEIL_TPS[$c]" "CEIL_MS[$c]" < <(ceiling_run "$c")
    echo "| $c | ${CEIL_TPS[$c]%.*} | ${CEIL_MS[$c]} |"
    printf 'PostgreSQL ceiling\t%s\t%s\t%s\n' "$c" "${CEIL_TPS[$c]}" "${CEIL_MS[$c]}" >>"$FLEET/plot.tsv"
done
echo

# throughput LABEL SERVER-PID RESET-SQL [NAME]: the verdicts table for the replica at $URL
# (NAME: its series in the plot).
throughput() {
    local label=$1 spid=$2 reset=$3 name=${4:-smartotpd} kind c s0 p0 s1 p1 out n rate p50 p99 answers cpu_s cpu_p cpu_l
    echo "$label"
    echo
    echo "| codes | clients | verdicts/s | p50 ms | p99 ms | smartotpd CPU ms/verdict | PostgreSQL CPU ms/verdict | load client CPU ms/verdict | answers |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for kind in valid wrong; do
        for c in 1 8 64; do
            s0=$(ticks "$spid"); p0=$(ticks "$PGPID" tree)
            # PROFILE=FILE: the whole machine sampled (perf, call graphs) through the first
            # run of valid codes at 64 clients, into FILE (perf report -i FILE --sort comm,dso).
            if [ -n "${PROFILE:-}" ] && [ "$kind$c" = valid64 ] && [ ! -e "$PROFILE" ]; then
                perf record -q -a -g -F 999 -o "$PROFILE" -- sleep "$((SECONDS_EACH - 1))" >/dev/null 2>&1 &
            fi
            out=$(LOAD throughput --clients "$c" --seconds "$SECONDS_EACH" --users "$([ $kind = valid ] && echo u || echo x)" --count "$([ $kind = valid ] && echo 100 || echo 20000)" --kind "$kind" --counters "$FLEET/counters.$spid" --threads "${LOAD_THREADS:-2}")
            s1=$(ticks "$spid"); p1=$(ticks "$PGPID" tree)
            n=$(sed -E 's/.*verdicts=([0-9]+).*/\1/' <<<"$out")
            rate=$(sed -E 's/.*per_second=([0-9]+).*/\1/' <<<"$out")
            p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$out"); p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$out")
            cpu_l=$(sed -E 's/.*client_cpu_ms_per_verdict=([0-9.]+).*/\1/' <<<"$out")
            answers=$(grep -oE '(accepted|rejected|replayed|locked|error|http[0-9]+)=[0-9]+' <<<"$out" | tr '\n' ' ')
            cpu_s=$(python3 -c "print('%.2f' % (($s1 - $s0) * 1000 / $HZ / max($n, 1)))")
            cpu_p=$(python3 -c "print('%.2f' % (($p1 - $p0) * 1000 / $HZ / max($n, 1)))")
            echo "| $kind | $c | $rate | $p50 | $p99 | $cpu_s | $cpu_p | $cpu_l | $answers|"
            printf '%s, %s codes\t%s\t%s\t%s\n' "$name" "$kind" "$c" "$rate" "$p99" >>"$FLEET/plot.tsv"
            [ "$kind" = valid ] && [ "$c" = 64 ] && RATE64=$rate
            [ "$kind" = valid ] && [ "$c" = 1 ] && P99_1=$p99
            "$reset" >/dev/null
        done
    done
    python3 -c "print('\nAgainst the ceiling: %.0f %% of its transactions/s at 64 clients (target >= 50 %%); p99 at 1 client %.1fx its mean latency (target <= 3x)\n' % (100.0 * $RATE64 / ${CEIL_TPS[64]}, $P99_1 / ${CEIL_MS[1]}))"
}
# Wrong codes lock a user after deny=10: every run starts from clean records, written again
# (a row edited in place would be refused: its mac) at a version above any seen.
RESETS=0
reset_main() {
    RESETS=$((RESETS + 1))
    psql_ -c "DELETE FROM smartotp_records WHERE username LIKE 'x%'" >/dev/null
    users x 20000 0 GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ hotp $((RESETS * 1000000))
}
reset_base() {
    runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U smartotpd -d smartotp_base -qtA <<'SQL'
UPDATE smartotp_records SET record = regexp_replace(record, E'failed-at[^\n]*\n', '', 'g') WHERE username LIKE 'x%';
SQL
}
throughput "smartotpd with sealed secrets and the audit trail (every verdict appends a chained audit row):" "$SPID" reset_main
echo "Audit rows written: $(psql_ -c "SELECT count(*) FROM smartotp_audit")"
echo
# The machine drifts from one minute to the next (one build has measured 39-66 % of a
# ceiling taken a minute or two before it), so the ratio is also taken interleaved: the
# ceiling and smartotpd at 64 clients in turn, each smartotpd run against the mean of the
# ceiling runs on either side of it. INTERLEAVE=N turns (default 3; 0: none).
TURNS=${INTERLEAVE:-3}
if [ "$TURNS" -gt 0 ]; then
    echo "Interleaved at 64 clients, valid codes (ceiling, smartotpd, ceiling, …):"
    echo
    read -r before _ < <(ceiling_run 64)
    RATIOS=()
    for i in $(seq 1 "$TURNS"); do
        out=$(LOAD throughput --clients 64 --seconds "$SECONDS_EACH" --users u --count 100 --kind valid --counters "$FLEET/counters.$SPID" --threads "${LOAD_THREADS:-2}")
        rate=$(sed -E 's/.*per_second=([0-9]+).*/\1/' <<<"$out")
        read -r after _ < <(ceiling_run 64)
        ratio=$(python3 -c "print('%.0f' % (100.0 * $rate / (($before + $after) / 2)))")
        echo "- turn $i: ceiling ${before%.*}, smartotpd $rate, ceiling ${after%.*} tx/s: $ratio %"
        RATIOS+=("$ratio")
        before=$after
    done
    echo
    echo "Against the ceiling, interleaved: median of $TURNS turns $(printf '%s\n' "${RATIOS[@]}" | sort -n | sed -n "$(((TURNS + 1) / 2))p") % (target >= 50 %)"
    echo
fi
# QUICK=1: the ceiling, the verdicts table and the interleaved turns only (A/B runs of two
# builds, back to back; INTERLEAVE=0 leaves the turns out).
[ -z "${QUICK:-}" ] || exit 0

# The same load on a smartotpd built before sealing and the audit (BASE_SMARTOTPD), its own
# database on the same server, records in its format (secrets in the record's text).
if [ -n "${BASE_SMARTOTPD:-}" ]; then
    runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U postgres -qc "CREATE DATABASE smartotp_base OWNER smartotpd"
    grep -vE '^(seal_key|audit_key|unseal_keys|helpdesk_ca|audit_keep)' "$FLEET/s1.conf" \
        | sed -e "s#:$PORT#:$((PORT + 1))#" -e 's#/smartotp$#/smartotp_base#' >"$FLEET/s0.conf"
    "$BASE_SMARTOTPD" migrate --config "$FLEET/s0.conf" >/dev/null
    python3 - <<'PY' >"$FLEET/base.records"
for prefix, n in (("u", 100), ("x", 20000)):
    for i in range(1, n + 1):
        name = "%s%d" % (prefix, i)
        rec = ("smartotp-record 1\nuser %s\ncreated 1\ntoken id=code kind=code type=hotp counter=0 algorithm=sha1 "
               "digits=6 secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ last=- created=1 used=- label=-\n") % name
        print(name + "\t" + rec.replace("\\", "\\\\").replace("\n", "\\n"))
PY
    runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$PGPORT" -U smartotpd -d smartotp_base -qc "COPY smartotp_records (username, record) FROM STDIN" <"$FLEET/base.records"
    "$BASE_SMARTOTPD" --config "$FLEET/s0.conf" >>"$FLEET/s0.log" 2>&1 &
    BASE_PID=$!; FLEET_PIDS+=($BASE_PID)
    fleet_wait_ready s0 "https://127.0.0.1:$((PORT + 1))" "$HOST" || exit 1
    URL_MAIN=$URL; URL=https://127.0.0.1:$((PORT + 1))
    throughput "The same load on smartotpd before sealing and the audit ($("$BASE_SMARTOTPD" --version)), its own database on the same server:" "$BASE_PID" reset_base "$("$BASE_SMARTOTPD" --version)"
    fleet_kill "$BASE_PID"
    URL=$URL_MAIN
fi
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
# BIG_USERS (default 100,000; the issue's 1,000,000): users more, every one of them asked
# about; SOAK_MINUTES (default 0): then that long at 64 clients over all of them, smartotpd's
# resident memory each minute (what is bounded stays flat: the pool, the versions seen,
# the request ids, which live in the rows).
BIG=${BIG_USERS:-100000}
users big "$BIG"
rss() { awk '/VmRSS/{print $2}' "/proc/$SPID/status"; }
out=$(LOAD throughput --clients 64 --seconds "$SECONDS_EACH" --users big --count "$BIG" --kind valid --counters "$FLEET/counters.big")
echo "With $BIG more users: 64 clients, valid codes over all of them: $out"
echo "  smartotpd peak RSS $(awk '/VmHWM/{print $2, $3}' /proc/$SPID/status), now $(rss) kB; database $(psql_ -c "SELECT pg_size_pretty(pg_database_size('smartotp'))")"
if [ "${SOAK_MINUTES:-0}" -gt 0 ]; then
    echo "  under load for ${SOAK_MINUTES} min (64 clients, valid codes over all $BIG), smartotpd's RSS in kB at the end of each minute:"
    line="   "
    for m in $(seq 1 "$SOAK_MINUTES"); do
        out=$(LOAD throughput --clients 64 --seconds 60 --users big --count "$BIG" --kind valid --counters "$FLEET/counters.big")
        line="$line $(rss)"
        printf 'soak\t%s\t%s\t%s\n' "$m" "$(rss)" "$(sed -E 's/.*per_second=([0-9]+).*/\1/' <<<"$out")" >>"$FLEET/soak.tsv"
    done
    echo "$line"
    echo "  verdicts/s each minute: $(cut -f4 "$FLEET/soak.tsv" | tr '\n' ' ')"
fi
echo

fi

# A fleet login against a local one: the same module, pamtester, a fresh TOTP record each run.
B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
mkdir -p "$FLEET/store/users" "$FLEET/store/locks"; chmod -R 700 "$FLEET/store"
rec="smartotp-record 1\nuser daemon\ncreated 1\ntoken id=code kind=code type=totp period=30 algorithm=sha1 digits=6 secret=$B32 last=- created=1 used=- label=-\n"
printf "$rec" >"$FLEET/daemon.record"; chmod 600 "$FLEET/daemon.record"
psql_ -c "DELETE FROM smartotp_records WHERE username = 'daemon'"
users daemon 1 0 $B32 totp
echo "auth required $SO store=$FLEET/store methods=code" >/etc/pam.d/smartotp-fleet-bench-local
# Through the fleet: the client started for the login (agent=off), then root's agent
# (smartotp-fleet --agent), which keeps its connection from one login to the next.
echo "auth required $SO methods=code server=$URL tls_dir=$HOST client=$BIN/smartotp-fleet agent=off" >/etc/pam.d/smartotp-fleet-bench-fleet
echo "auth required $SO methods=code server=$URL tls_dir=$HOST client=$BIN/smartotp-fleet agent=$FLEET/agent.sock" >/etc/pam.d/smartotp-fleet-bench-agent
"$BIN/smartotp-fleet" --agent --socket "$FLEET/agent.sock" 2>>"$FLEET/agent.log" &
FLEET_PIDS+=($!)
for i in $(seq 1 50); do [ -S "$FLEET/agent.sock" ] && break; sleep 0.1; done
echo "cp -p $FLEET/daemon.record $FLEET/store/users/daemon" >"$FLEET/reset-local.sh"
# The fleet's copy is written again (an edited row would be refused: its mac), at a version
# above any a replica has seen.
cat >"$FLEET/reset-fleet.sh" <<SH
runuser -u postgres -- $PGBIN/psql -h $FLEET/pg -p $PGPORT -U smartotpd -d smartotp -qc "DELETE FROM smartotp_records WHERE username = 'daemon'"
bash $FLEET/users.sh daemon 1 0 $B32 totp \$(date +%s%N) >/dev/null
SH
cp "$FLEET/reset-fleet.sh" "$FLEET/reset-agent.sh"
for kind in local fleet agent; do
    sh "$FLEET/reset-$kind.sh"
    oathtool --totp -b $B32 | pamtester "smartotp-fleet-bench-$kind" daemon authenticate >/dev/null 2>&1 || {
        echo "fleet-bench: a $kind login failed:"; sh "$FLEET/reset-$kind.sh"; oathtool --totp -b $B32 | pamtester -v "smartotp-fleet-bench-$kind" daemon authenticate; exit 1; }
    hyperfine -N --runs 30 --warmup 3 --prepare "sh $FLEET/reset-$kind.sh" --export-json "$FLEET/h.$kind.json" \
        "sh -c 'oathtool --totp -b $B32 | pamtester smartotp-fleet-bench-$kind daemon authenticate'" >/dev/null 2>&1
done
# HOLD=FILE: the fleet stays up (its settings printed) until FILE is removed, for probing by hand.
[ -z "${HOLD:-}" ] || { printf 'URL=%s HOST=%s FLEET=%s BIN=%s\n' "$URL" "$HOST" "$FLEET" "$BIN"; while [ -e "$HOLD" ]; do sleep 1; done; }
[ -z "${TRACE:-}" ] || { sh "$FLEET/reset-fleet.sh"; oathtool --totp -b $B32 >"$FLEET/code"
    strace -f -ttt -o "$TRACE" pamtester smartotp-fleet-bench-fleet daemon authenticate <"$FLEET/code" >/dev/null 2>&1; }
# The same fleet login with the first verifier black-holed: in a network namespace of the
# bench's own, the first server is an address behind a link whose other end is down (nothing
# answers, not even a refusal) and
# the second a replica started there on its loopback (PostgreSQL through its Unix socket).
ip netns add "$NS" && ip -n "$NS" link set lo up && ip -n "$NS" link add v0 type veth peer name v1 &&
    ip -n "$NS" addr add 10.9.0.1/24 dev v0 && ip -n "$NS" link set v0 up
fleet_config s2 "127.0.0.1:$((PORT + 1))" "postgres://smartotpd@/smartotp?host=$FLEET/pg&port=$PGPORT"
cp "$FLEET/pki/s1.pem" "$FLEET/pki/s2.pem"; cp "$FLEET/pki/s1.key" "$FLEET/pki/s2.key"
fleet_server_start s2 "$NS"
for i in $(seq 1 100); do ip netns exec "$NS" curl -sf --cacert "$HOST/ca.pem" --cert "$HOST/cert.pem" --key "$HOST/key.pem" "https://127.0.0.1:$((PORT + 1))/v1/health" >/dev/null 2>&1 && break; sleep 0.1; done
echo "auth required $SO methods=code server=https://10.9.0.2:$PORT,https://127.0.0.1:$((PORT + 1)) tls_dir=$HOST client=$BIN/smartotp-fleet agent=off" >/etc/pam.d/smartotp-fleet-bench-blackholed
cp "$FLEET/reset-fleet.sh" "$FLEET/reset-blackholed.sh"
sh "$FLEET/reset-fleet.sh"
oathtool --totp -b $B32 | ip netns exec "$NS" pamtester smartotp-fleet-bench-blackholed daemon authenticate >/dev/null 2>&1 || {
    echo "fleet-bench: a login with the first server black-holed failed"; tail -3 "$FLEET/s2.log"; exit 1; }
hyperfine -N --runs 10 --warmup 1 --prepare "sh $FLEET/reset-blackholed.sh" --export-json "$FLEET/h.blackholed.json" \
    "ip netns exec $NS sh -c 'oathtool --totp -b $B32 | pamtester smartotp-fleet-bench-blackholed daemon authenticate'" >/dev/null 2>&1
rm -f /etc/pam.d/smartotp-fleet-bench-blackholed /etc/pam.d/smartotp-fleet-bench-agent
python3 - "$FLEET/h.local.json" "$FLEET/h.fleet.json" "$FLEET/h.blackholed.json" "$FLEET/h.agent.json" <<'PY'
import json, sys
l, f, b, a = (json.load(open(p))["results"][0] for p in sys.argv[1:5])
print("Login wall time (pamtester, hyperfine 30 runs): local store %.1f ms, fleet %.1f ms (median %.1f / %.1f): the fleet adds %.1f ms"
      % (l["mean"] * 1000, f["mean"] * 1000, l["median"] * 1000, f["median"] * 1000, (f["mean"] - l["mean"]) * 1000))
print("  through root's agent (smartotp-fleet --agent): %.1f ms (median %.1f): the fleet adds %.1f ms"
      % (a["mean"] * 1000, a["median"] * 1000, (a["mean"] - l["mean"]) * 1000))
print("  the first verifier black-holed (10 runs): %.1f ms (median %.1f): %.2f s more than the fleet login (the connect deadline is 1 s)"
      % (b["mean"] * 1000, b["median"] * 1000, b["mean"] - f["mean"]))
PY

[ -z "${LOGIN_ONLY:-}" ] || exit 0
# The figure: verdicts/s and p99 against clients, beside the ceiling (PLOT=PATH.png; the
# SVG is always written beside it, the PNG when rsvg-convert is there: librsvg2-bin).
PLOT=${PLOT:-$PWD/fleet-bench.png}
python3 "$ROOT/Benchmarks/plot.py" "$FLEET/plot.tsv" "${PLOT%.png}.svg"
if command -v rsvg-convert >/dev/null; then
    rsvg-convert -o "$PLOT" "${PLOT%.png}.svg" && echo "Plot: $PLOT"
else
    echo "Plot: ${PLOT%.png}.svg (apt install librsvg2-bin for the PNG)"
fi
