#!/usr/bin/env bash
# The fleet on one machine: PostgreSQL in one network namespace, two smartotpd replicas in
# two more, three hosts in three more, joined by veth pairs on a bridge (10.77.0.0/24,
# nothing leaves the namespaces). The hosts run real pamtester logins through the
# Embedded module, which asks the verifiers through smartotp-fleet.
#   db 10.77.0.2 · s1 10.77.0.11 · s2 10.77.0.12 · h1 10.77.0.21 · h2 .22 · h3 .23
source "$(dirname "$0")/lib/testlib.sh"
source "$ROOT/Tests/Integration/lib/fleet.sh"
fleet_suite ip openssl curl pamtester oathtool python3 ykman

P="sotp$$"                     # namespace prefix: this run's own
NODES=(hub db s1 s2 h1 h2 h3)
declare -A ADDR=([db]=10.77.0.2 [s1]=10.77.0.11 [s2]=10.77.0.12 [h1]=10.77.0.21 [h2]=10.77.0.22 [h3]=10.77.0.23)
SERVERS="https://${ADDR[s1]}:8443,https://${ADDR[s2]}:8443"

teardown() {
    fleet_stop
    local n
    for n in "${NODES[@]}"; do ip netns del "$P$n" 2>/dev/null; done
    [ -n "${FAKE_DIR:-}" ] && rm -rf "$FAKE_DIR"
    rm -f /etc/pam.d/"$P"-h1 /etc/pam.d/"$P"-h2 /etc/pam.d/"$P"-h3 /etc/pam.d/"$P"-rogue /etc/pam.d/"$P"-card /etc/pam.d/"$P"-off-* /etc/pam.d/"$P"-agent*
}
at_exit teardown

# The network: a bridge in the hub namespace, one veth pair a node.
fleet_net db s1 s2 h1 h2 h3 || { echo "not ok 1 - cannot create network namespaces (needs root and CAP_NET_ADMIN)"; exit 1; }

# Certificates: one CA for the servers, one for hosts, one for administrators, one for the
# helpdesk, and a rogue.
fleet_ca server-ca "smartotp servers"; fleet_ca hosts-ca "smartotp hosts"; fleet_ca admin-ca "smartotp admins"
fleet_ca helpdesk-ca "smartotp helpdesk"; fleet_cert helpdesk-ca desk1 clientAuth; DESK=$(fleet_identity desk1)
fleet_ca rogue-ca "smartotp hosts"   # same name as the hosts' CA, another key
for s in s1 s2; do fleet_cert server-ca "$s" serverAuth "DNS:$s,IP:${ADDR[$s]}"; done
for h in h1 h2 h3; do fleet_cert hosts-ca "$h" clientAuth; fleet_identity "$h" >/dev/null; done
fleet_cert admin-ca admin1 clientAuth; ADMIN=$(fleet_identity admin1)
fleet_cert rogue-ca rogue clientAuth; fleet_identity rogue >/dev/null
: >"$FLEET/revoked"

# PostgreSQL over TLS with a private CA (the servers' here), replicas in by hostssl only,
# smartotpd checking the chain and the address: the normal setup of docs/fleet.md.
fleet_cert server-ca db serverAuth "IP:${ADDR[db]}"
fleet_pg_start "${ADDR[db]}" 5432 "${P}db" && ok "PostgreSQL started in its namespace (TLS, hostssl)" || { not_ok "PostgreSQL starts" "$(tail -5 "$FLEET/pg/log" 2>/dev/null)"; finish; exit 1; }
DBURL="postgres://smartotpd@${ADDR[db]}:5432/smartotp?sslmode=verify-full&sslrootcert=$FLEET/pki/server-ca.pem"
fleet_config s1 "${ADDR[s1]}:8443" "$DBURL" "metrics_listen = ${ADDR[s1]}:9464"
fleet_config s2 "${ADDR[s2]}:8443" "$DBURL"
for s in s1 s2; do echo "helpdesk_ca = $FLEET/pki/helpdesk-ca.pem" >>"$FLEET/$s.conf"; done
# Roles by CA: an administrators' CA that is also the hosts' (the same file, or another
# certificate on the hosts' CA key) would make every host an administrator (Step 2).
openssl req -x509 -key "$FLEET/pki/hosts-ca.key" -days 30 -subj "/CN=not the hosts CA" -out "$FLEET/pki/same-key.pem" 2>/dev/null
for ca in hosts-ca same-key; do
    sed "s#^admin_ca = .*#admin_ca = $FLEET/pki/$ca.pem#" "$FLEET/s1.conf" >"$FLEET/roles.conf"
    out=$(timeout 20 "$SMARTOTPD" --config "$FLEET/roles.conf" 2>&1); rc=$?
    case "$rc:$out" in 0:*|124:*) not_ok "smartotpd refuses admin_ca = client_ca ($ca)" "exit $rc";;
        *"share a CA key"*) ok "smartotpd refuses to start when admin_ca shares the hosts' CA key ($ca.pem)";;
        *) not_ok "smartotpd refuses admin_ca = client_ca ($ca)" "$out";; esac
done
sed "s#^helpdesk_ca = .*#helpdesk_ca = $FLEET/pki/admin-ca.pem#" "$FLEET/s1.conf" >"$FLEET/roles.conf"
out=$(timeout 20 "$SMARTOTPD" --config "$FLEET/roles.conf" 2>&1)
case "$out" in *"admin_ca"*"helpdesk_ca"*"share a CA key"*) ok "… and when helpdesk_ca is the administrators' CA";; *) not_ok "helpdesk_ca = admin_ca refused" "$out";; esac
# The keys: smartotpd will not start without them, or with one others can read.
cp "$FLEET/seal.key" "$FLEET/open.key"; chmod 644 "$FLEET/open.key"
for bad in "$FLEET/open.key" "$FLEET/missing.key"; do
    sed "s#^seal_key = .*#seal_key = $bad#" "$FLEET/s1.conf" >"$FLEET/keys.conf"
    out=$(timeout 20 "$SMARTOTPD" --config "$FLEET/keys.conf" 2>&1); rc=$?
    case "$rc:$out" in 0:*|124:*) not_ok "smartotpd refuses seal_key $(basename "$bad")" "exit $rc";;
        *"$(basename "$bad")"*) ok "smartotpd will not start with seal_key $(basename "$bad") ($(echo "$out" | grep -o 'can be read[^(]*\|cannot open[^:]*' | head -1))";;
        *) not_ok "smartotpd refuses seal_key $(basename "$bad")" "$out";; esac
done
sed "s#^tls_cert = .*#tls_cert = $FLEET/pki/missing.pem#" "$FLEET/s1.conf" >"$FLEET/certs.conf"
out=$(timeout 20 "$SMARTOTPD" --config "$FLEET/certs.conf" 2>&1)
case "$out" in *"tls_cert $FLEET/pki/missing.pem: No such file"*) ok "a missing certificate file: smartotpd names it and will not start";;
    *) not_ok "a missing tls_cert is named" "$out";; esac
