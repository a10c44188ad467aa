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

# --- A tap login: local records, and offline=tap with the verifiers unreachable -----------
# The same virtual card (a known secret: the offline pair is made here as a host makes it,
# a yescrypt hash of the card's answer to a random challenge), pam-harness through the
# Embedded module. The fleet's one server is an address behind a link whose other end is
# down, in a network namespace of this run's own: nothing answers, not even a refusal, as
# when a laptop is off the network.
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
python3 -W ignore - "$SECRET" "$STORE/offline/benchtap" <<'PY'
import base64, crypt, hmac, hashlib, os, sys, time
secret, path = base64.b32decode(sys.argv[1]), sys.argv[2]
challenge = os.urandom(8)
answer = hmac.new(secret, challenge, hashlib.sha1).hexdigest()
salt = "$y$j9T$" + base64.b64encode(os.urandom(12), b"./").decode()
with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
    f.write("smartotp-offline 1\ncard card - %s 0\npair %s %d 0 %s\n" % (b"login".hex(), challenge.hex(), int(time.time()), crypt.crypt(answer, salt)))
PY
FLEET="$WORK/fleet"; mkdir -p "$FLEET"
source "$ROOT/Tests/Integration/lib/fleet.sh"
fleet_ca server-ca "bench servers"; fleet_ca hosts-ca "bench hosts"; fleet_cert hosts-ca host clientAuth
TLS=$(fleet_identity host)
service local "auth required $SO store=$STORE methods=card timeout=10"
service offline "auth required $SO store=$STORE methods=card timeout=10 server=https://10.9.0.2:8443 tls_dir=$TLS client=$BIN/smartotp-fleet server_timeout=10 offline=tap"
for s in local offline; do
    out=$(ip netns exec "$NS" "${NSS_ENV[@]}" "$H" --confdir "$CONF" --service "$s" --user benchtap 2>&1)
    case "$out" in *"authenticate: 0 "*) ;; *) echo "card-bench: the $s tap login failed: $out" >&2; exit 1;; esac
    hyperfine -N --runs "${LOGINS:-10}" --warmup 1 --export-json "$WORK/h.$s.json" \
        "ip netns exec $NS ${NSS_ENV[*]} $H --confdir $CONF --service $s --user benchtap" >/dev/null 2>&1
done
python3 - "$WORK/h.local.json" "$WORK/h.offline.json" <<'PY'
import json, sys
l, o = (json.load(open(p))["results"][0] for p in sys.argv[1:3])
print("| tap login through PAM, records on this host (hyperfine) | %d | %.0f ms (median %.0f) |" % (len(l["times"]), l["mean"] * 1000, l["median"] * 1000))
print("| tap login, offline=tap, the one verifier black-holed: the pair decides | %d | %.0f ms (median %.0f) |" % (len(o["times"]), o["mean"] * 1000, o["median"] * 1000))
PY
stop_card
