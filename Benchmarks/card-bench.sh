#!/usr/bin/env bash
# card-bench.sh — the card side over a real pcscd and the virtual card (vpcd):
# APDUs and wall time per tap (SELECT + CALCULATE; with an access code, + VALIDATE), and
# the CPU a process uses while it waits 10 s for a card that never comes (event-driven
# SCardGetStatusChange: it should be near zero); and a whole tap login through PAM with
# the records on this host, beside an offline=tap fleet login whose one verifier drops
# every packet (the host's offline pair decides). Root; starts and stops its own pcscd.
source "$(dirname "$0")/../Tests/Integration/lib/testlib.sh"
READER="Virtual PCD 00 00"
start_pcscd
echo "| measurement | count | figure |"
echo "| --- | ---: | ---: |"
start_card "$WORK/open.state"
timeout 30 ykman --reader "$READER" oath accounts add -f bench JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP >/dev/null 2>&1
"$BIN/smartotp-bench" tap --reader "$READER" --name bench --taps "${TAPS:-50}"
stop_card
start_card "$WORK/locked.state"
timeout 30 ykman --reader "$READER" oath accounts add -f bench JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP >/dev/null 2>&1
timeout 30 ykman --reader "$READER" oath access change -n "bench code" >/dev/null 2>&1
"$BIN/smartotp-bench" tap --reader "$READER" --name bench --code "bench code" --taps "${TAPS:-50}"
stop_card
"$BIN/smartotp-bench" wait --reader "$READER" --seconds "${WAIT_SECONDS:-10}"

# --- A tap login: local records, beside a typed code; through the fleet; offline=tap -----
# The same virtual card, pam-harness through the Embedded module. Offline, the fleet's one
# server is an address behind a link whose other end is down, in a network namespace of
# this run's own: nothing answers, not even a refusal, as when a laptop is off the network.
NS="sotpcard$$"
at_exit "ip netns del $NS 2>/dev/null"
ip netns add "$NS" && ip -n "$NS" link set lo up && ip -n "$NS" link add v0 type veth peer name v1 &&
    ip -n "$NS" addr add 10.9.0.1/24 dev v0 && ip -n "$NS" link set v0 up
SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
start_card "$WORK/login.state"
timeout 30 ykman --reader "$READER" oath accounts add -f login "$SECRET" >/dev/null 2>&1
mkdir -p "$STORE/users" "$STORE/locks" "$STORE/offline"; chmod 700 "$STORE" "$STORE/users" "$STORE/locks" "$STORE/offline"
nss_user benchtap
printf 'smartotp-record 1\nuser benchtap\ncreated 1\ntoken id=card kind=card type=totp period=30 algorithm=sha1 digits=6 secret=%s last=- created=1 used=- label=- name=login device=- access-key=- touch=0\n' "$SECRET" >"$STORE/users/benchtap"
chmod 600 "$STORE/users/benchtap"
FLEET="$WORK/fleet"; mkdir -p "$FLEET"
source "$ROOT/Tests/Integration/lib/fleet.sh"
fleet_ca server-ca "bench servers"; fleet_ca hosts-ca "bench hosts"; fleet_cert hosts-ca host clientAuth
TLS=$(fleet_identity host)
service local "auth required $SO store=$STORE methods=card timeout=10"
# A typed code beside the tap, the same harness and store: an HOTP record written afresh
# before each run (--prepare), answered with RFC 4226's first code for its secret.
nss_user benchcode
printf 'smartotp-record 1\nuser benchcode\ncreated 1\ntoken id=code kind=code type=hotp counter=0 algorithm=sha1 digits=6 secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ last=- created=1 used=- label=-\n' >"$WORK/benchcode.record"
chmod 600 "$WORK/benchcode.record"
service code "auth required $SO store=$STORE methods=code timeout=10"
login() {  # NAME SERVICE USER [ANSWER]: a checked login, then hyperfine's runs of it
    local name=$1 svc=$2 user=$3 answer=${4:-} prepare=${5:-true}
    local cmd="ip netns exec $NS ${NSS_ENV[*]} $H --confdir $CONF --service $svc --user $user${answer:+ --answer $answer}"
    [ -n "${6:-}" ] && cmd="${NSS_ENV[*]} $H --confdir $CONF --service $svc --user $user"
    sh -c "$prepare"
    out=$(sh -c "$cmd" 2>&1)
    case "$out" in *"authenticate: 0 "*) ;; *) echo "card-bench: the $name login failed: $out" >&2; exit 1;; esac
    hyperfine -N --runs "${LOGINS:-10}" --warmup 1 --prepare "$prepare" --export-json "$WORK/h.$name.json" "$cmd" >/dev/null 2>&1
}
login local local benchtap
login code code benchcode 755224 "cp -p $WORK/benchcode.record $STORE/users/benchcode"