out=$(in_ns s1 "$SMARTOTPD" migrate --config "$FLEET/s1.conf" 2>&1); rc=$?
check "smartotpd migrate creates the schema" 0 "$rc"
out=$(in_ns s2 "$SMARTOTPD" migrate --config "$FLEET/s2.conf" 2>&1)
case "$out" in *"schema is current"*) ok "… and a second run has nothing to do";; *) not_ok "migrate is idempotent" "$out";; esac
sed "s#sslrootcert=[^ ]*#sslrootcert=$FLEET/pki/rogue-ca.pem#" "$FLEET/s1.conf" >"$FLEET/rogue-db.conf"
out=$(in_ns s1 timeout 30 "$SMARTOTPD" migrate --config "$FLEET/rogue-db.conf" 2>&1); rc=$?
case "$rc:$out" in 1:*"did not answer within 15 s"*) ok "verify-full: a database whose certificate another CA signed is refused, and migrate says so";;
    *) not_ok "verify-full refuses the wrong CA, and migrate says so" "exit $rc: $(echo "$out" | tail -1)";; esac
sed "s#?sslmode=verify-full.*#?sslmode=disable#" "$FLEET/s1.conf" >"$FLEET/plain-db.conf"
out=$(in_ns s1 timeout 30 "$SMARTOTPD" migrate --config "$FLEET/plain-db.conf" 2>&1); rc=$?
case "$rc:$out" in 1:*"did not answer"*) ok "… and sslmode=disable finds no way in (hostssl only)";;
    *) not_ok "hostssl refuses plain connections" "exit $rc: $(echo "$out" | tail -1)";; esac
fleet_server_start s1 "${P}s1"; fleet_server_start s2 "${P}s2"
curl_as() { local who=$1 ns=$2; shift 2; in_ns "$ns" curl -s --max-time 5 --cacert "$FLEET/tls/$who/ca.pem" --cert "$FLEET/tls/$who/cert.pem" --key "$FLEET/tls/$who/key.pem" "$@"; }
ready() { local i; for i in $(seq 1 50); do curl_as admin1 h1 -f --max-time 1 "https://$1:8443/v1/health" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
ready "${ADDR[s1]}" && ready "${ADDR[s2]}" && ok "two replicas answer, each in its namespace, to h1 in another" || { not_ok "replicas ready" "$(tail -3 "$FLEET/s1.log")"; finish; exit 1; }

# The hosts' PAM services: the module asks the verifiers through the client.
for h in h1 h2 h3 rogue; do
    echo "auth required $SO methods=code server=$SERVERS tls_dir=$FLEET/tls/$h client=$CLIENT server_timeout=5 agent=off" >/etc/pam.d/"$P-$h"
done
admin() { in_ns h1 "$CLI" "$@" --server "$SERVERS" --tls-dir "$ADMIN"; }
HOTP_B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
hotp() { oathtool --hotp -c "$1" -b "$HOTP_B32"; }
totp() { oathtool --totp -b "$1"; }
# next USER: the user's next HOTP code (each user's counter in a file: \$(next …) runs in
# a subshell)
next() { local f="$FLEET/counter.$1" c; c=$(( $(cat "$f" 2>/dev/null || echo 0) + 1 )); echo "$c" >"$f"; hotp "$c"; }
enroll_hotp() { echo "$HOTP_B32" | admin enroll "$1" --secret - --hotp --force >/dev/null 2>&1; }
# What pamtester says for PAM_AUTHINFO_UNAVAIL: no verdict (the module failed closed).
UNAVAIL="pamtester: Authentication service cannot retrieve authentication info"
# login HOST USER CODE: pamtester's last line
# (every user named here resolves in this run's name service: lib/testlib.sh)
nss_user racer walker locker pgtest revtest victim migrant cardholder tapper blackhole $(seq -f burst%g 1 12)
login() { nss_user "$2"; echo "$3" | in_ns "$1" "${NSS_ENV[@]}" pamtester "$P-$1" "$2" authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1; }
# verdicts FILE…: how many of these logins got a verdict (anything but UNAVAIL)
verdicts() { local f n=0; for f in "$@"; do grep -q 'pamtester: ' "$f" && ! grep -qF "$UNAVAIL" "$f" && n=$((n + 1)); done; echo "$n"; }
# The background logins of a burst; waited for by PID (the servers are background jobs too).
JOBS=()
spawn() { "$@" & JOBS+=($!); }
reap() { local p; for p in "${JOBS[@]}"; do wait "$p"; done; JOBS=(); }

# --- Enrolment by an administrator, through the fleet ------------------------------------
out=$(echo "$HOTP_B32" | admin enroll racer --secret - --hotp --force 2>&1) && ok "smartotp --server enroll (HOTP) with the admin certificate" || not_ok "enroll through the fleet" "$out"
TOTP_B32=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
echo "$TOTP_B32" | admin enroll walker --secret - --force >/dev/null 2>&1
check "smartotp --server list shows both users" "racer walker" "$(admin list 2>/dev/null | cut -f1 | sort | tr '\n' ' ' | sed 's/ $//')"

# --- One code, one use, fleet-wide -------------------------------------------------------
code=$(totp "$TOTP_B32")
check "a code is accepted on host 1" "pamtester: successfully authenticated" "$(login h1 walker "$code")"
check "… and refused on host 2" "pamtester: Authentication failure" "$(login h2 walker "$code")"
check "… and on host 3" "pamtester: Authentication failure" "$(login h3 walker "$code")"

# --- 32 logins at once over three hosts, one valid code, 20 rounds -----------------------
bad_rounds=0; lost=0
for round in $(seq 1 ${RACE_ROUNDS:-20}); do
    code=$(hotp "$round")
    rm -f "$FLEET"/race.*
    for i in $(seq 1 32); do
        h="h$(( (i % 3) + 1 ))"
        spawn eval 'login "$h" racer "$code" >"$FLEET/race.$i"'
    done
    reap
    wins=$(grep -l 'successfully authenticated' "$FLEET"/race.* 2>/dev/null | wc -l)
    answered=$(verdicts "$FLEET"/race.*)
    [ "$wins" -eq 1 ] || { bad_rounds=$((bad_rounds + 1)); echo "# round $round: $wins winners"; }
    lost=$((lost + 32 - answered))
    admin unlock racer >/dev/null 2>&1
done
check "32 racing logins over 3 hosts, 20 rounds: exactly one success in every round" 0 "$bad_rounds"
check "… and every login got a verdict" 0 "$lost"

# --- deny=3 is fleet-wide ----------------------------------------------------------------
enroll_hotp locker
for h in h1 h2 h3; do login "$h" locker 000000 >/dev/null; done
code=$(next locker)
check "three wrong codes on three hosts lock the user everywhere (PAM_MAXTRIES)" "pamtester: Have exhausted maximum number of retries for service" "$(login h1 locker "$code")"
admin unlock locker >/dev/null 2>&1 && ok "smartotp --server unlock" || not_ok "unlock through the fleet"
check "… releases the user on every host" "pamtester: successfully authenticated" "$(login h2 locker "$code")"

# --- A replica killed in the middle of a burst -------------------------------------------
for i in $(seq 1 12); do enroll_hotp "burst$i"; done
rm -f "$FLEET"/burst.*
for i in $(seq 1 12); do
    code=$(hotp 1)
    for k in 1 2; do spawn eval 'login "h$(( (i + k) % 3 + 1 ))" "burst$i" "$code" >"$FLEET/burst.$i.$k"'; done
done
sleep 0.05; kill -9 "${FLEET_SERVER_PID[s1]}" 2>/dev/null
reap
verdicts=$(verdicts "$FLEET"/burst.*)
check "s1 killed mid-burst: all 24 logins still got a verdict (from s2)" 24 "$verdicts"
twice=0; for i in $(seq 1 12); do [ "$(grep -l successfully "$FLEET"/burst."$i".* 2>/dev/null | wc -l)" -le 1 ] || twice=$((twice + 1)); done
check "… and no code was accepted twice" 0 "$twice"
fleet_server_start s1 "${P}s1"; ready "${ADDR[s1]}" || true

# --- PostgreSQL down: fail closed in time; back: working again without a restart ------------
enroll_hotp pgtest
code=$(next pgtest)
fleet_pg_stop
t0=$(date +%s)
out=$(login h1 pgtest "$code")
t1=$(date +%s)
check "PostgreSQL stopped: the login fails closed (PAM_AUTHINFO_UNAVAIL)" "$UNAVAIL" "$out"
# An order of magnitude, not a target: without server_timeout (5 s) the login would wait on
# TCP's own retries (two minutes).
[ $((t1 - t0)) -le 15 ] && ok "… within a few times server_timeout, not TCP's minutes ($((t1 - t0)) s)" || not_ok "fails within the timeout" "$((t1 - t0)) s"
fleet_pg_start "${ADDR[db]}" 5432 "${P}db" >/dev/null
ok_after=""
for i in $(seq 1 30); do
    case "$(login h2 pgtest "$code")" in *successfully*) ok_after=yes; break;; esac
    sleep 0.5
