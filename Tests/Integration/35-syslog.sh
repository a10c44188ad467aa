#!/usr/bin/env bash
# What the module writes to syslog, for real: a private mount namespace puts a datagram
# socket of ours on /dev/log, pam-harness runs logins in it, and the lines the module sent
# are checked: auth facility, user, service, method, result, reason — and never a code,
# password or secret. If /dev/log does not exist, an empty file is made for the bind mount
# and removed on exit; the host's own /dev/log, if any, is never touched.
source "$(dirname "$0")/lib/testlib.sh"
SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
"$CLI" enroll alice --force --store "$STORE" --secret "$SECRET" >/dev/null
echo 97531 | "$CLI" passwd alice --force --store "$STORE" --password-stdin >/dev/null
service logged "auth required $SO store=$STORE methods=code,password deny=10"

python3 - "$WORK/log.sock" "$WORK/syslog.txt" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as out:
    while True:
        out.write(s.recv(65536).decode("utf-8", "replace") + "\n")
        out.flush()
PY
RECEIVER=$!
at_exit "kill $RECEIVER 2>/dev/null"
for i in $(seq 1 50); do [ -S "$WORK/log.sock" ] && break; sleep 0.05; done
if [ ! -e /dev/log ]; then touch /dev/log && at_exit "rm -f /dev/log"; fi

code=$(oathtool --totp -b "$SECRET")
# All logins inside one namespace whose /dev/log is our socket.
nss_user alice
with_nss unshare -m --propagation private sh -c "
    mount --bind '$WORK/log.sock' /dev/log || exit 1
    '$H' --confdir '$CONF' --service logged --user alice --answer '$code' >/dev/null
    '$H' --confdir '$CONF' --service logged --user alice --answer 024680 --rhost 192.0.2.7 >/dev/null
    '$H' --confdir '$CONF' --service logged --user alice --answer '' --answer 97531 >/dev/null
    '$H' --confdir '$CONF' --service logged --user '../etc/shadow' >/dev/null
    exit 0" || die "cannot bind a socket on /dev/log in a private mount namespace"
sleep 0.3
LOG=$(cat "$WORK/syslog.txt")
line() { echo "$LOG" | grep -F "$1" | head -1; }
success=$(line "result=success reason=\"token code\"")
[ -n "$success" ] && ok "a code login is logged: $(echo "$success" | sed 's/^<[0-9]*>//' | cut -c1-100)" || not_ok "a code login is logged" "$LOG"
case "$success" in "<86>"*) ok "at LOG_AUTHPRIV|LOG_INFO (<86>)";; *) not_ok "auth facility, info level" "$success";; esac
failure=$(line 'result=failure reason="wrong code"')
case "$failure" in "<85>"*"user=alice service=logged rhost=192.0.2.7 method=code"*) ok "a wrong code is logged at LOG_NOTICE with user, service, rhost, method";;
    *) not_ok "a wrong code is logged" "$LOG";; esac
[ -n "$(line 'method=password result=success reason="simple password"')" ] && ok "a password login is logged" || not_ok "a password login is logged" "$LOG"
[ -n "$(line 'invalid user name')" ] && ok "a hostile user name is logged as an error" || not_ok "a hostile user name is logged" "$LOG"
leaks=0
for s in "$code" 024680 97531 "$SECRET"; do echo "$LOG" | grep -qF "$s" && { leaks=$((leaks + 1)); echo "# leaked: $s"; }; done
check "no code, password or secret in any syslog line" 0 "$leaks"
finish