# The same card through an online fleet: one replica on this host's loopback (PostgreSQL,
# mutual TLS), the card enrolled through it as a fleet enrols one; each tap asks the replica
# for a challenge, the card answers it, the replica decides.
PGPORT=55435 PORT=18445 URL=https://127.0.0.1:18445
SMARTOTPD=$BIN/smartotpd
fleet_ca admin-ca "bench admins"; fleet_cert admin-ca admin clientAuth; ADMIN=$(fleet_identity admin)
fleet_cert server-ca s1 serverAuth "IP:127.0.0.1"
: >"$FLEET/revoked"
at_exit fleet_stop
chmod 711 "$WORK" "$FLEET"  # the postgres user reaches its cluster folder
fleet_pg_start 127.0.0.1 "$PGPORT" || { echo "card-bench: PostgreSQL did not start"; cat "$FLEET/pg/log" "$FLEET/pg/initdb.log" 2>/dev/null | tail -3; exit 1; }
fleet_config s1 "127.0.0.1:$PORT" "postgres://smartotpd@127.0.0.1:$PGPORT/smartotp"
"$SMARTOTPD" migrate --config "$FLEET/s1.conf" >/dev/null 2>&1
fleet_server_start s1
fleet_wait_ready s1 "$URL" "$TLS" || { echo "card-bench: smartotpd did not start"; tail -3 "$FLEET/s1.log"; exit 1; }
nss_user benchfleet
"$CLI" enroll benchfleet --force --card --reader "$READER" --server "$URL" --tls-dir "$ADMIN" >/dev/null 2>&1 ||
    { echo "card-bench: enrolling the card through the fleet failed"; exit 1; }
service fleet "auth required $SO methods=card timeout=10 server=$URL tls_dir=$TLS client=$BIN/smartotp-fleet server_timeout=10 agent=off"
login fleet fleet benchfleet "" true root-namespace
# The same through root's agent (smartotp-fleet --agent): no client started, its
# connection kept from the tap before.
"$BIN/smartotp-fleet" --agent --socket "$FLEET/agent/fleet.sock" 2>>"$FLEET/agent.log" &
FLEET_PIDS+=($!)
for i in $(seq 1 50); do [ -S "$FLEET/agent/fleet.sock" ] && break; sleep 0.1; done
service agent "auth required $SO methods=card timeout=10 server=$URL tls_dir=$TLS client=/nonexistent server_timeout=10 agent=$FLEET/agent/fleet.sock"
login agent agent benchfleet "" true root-namespace
# Offline: one online tap with offline=tap leaves the host the verifiers' stock of pairs
# (16); then the same store behind a verifier that drops every packet, in the namespace.
service online "auth required $SO store=$STORE methods=card timeout=10 server=$URL tls_dir=$TLS client=$BIN/smartotp-fleet server_timeout=10 offline=tap"
service offline "auth required $SO store=$STORE methods=card timeout=10 server=https://10.9.0.2:8443 tls_dir=$TLS client=$BIN/smartotp-fleet server_timeout=10 offline=tap"
login online online benchfleet "" true root-namespace
# A stock holds 16 pairs and each offline login uses one (the check and the warm-up too).
LOGINS=$(( ${LOGINS:-10} > 12 ? 12 : ${LOGINS:-10} )) login offline offline benchfleet
python3 - "$WORK" <<'PY'
import json, sys
r = {k: json.load(open("%s/h.%s.json" % (sys.argv[1], k)))["results"][0] for k in ("local", "code", "fleet", "agent", "offline")}
row = lambda what, k: print("| %s | %d | %.1f ms (median %.1f) |" % (what, len(r[k]["times"]), r[k]["mean"] * 1000, r[k]["median"] * 1000))
row("tap login through PAM, records on this host (hyperfine)", "local")
row("typed code login, the same harness and store", "code")
row("tap login through the fleet (one replica on loopback, PostgreSQL), the client started", "fleet")
row("tap login through the fleet, through root's agent (its connection kept)", "agent")
row("tap login, offline=tap, the one verifier black-holed: the pair decides", "offline")
print("| a tap's cost over a typed code, on this host | | %.1f ms |" % ((r["local"]["mean"] - r["code"]["mean"]) * 1000))
print("| the fleet's cost over a local tap (a challenge asked, the answer decided) | | %.1f ms; %.1f ms through the agent |"
      % ((r["fleet"]["mean"] - r["local"]["mean"]) * 1000, (r["agent"]["mean"] - r["local"]["mean"]) * 1000))
PY
stop_card