done
check "PostgreSQL back: logins work again without restarting smartotpd" yes "$ok_after"

# --- Who may ask what ----------------------------------------------------------------------
out=$(echo 123456 | in_ns h1 "${NSS_ENV[@]}" pamtester "$P-rogue" walker authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1)
check "a host certificate from another CA (same name) is refused: the login fails closed" "$UNAVAIL" "$out"
code=$(curl_as h1 h1 -o /dev/null -w '%{http_code}' "https://${ADDR[s2]}:8443/v1/admin/records/walker")
check "a host certificate cannot read a record (403)" 403 "$code"
code=$(curl_as h2 h2 -o /dev/null -w '%{http_code}' -X POST --data-binary 'all' "https://${ADDR[s1]}:8443/v1/admin/remove/walker")
check "… nor change one" 403 "$code"
summary=$(curl_as h3 h3 -X POST --data-binary '' "https://${ADDR[s2]}:8443/v1/verify/summary/walker")
case "$summary" in *"$TOTP_B32"*|*secret*) not_ok "a host's summary carries no secret" "$summary";; "smartotp-helper 1"*) ok "a host's summary carries no secret";; *) not_ok "summary answered" "$summary";; esac
code=$(in_ns h1 curl -s --max-time 5 --cacert "$FLEET/tls/h1/ca.pem" -o /dev/null -w '%{http_code}' "https://${ADDR[s1]}:8443/v1/health")
check "no client certificate: no answer (the TLS handshake fails: curl's 000)" 000 "$code"
serial=$(openssl x509 -in "$FLEET/pki/h3.pem" -noout -serial | cut -d= -f2)
enroll_hotp revtest
# TLS sessions: a login keeps one, root-only, for the next login to resume (no certificate
# sent again, no signature made); a resumed login writes none (the file stays as it was).
rm -rf "$FLEET/tls/h3/sessions"
check "a fleet login (a full TLS handshake) logs in" "pamtester: successfully authenticated" "$(login h3 revtest "$(next revtest)")"
session=$(ls "$FLEET"/tls/h3/sessions/* 2>/dev/null | head -1)
check "… and keeps its TLS session, root-only, for the next login" "600 root 700" \
    "$(stat -c '%a %U' "$session" 2>/dev/null) $(stat -c '%a' "$FLEET/tls/h3/sessions")"
before=$(stat -c '%i %Y.%y' "$session" 2>/dev/null)
check "the next login resumes it and logs in" "pamtester: successfully authenticated" "$(login h3 revtest "$(next revtest)")"
check "… without making a session anew (the same file, untouched)" "$before" "$(stat -c '%i %Y.%y' "$session" 2>/dev/null)"
echo "$serial  # h3, revoked" >>"$FLEET/revoked"
check "a revoked host (its serial in revoked=) is refused, its TLS session resumed or not" "$UNAVAIL" \
    "$(login h3 revtest 000000)"
check "… and the session it offered is not kept" "gone" "$([ -e "$session" ] && echo kept || echo gone)"
check "… while the others go on" "pamtester: successfully authenticated" "$(login h1 revtest "$(next revtest)")"
: >"$FLEET/revoked"
# Revocation holds on a connection already open: one keep-alive TLS connection asks, h2 is
# revoked, the same connection asks again.
in_ns h2 python3 "$ROOT/Tests/Integration/lib/keepalive.py" "${ADDR[s1]}" "$FLEET/tls/h2" /v1/verify/summary/walker 3 >"$FLEET/revoke.out" &
watch=$!
sleep 1
openssl x509 -in "$FLEET/pki/h2.pem" -noout -serial | cut -d= -f2 >>"$FLEET/revoked"
wait "$watch"
out="$(grep -m1 -o '^200' "$FLEET/revoke.out") $(grep -m1 -o '^403' "$FLEET/revoke.out")"
check "a host revoked while its connection is open is refused at its next request" "200 403" "$out"
: >"$FLEET/revoked"
mv "$FLEET/revoked" "$FLEET/revoked.away"
check "a revocation list that cannot be read refuses every host" "$UNAVAIL" "$(login h1 revtest "$(next revtest)")"
grep -q "revocation list .* cannot be read" "$FLEET"/s1.log "$FLEET"/s2.log && ok "… and says why in the log" || not_ok "unreadable revocation list logged"
mv "$FLEET/revoked.away" "$FLEET/revoked"
check "… and lets them in again once it can be read" "pamtester: successfully authenticated" "$(login h1 revtest "$(next revtest)")"

# Root's fleet agent (smartotp-fleet --agent) on h1: the module asks it first, and a login
# then starts no client. client= names no program here, so only the agent can answer.
AGENT_SOCK="$FLEET/agent/fleet.sock"
ip netns exec "${P}h1" "$CLIENT" --agent --socket "$AGENT_SOCK" 2>>"$FLEET/agent.log" &  # exec'd: $! is the agent
AGENT_PID=$!; FLEET_PIDS+=($AGENT_PID)
for i in $(seq 1 50); do [ -S "$AGENT_SOCK" ] && break; sleep 0.1; done
check "the agent's socket is root's 0600 in a folder of root's 0700" "600 root 700 root" \
    "$(stat -c '%a %U' "$AGENT_SOCK" 2>/dev/null) $(stat -c '%a %U' "$FLEET/agent" 2>/dev/null)"
agent_pam() { echo "auth required $SO methods=code server=$SERVERS tls_dir=$FLEET/tls/h1 server_timeout=5 $*" >/etc/pam.d/"$P-agent"; }
agent_login() { nss_user "$1"; echo "$2" | in_ns h1 "${NSS_ENV[@]}" pamtester "$P-agent" "$1" authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1; }
agent_pam agent="$AGENT_SOCK" client=/nonexistent/smartotp-fleet
check "a login through root's agent logs in (no client started: client= names none)" "pamtester: successfully authenticated" \
    "$(agent_login revtest "$(next revtest)")"
kept() { in_ns h1 ss -Htnp state established "( dport = :8443 )" 2>/dev/null | grep "pid=$AGENT_PID," | awk '{print $3}' | sort | tr '\n' ' '; }
first=$(kept)
check "… and the agent keeps its connection to the verifier" 1 "$(wc -w <<<"$first")"
check "the next login through the agent logs in" "pamtester: successfully authenticated" "$(agent_login revtest "$(next revtest)")"
check "… on the same connection (no new handshake)" "$first" "$(kept)"
check "a wrong code through the agent is refused" "pamtester: Authentication failure" "$(agent_login revtest 000000)"
# What reaches the socket that is not a module's session: the agent closes it and goes on.
# garbage PAYLOAD FRAMED: PAYLOAD a Python bytes literal, sent as a frame (LENGTH\n) when
# FRAMED is 1; prints what the agent did.
garbage() { in_ns h1 python3 - "$AGENT_SOCK" "$1" "$2" <<'PY'
import ast, socket, sys
p = ast.literal_eval(sys.argv[2])
if sys.argv[3] == "1": p = b"%d\n" % len(p) + p
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); s.sendall(p)
try: print("answered" if s.recv(100) else "closed")
except ConnectionResetError: print("closed")  # closed with the frame unread
except Exception as e: print("error", e)
PY
}
check "a first frame that is not one: closed unwelcomed" closed "$(garbage 'b"zz\n"' 0)"
check "a first frame beyond its limit: closed unwelcomed" closed "$(garbage 'b"99999999\n"' 0)"
check "arguments that are not a session's: closed unwelcomed" closed "$(garbage 'b"--admin\0GET\0/v1/admin/users\0"' 1)"
check "settings it cannot serve (no server=): closed unwelcomed" closed "$(garbage 'b"--session\0--\0methods=code\0"' 1)"
check "--version in a session's arguments: closed unwelcomed" closed "$(garbage 'b"--session\0--version\0"' 1)"
check "… and the agent serves the next login" "pamtester: successfully authenticated" "$(agent_login revtest "$(next revtest)")"
grep -q "agent: a session's first frame is not one" "$FLEET/agent.log" && ok "… having said why in its log" || not_ok "the agent logs a bad first frame" "$(tail -3 "$FLEET/agent.log")"
# Revocation holds on the agent's kept connection.
openssl x509 -in "$FLEET/pki/h1.pem" -noout -serial | cut -d= -f2 >>"$FLEET/revoked"
check "h1 revoked: a login through the agent's kept connection is refused" "$UNAVAIL" "$(agent_login revtest 000000)"
: >"$FLEET/revoked"
check "… and h1 let in again logs in through it" "pamtester: successfully authenticated" "$(agent_login revtest "$(next revtest)")"
# A socket that is not root's is never spoken to: the module starts the client instead.
FAKE_DIR=$(mktemp -d /tmp/smartotp-fake-agent.XXXXXX); chmod 755 "$FAKE_DIR"; chown nobody "$FAKE_DIR"
runuser -u nobody -- python3 - "$FAKE_DIR/agent.sock" >"$FLEET/fake.out" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); s.settimeout(15)
try:
    c, _ = s.accept(); c.settimeout(2); print("got", len(c.recv(65536)), "bytes", flush=True)
except Exception as e: print("nothing", flush=True)
PY
FAKE=$!; FLEET_PIDS+=($FAKE)
for i in $(seq 1 50); do [ -S "$FAKE_DIR/agent.sock" ] && break; sleep 0.1; done
agent_pam agent="$FAKE_DIR/agent.sock" client="$CLIENT"
check "another user's socket at agent=: not spoken to, the client started instead" "pamtester: successfully authenticated" \
    "$(agent_login revtest "$(next revtest)")"
kill "$FAKE" 2>/dev/null; wait "$FAKE" 2>/dev/null
check "… and it was sent nothing" "" "$(grep -o 'got [1-9].*' "$FLEET/fake.out")"
# A stop (SIGTERM: a restart, an upgrade) lets the session in flight end: a module's
# session is open, the agent is told to stop, and the session's request is still answered.
in_ns h1 python3 - "$AGENT_SOCK" "$AGENT_PID" "$SERVERS" "$FLEET/tls/h1" >"$FLEET/drain.out" 2>&1 <<'PY'
import os, signal, socket, sys, time
sock, pid, servers, tls = sys.argv[1:5]
def frame(b): return b"%d\n" % len(b) + b
def read_frame(s):
    n = b""
    while not n.endswith(b"\n"):
        c = s.recv(1)
        if not c: return None
        n += c
    want, got = int(n), b""
    while len(got) < want: got += s.recv(want - len(got))
    return got
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sock)
words = ["--session", "--", "methods=code", "server=" + servers, "tls_dir=" + tls, "server_timeout=5"]
s.sendall(frame(b"".join(w.encode() + b"\0" for w in words)))
print("welcome" if read_frame(s) == b"smartotp-fleet agent 1\n" else "no welcome")
os.kill(int(pid), signal.SIGTERM)
time.sleep(0.5)
print("socket gone" if not os.path.exists(sock) else "socket still there")
s.sendall(frame(b"revtest summary\n"))
a = read_frame(s) or b""
print("answered" if a.startswith(b"smartotp-helper 1\n") else "not answered: %r" % a)
s.close()
PY
for i in $(seq 1 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
check "SIGTERM with a session open: its socket goes at once, the session is still answered" "welcome socket gone answered" \
    "$(tr '\n' ' ' <"$FLEET/drain.out" | sed 's/ $//')"
check "… and the agent exits once the session has ended" gone "$(kill -0 "$AGENT_PID" 2>/dev/null && echo running || echo gone)"
fleet_kill "$AGENT_PID"
# The agent gone: logins start the client, as without one.
agent_pam agent="$AGENT_SOCK" client="$CLIENT"
check "the agent stopped: a login starts the client and logs in" "pamtester: successfully authenticated" "$(agent_login revtest "$(next revtest)")"

# --- A tap through the fleet: the challenge is the server's, bound to the host, single use ---
CARD_B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
python3 - "$FLEET/tapper" "$CARD_B32" <<'PY'
import sys
path, b32 = sys.argv[1], sys.argv[2]
open(path, "w").write("smartotp-record 1\nuser tapper\ncreated 1\n"
    "token id=card kind=card type=totp period=30 algorithm=sha1 digits=6 secret=%s last=- created=1 used=- label=- "
    "name=smartotp%%3Atapper device=- access-key=- touch=0\n" % b32)
PY
out=$({ echo record; cat "$FLEET/tapper"; } | curl_as admin1 h1 -X POST --data-binary @- "https://${ADDR[s1]}:8443/v1/admin/place/tapper")
check "an administrator places a card record (sealed on the way in)" "done 1" "$out"
fleet_ask() { local h=$1 op=$2; shift 2; printf '%s\n' "$@" | in_ns "$h" "$CLIENT" --server "$SERVERS" --tls-dir "$FLEET/tls/$h" tapper "$op"; }
fleet_ask_user() { local h=$1 u=$2 op=$3; shift 3; printf '%s\n' "$@" | in_ns "$h" "$CLIENT" --server "$SERVERS" --tls-dir "$FLEET/tls/$h" "$u" "$op"; }
challenge=$(fleet_ask h1 challenge | awk '/^challenge/{print $2}')
response=$(python3 -c "import hmac,hashlib,base64,sys; print(hmac.new(base64.b32decode('$CARD_B32'), bytes.fromhex('$challenge'), hashlib.sha1).hexdigest())")
check "a tap answering the server's challenge is accepted" "verdict accepted token card" "$(fleet_ask h1 tap card "$challenge" "$response" | grep verdict)"
check "… the same (challenge, response) replayed is refused" "verdict rejected" "$(fleet_ask h1 tap card "$challenge" "$response" | grep verdict)"
challenge=$(fleet_ask h1 challenge | awk '/^challenge/{print $2}')
response=$(python3 -c "import hmac,hashlib,base64,sys; print(hmac.new(base64.b32decode('$CARD_B32'), bytes.fromhex('$challenge'), hashlib.sha1).hexdigest())")
check "… a challenge issued to h1, answered from h2, is refused" "verdict rejected" "$(fleet_ask h2 tap card "$challenge" "$response" | grep verdict)"
check "… and h1 can still use it" "verdict accepted token card" "$(fleet_ask h1 tap card "$challenge" "$response" | grep verdict)"

# access is no key oracle: bytes the server did not issue to this host get no answer, and count.
before=$(fleet_ask h1 summary | awk '/^failures/{print $2}')
check "access for bytes the server did not issue: no answer" "access none" "$(fleet_ask h1 access card 0102030405060708 1111111111111111 | grep access)"
check "… and it counts as a failure" "$((before + 1))" "$(fleet_ask h1 summary | awk '/^failures/{print $2}')"

# --- A real tap: pcscd, the virtual card, pamtester on host h2 -----------------------------
# The card is enrolled through the fleet (the CLI writes the secret to the card, the record
# to smartotpd); the login on h2 gets its challenge from the fleet, taps, and is accepted.
start_pcscd
start_card "$WORK/card.state"
out=$(in_ns h1 "$CLI" enroll cardholder --force --card --reader "$VIRTUAL_READER" --server "$SERVERS" --tls-dir "$ADMIN" 2>&1); rc=$?
check "smartotp --server enroll --card: the secret on the card, the record in the fleet" 0 "$rc"
echo "auth required $SO methods=card timeout=10 server=$SERVERS tls_dir=$FLEET/tls/h2 client=$CLIENT server_timeout=5" >/etc/pam.d/"$P-card"
out=$(in_ns h2 "${NSS_ENV[@]}" pamtester "$P-card" cardholder authenticate </dev/null 2>&1 | grep -o 'pamtester: .*' | tail -1)
check "a tap on the virtual card through the fleet (host h2, nothing typed)" "pamtester: successfully authenticated" "$out"
# A host the card is tapped on can ask it for any time step: what the tap credential gives
# is no code anywhere (it answers taps only; --phone would write a credential for codes).
tapcode=$(timeout 30 ykman --reader "$VIRTUAL_READER" oath accounts code smartotp-tap:cardholder 2>/dev/null | awk '{print $NF}')
check "the tap credential's code, read from the card and typed on h1: refused" "pamtester: Authentication failure" "$(login h1 cardholder "$tapcode")"

# --- Offline taps (offline=tap): h2 cut off from the verifiers, a tap still logs in ---------
OFF="$WORK/h2-store"; mkdir -p "$OFF"; chmod 700 "$OFF"
for m in card code password; do
    echo "auth required $SO methods=$m timeout=5 server=$SERVERS tls_dir=$FLEET/tls/h2 client=$CLIENT server_timeout=5 offline=tap store=$OFF" >/etc/pam.d/"$P-off-$m"
done
offline_login() { local m=$1; shift; printf '%s\n' "$@" | in_ns h2 "${NSS_ENV[@]}" pamtester "$P-off-$m" cardholder authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1; }
check "offline=tap, online: a tap logs in and leaves h2 a stock of offline pairs" "pamtester: successfully authenticated" "$(offline_login card)"
pairfile="$OFF/offline/cardholder"
case "$(stat -c %a:%U "$pairfile" 2>/dev/null):$(grep -c '^pair ' "$pairfile" 2>/dev/null)" in
    600:root:16) ok "… a root-only 0600 file with the verifiers' 16 pairs (a challenge and a verifier of the card's answer: $(awk '/^pair/{print substr($3, 1, 8); exit}' "$pairfile")…)";;
    *) not_ok "the offline stock is kept root-only" "$(ls -l "$pairfile" 2>&1; grep -c '^pair ' "$pairfile")";; esac
# A card's answer (HMAC-SHA1) would be 40 hex digits: the stock has challenges (16) and
# verifiers (64) only.
grep -qE '(^| )[0-9a-f]{40}( |$)' "$pairfile" && not_ok "the stock holds no answer of the card" "$(cat "$pairfile")" ||
    ok "… and no answer of the card (nor its secret): only the verifiers can make a pair"
ip -n "${P}hub" link set vh2 down
t0=$(date +%s%N); out=$(offline_login card); t1=$(date +%s%N)
check "h2's link down: a tap logs in against a pair of the stock" "pamtester: successfully authenticated" "$out"
first=$(( (t1 - t0) / 1000000 ))
t0=$(date +%s%N); out=$(offline_login card); t1=$(date +%s%N)
check "… and a second tap, against the next pair" "pamtester: successfully authenticated" "$out"
second=$(( (t1 - t0) / 1000000 ))
# The first waits for both verifiers' connect deadlines (1 s each); the next asks them for
# 2 s at most (server_timeout is 5 s here), then checks the pair. Below server_timeout
# proves the brief ask exists (the whole timeout would be 5 s); the figures are printed.
[ "$second" -lt 5000 ] && ok "offline logins took $first ms, then $second ms: the verifiers, found unreachable, are asked briefly (under server_timeout)" ||
    not_ok "an offline login does not wait the whole server_timeout" "$first ms, then $second ms"
check "… a typed code is not checked offline" "pamtester: Authentication failure" "$(offline_login code 123456)"
check "… nor the simple password" "pamtester: Authentication failure" "$(offline_login password 1234)"
sed -i 's/^stock \([0-9]*\) [0-9]*$/stock \1 1000000000/' "$pairfile"
check "… and a pair older than offline_max_age is refused (no verdict)" "$UNAVAIL" "$(offline_login card)"
ip -n "${P}hub" link set vh2 up
check "link up: a tap logs in online" "pamtester: successfully authenticated" "$(offline_login card)"
n=$(admin audit --user cardholder --limit 50 2>/dev/null | grep -c "offline-tap.*success")
check "… and h2's two offline logins are in the fleet's audit trail" 2 "$n"

# --- Offline through the setuid helper: a laptop's screen locker, away from the fleet --------
# The locker runs PAM as the user; the helper (setuid root) reads root's smartotp.conf and
# starts the fleet client, which keeps and checks the offline stock as root.
add_user smartotp-lap
LAP=$(mktemp -d /usr/local/lib/smartotp-test.XXXXXX); chmod 755 "$LAP"; at_exit "rm -rf '$LAP'"
mkdir -m 700 "$LAP/store"; mkdir -m 755 "$LAP/pam.d"
install -o root -g root -m 4755 "$HELPER" "$LAP/smartotp-chkotp"
install -m 644 "$SO" "$LAP/pam_smartotp.so"; cp "$BIN/pam-harness" "$LAP/pam-harness"
backup /etc/smartotp/smartotp.conf
mkdir -p /etc/smartotp
printf 'server=%s\ntls_dir=%s\nclient=%s\nserver_timeout=5\noffline=tap\nstore=%s\n' "$SERVERS" "$FLEET/tls/h2" "$CLIENT" "$LAP/store" >/etc/smartotp/smartotp.conf
echo "auth required $LAP/pam_smartotp.so helper=$LAP/smartotp-chkotp methods=card timeout=5" >"$LAP/pam.d/locker"
out=$(in_ns h1 "$CLI" enroll smartotp-lap --force --card --reader "$VIRTUAL_READER" --server "$SERVERS" --tls-dir "$ADMIN" 2>&1) ||
    not_ok "enrol smartotp-lap's card in the fleet" "$out"
lap() { in_ns h2 runuser -u smartotp-lap -- "$LAP/pam-harness" --confdir "$LAP/pam.d" --service locker --user smartotp-lap </dev/null >/dev/null 2>&1; echo $?; }
check "as the user (a screen locker), online: a tap through the helper logs in" 0 "$(lap)"
check "… and leaves the stock in root's store, 0600" "600:root" "$(stat -c %a:%U "$LAP/store/offline/smartotp-lap" 2>&1)"
ip -n "${P}hub" link set vh2 down
check "h2's link down: the locker's tap logs in against a pair, through the helper" 0 "$(lap)"
ip -n "${P}hub" link set vh2 up
stop_card
stop_pcscd

# --- The file store moves into the fleet -----------------------------------------------------
mkdir -p "$WORK/local"; chmod 700 "$WORK/local"
echo "$HOTP_B32" | "$CLI" enroll migrant --store "$WORK/local/store" --secret - --hotp --force >/dev/null 2>&1
out=$(in_ns h1 "$CLI" migrate-store --from "$WORK/local/store" --server "$SERVERS" --tls-dir "$ADMIN" 2>&1)
case "$out" in *"Copied 1 record"*) ok "smartotp migrate-store copies a host's store";; *) not_ok "migrate-store" "$out";; esac
check "… and the migrated user logs in through the fleet" "pamtester: successfully authenticated" "$(login h3 migrant "$(next migrant)")"

# --- Rollout through the fleet: a generated phone token, confirmed; a temporary code -------------
out=$(admin enroll rollout --force --generate 2>&1)
RS=$(sed -n 's/.*secret=\([A-Z2-7]*\).*/\1/p' <<<"$out" | head -1)
check "enroll --generate through the fleet: a 160-bit secret in the URI" 32 "${#RS}"
# A record with only a pending token is no enrolment yet: without nullok, the user is
# unknown to the module (PAM_USER_UNKNOWN), and the code is never checked.
check "… pending: the phone's code logs in nowhere (no enrolment yet: PAM_USER_UNKNOWN)" "pamtester: User not known to the underlying authentication module" \
    "$(login h2 rollout "$(oathtool --totp -b "$RS")")"
out=$(oathtool --totp -b "$RS" | admin enroll rollout --confirm 2>&1)
case "$out" in *"is confirmed"*) ok "enroll --confirm through the fleet";; *) not_ok "confirm through the fleet" "$out";; esac
check "… and the phone's next code logs in on h3" "pamtester: successfully authenticated" "$(login h3 rollout "$(oathtool --totp -b "$RS" --now=@$(( $(date +%s) + 30 )))")"
tcode=$(admin temp-code rollout --valid 1h 2>/dev/null)
check "temp-code through the fleet: a temporary code logs in once (h1)" "pamtester: successfully authenticated" "$(login h1 rollout "$tcode")"
check "… and not again (h2)" "pamtester: Authentication failure" "$(login h2 rollout "$tcode")"
out=$(admin show rollout 2>&1)
case "$out" in *'$y$'*) not_ok "no temporary code's hash leaves the server" "$out";; *) ok "show through the fleet holds no hash";; esac

# --- A verifier that drops every packet: the next one is asked after a second, not the timeout ---
enroll_hotp blackhole
ip -n "${P}hub" link set vs1 down
t0=$(date +%s%N); out=$(login h1 blackhole "$(next blackhole)"); t1=$(date +%s%N)
ip -n "${P}hub" link set vs1 up
check "s1 black-holed (its link down): a login succeeds through s2" "pamtester: successfully authenticated" "$out"
ms=$(( (t1 - t0) / 1000000 ))
# Without a connect deadline a server the first asked would take all of server_timeout
# (5 s) and the login would fail: under it proves the deadline (1 s a server) exists.
[ "$ms" -lt 5000 ] && ok "… in $ms ms, under server_timeout (the connect deadline is 1 s a server)" || not_ok "a black-holed first server costs less than server_timeout" "$ms ms"

# --- Sealed secrets: nothing in the database, its WAL or the logs; a database writer refused ---
python3 - "$FLEET/leaks" "$HOTP_B32" "$TOTP_B32" "$CARD_B32" <<'PY'
import base64, sys
out, secrets = sys.argv[1], sys.argv[2:]
forms = set()
for b32 in secrets:
    raw = base64.b32decode(b32)
    for f in (b32, b32.lower(), raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode().rstrip("=")):
        forms.add(f.encode())
    forms.add(raw)
open(out, "w").write("\n".join(f.hex() for f in sorted(forms)))
PY
leaks() { python3 -c '
import sys
forms = [bytes.fromhex(l) for l in open(sys.argv[1]).read().split()]
hits = []
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    hits += [path for f in forms if f in data]
print(len(hits), " ".join(sorted(set(hits))[:3]))' "$FLEET/leaks" "$@"; }
in_ns db runuser -u postgres -- "$PGBIN/pg_dump" -h "$FLEET/pg" -p 5432 smartotp >"$FLEET/dump.sql" 2>/dev/null
in_ns db runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p 5432 -qAtc "CHECKPOINT" smartotp >/dev/null 2>&1
grep -q "smartotp_secrets" "$FLEET/dump.sql" && check "pg_dump of the fleet holds no secret in any encoding (Base32 either case, hex, base64, raw)" "0" "$(leaks "$FLEET/dump.sql" | cut -d' ' -f1)" \
    || not_ok "pg_dump ran" "$(head -3 "$FLEET/dump.sql")"
check "… nor does the WAL" "0" "$(leaks "$FLEET"/pg/data/pg_wal/0* | cut -d' ' -f1)"
check "… nor the servers' logs" "0" "$(leaks "$FLEET"/s1.log "$FLEET"/s2.log | cut -d' ' -f1)"
out=$(admin show walker 2>&1; admin show tapper 2>&1; admin list 2>&1)
echo "$out" >"$FLEET/admin.out"
check "… nor what administrators read (show, list)" "0" "$(leaks "$FLEET/admin.out" | cut -d' ' -f1)"
psql_db() { in_ns db runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p 5432 -qAt -d smartotp -c "$1"; }
enroll_hotp victim
code=$(next victim)
psql_db "UPDATE smartotp_secrets SET sealed = (SELECT sealed FROM smartotp_secrets WHERE username = 'pgtest' AND token_id = 'code') WHERE username = 'victim'" >/dev/null
check "a sealed secret moved to another user in SQL: that user's login is refused" "$UNAVAIL" "$(login h1 victim "$code")"
grep -q "victim: the row was changed outside smartotpd" "$FLEET"/s1.log "$FLEET"/s2.log && ok "… and logged (the row's mac)" || not_ok "the refusal is logged"
psql_db "UPDATE smartotp_records SET record = replace(record, 'secret=AA ', 'secret=$HOTP_B32 ') WHERE username = 'revtest'" >/dev/null
check "a seed written in the clear into a record: refused" "$UNAVAIL" "$(login h1 revtest "$(next revtest)")"
grep -q "revtest: the row was changed outside smartotpd" "$FLEET"/s1.log "$FLEET"/s2.log && ok "… and logged" || not_ok "the clear seed is logged"
out=$(in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" 2>&1); rc=$?
case "$rc:$out" in 1:*"changed outside smartotpd"*) ok "audit-verify names a row changed in the database";; *) not_ok "audit-verify checks the rows' macs" "$rc: $out";; esac
# Only a removal changes a refused row (the administrator enrolls the user again).
admin remove victim >/dev/null 2>&1 && admin remove revtest >/dev/null 2>&1 && ok "the refused rows are removed by an administrator" || not_ok "a refused row can be removed"

# --- Roles: the helpdesk unlocks and reads, never sets or removes a secret ------------------
desk() { in_ns h1 "$CLI" "$@" --server "$SERVERS" --tls-dir "$DESK"; }
for h in h1 h2 h3; do login "$h" locker 000000 >/dev/null; done
desk unlock locker >/dev/null 2>&1 && ok "the helpdesk unlocks a user" || not_ok "helpdesk unlock"
check "… who then logs in" "pamtester: successfully authenticated" "$(login h3 locker "$(next locker)")"
check "the helpdesk lists users" "yes" "$(desk list 2>/dev/null | grep -q '^walker' && echo yes)"
refused=0
echo "$HOTP_B32" | desk enroll deskuser --secret - --hotp --force >/dev/null 2>&1 || refused=$((refused + 1))
desk remove walker >/dev/null 2>&1 || refused=$((refused + 1))
echo 1234567 | desk passwd walker --password-stdin --force >/dev/null 2>&1 || refused=$((refused + 1))
desk recovery walker >/dev/null 2>&1 || refused=$((refused + 1))
check "… and is refused enroll, remove, passwd and recovery" 4 "$refused"
case "$(desk remove walker 2>&1)" in *403*) ok "… with the server's 403";; *) not_ok "helpdesk refusal says 403" "$(desk remove walker 2>&1)";; esac

# --- The audit trail ----------------------------------------------------------------------------
code=$(totp "$TOTP_B32")
echo 000000 | in_ns h2 "${NSS_ENV[@]}" pamtester -I rhost=198.51.100.7 "$P-h2" walker authenticate >/dev/null 2>&1
audit=$(desk audit --user walker 2>&1)
case "$audit" in *$'\th2\t'*$'\thost\t'*$'\t198.51.100.7\t'*$'\twalker\tcode\tcode\trejected'*) ok "audit: a wrong code on h2 with its serial, remote host and result";;
    *) not_ok "audit shows h2's wrong code" "$(echo "$audit" | head -3)";; esac
h2serial=$(openssl x509 -in "$FLEET/pki/h2.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//')
echo "$audit" | grep -q $'\th2\t'"$h2serial"$'\t' && ok "… naming h2's certificate serial" || not_ok "audit names the serial" "$h2serial"
audit=$(desk audit --user tapper 2>&1)
echo "$audit" | grep -q $'\th1\t.*\ttapper\ttap\ttap\taccepted' && ok "audit: a tap on h1, accepted" || not_ok "audit shows the tap" "$(echo "$audit" | head -3)"
echo "$audit" | grep -q $'\taccess\ttap\taccess\tno issued challenge' && ok "audit: the refused access" || not_ok "audit shows the access"
audit=$(desk audit --user locker 2>&1)
echo "$audit" | grep -q $'\tdesk1\t.*\thelpdesk\t.*\tlocker\tunlock\t\tdone' && ok "audit: the helpdesk's unlock" || not_ok "audit shows the unlock" "$(echo "$audit" | head -3)"
out=$(in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" 2>&1); rc=$?
check "smartotpd audit-verify: the trail is intact" "0" "$rc"
EDITED=$(psql_db "SELECT chain || ',' || seq FROM smartotp_audit WHERE username = 'walker' AND result = 'rejected' ORDER BY at_us DESC, seq DESC LIMIT 1")
psql_db "UPDATE smartotp_audit SET result = 'accepted' WHERE (chain, seq) = ($EDITED)" >/dev/null
out=$(in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" 2>&1); rc=$?
case "$rc:$out" in 1:*"was edited"*) ok "… a row edited in SQL is found ($(echo "$out" | grep -o 'chain [0-9]*: row seq [0-9]*'))";; *) not_ok "an edited row is found" "$rc: $out";; esac
psql_db "UPDATE smartotp_audit SET result = 'rejected' WHERE (chain, seq) = ($EDITED)" >/dev/null
out=$(in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" 2>&1); rc=$?
check "… and passes again once the row is as it was" 0 "$rc"
psql_db "DELETE FROM smartotp_audit WHERE (chain, seq) = (SELECT chain, seq FROM smartotp_audit WHERE username = 'locker' ORDER BY at_us, seq LIMIT 1)" >/dev/null
out=$(in_ns s1 "$SMARTOTPD" audit-verify --config "$FLEET/s1.conf" 2>&1); rc=$?
case "$rc:$out" in 1:*"missing"*) ok "… and a deleted one";; *) not_ok "a deleted row is found" "$rc: $out";; esac

# --- A host's failure budget: one stolen certificate cannot lock the fleet's users ------------
restart() { local s; for s in s1 s2; do fleet_kill "${FLEET_SERVER_PID[$s]}"; fleet_server_start "$s" "$P$s"; ready "${ADDR[$s]}" || true; done; }
for s in s1 s2; do sed -i 's#^host_failure_budget = .*#host_failure_budget = 6/15m#' "$FLEET/$s.conf"; done
restart
for i in $(seq 1 8); do enroll_hotp "budget$i"; nss_user "budget$i"; done
refused=0
for i in $(seq 1 8); do for k in 1 2 3; do
    [ "$(login h3 "budget$i" 000000)" = "$UNAVAIL" ] && refused=$((refused + 1))
done; done
locked=0
for i in $(seq 1 8); do
    [ "$(fleet_ask_user h1 "budget$i" summary | awk '/^lock/{print $2}')" = open ] || locked=$((locked + 1))
done
check "h3 sends 24 wrong codes for 8 users (deny=3, budget 6): only budget÷deny users are locked" 2 "$locked"
check "… and h3's verdicts past its budget are refused" 18 "$refused"
grep -q "over its failures budget" "$FLEET"/s1.log "$FLEET"/s2.log && ok "… logged" || not_ok "the budget refusal is logged"
metrics=$(in_ns h1 curl -s --max-time 5 "http://${ADDR[s1]}:9464/metrics")
case "$metrics" in *smartotpd_host_budget_refusals_total*) ok "… and counted in /metrics";; *) not_ok "budget refusals in /metrics";; esac
check "… while another user's valid code works from h1" "pamtester: successfully authenticated" "$(login h1 budget8 "$(next budget8)")"
for s in s1 s2; do sed -i 's#^host_failure_budget = .*#host_failure_budget = off#' "$FLEET/$s.conf"; done

# --- Rekey while the fleet runs, then the old key gone ----------------------------------------
"$SMARTOTPD" keygen "$FLEET/seal2.key" >/dev/null
for s in s1 s2; do echo "unseal_keys = $FLEET/seal2.key" >>"$FLEET/$s.conf"; done
restart
out=$(in_ns s1 "$SMARTOTPD" rekey --config "$FLEET/s1.conf" --new-key "$FLEET/seal2.key" 2>&1); rc=$?
case "$rc:$out" in 0:*"re-sealed"*) ok "smartotpd rekey: $(echo "$out" | grep -o 're-sealed [0-9]* secret(s)')";; *) not_ok "rekey" "$rc: $out";; esac
for s in s1 s2; do sed -i -e "s#^seal_key = .*#seal_key = $FLEET/seal2.key#" -e '/^unseal_keys/d' "$FLEET/$s.conf"; done
rm -f "$FLEET/seal.key"
restart
check "… the old key removed: logins still work" "pamtester: successfully authenticated" "$(login h2 migrant "$(next migrant)")"
check "… taps too (the card's secret re-sealed)" "verdict accepted token card" "$(
    challenge=$(fleet_ask h1 challenge | awk '/^challenge/{print $2}')
    response=$(python3 -c "import hmac,hashlib,base64; print(hmac.new(base64.b32decode('$CARD_B32'), bytes.fromhex('$challenge'), hashlib.sha1).hexdigest())")
    fleet_ask h1 tap card "$challenge" "$response" | grep verdict)"

# --- Metrics ---------------------------------------------------------------------------------
metrics=$(in_ns h1 curl -s --max-time 5 "http://${ADDR[s1]}:9464/metrics")
case "$metrics" in *'smartotpd_verdicts_total{result="accepted"}'*) ok "/metrics counts verdicts by result";; *) not_ok "/metrics" "$(echo "$metrics" | head -3)";; esac
case "$metrics" in *smartotpd_request_duration_seconds_bucket*) ok "… with a latency histogram";; *) not_ok "latency histogram";; esac
# malloc's account: what it holds and what of it is in use, both above zero, in use ≤ held.
held=$(awk '/^smartotpd_malloc_held_bytes /{printf "%d", $2}' <<<"$metrics")
used=$(awk '/^smartotpd_malloc_in_use_bytes /{printf "%d", $2}' <<<"$metrics")
if [ "${used:-0}" -gt 0 ] && [ "${held:-0}" -ge "$used" ]; then ok "… and malloc's bytes held ($held) and in use ($used)"
else not_ok "malloc gauges" "held=$held used=$used $(grep malloc <<<"$metrics")"; fi
kill -TERM "${FLEET_SERVER_PID[s2]}"
wait "${FLEET_SERVER_PID[s2]}" 2>/dev/null; rc=$?
check "SIGTERM: smartotpd shuts down cleanly" 0 "$rc"
grep -q "stopped" "$FLEET/s2.log" && ok "… and says so" || not_ok "shutdown logged" "$(tail -3 "$FLEET/s2.log")"
finish
