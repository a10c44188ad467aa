#!/usr/bin/env bash
# pam_smartotp in the real programs: sudo, su and sshd (key + typed code), and a login
# run by an unprivileged caller through the setuid helper (what screen lockers do).
#
# System files this suite changes, each restored or removed on exit (also on failure):
# /etc/pam.d/sudo and /etc/pam.d/su (backed up, then our stack), /etc/sudoers.d/smartotp-test,
# /etc/pam.d/smartotp-sshd-test, /etc/smartotp/smartotp.conf (helper policy), the test
# users smartotp-t1 and smartotp-t2, and /usr/local/lib/smartotp-test.* (the setuid helper
# copy). sshd listens on 127.0.0.1 only and is stopped by PID.
source "$(dirname "$0")/lib/testlib.sh"

# One code token per phase, so that no test needs to wait for the next TOTP step.
S_SUDO=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP S_LOCK=ONSWG4TFORPWK6DQONSWG4TFORPWK6DQ S_HELPER=KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU   # smartotp-t1
S_SU=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ S_SSH=MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK                          # smartotp-t2
READER="Virtual PCD 00 00"
public_dir
for cmd in sudo su sshd ssh ssh-keygen python3; do
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || die "$cmd is missing (./install.sh --deps-only)"
done
python3 -c 'import pexpect' 2>/dev/null || die "python3-pexpect is missing"

totp() { oathtool --totp -b "$1"; }

add_user smartotp-t1
add_user smartotp-t2
for pair in "smartotp-t1 $S_SUDO" "smartotp-t1 $S_LOCK" "smartotp-t1 $S_HELPER" "smartotp-t2 $S_SU" "smartotp-t2 $S_SSH"; do
    set -- $pair
    "$CLI" enroll "$1" --force --store "$STORE" --secret "$2" >/dev/null || die "enroll $1"
done
for u in smartotp-t1 smartotp-t2; do echo 2468 | "$CLI" passwd "$u" --force --store "$STORE" --password-stdin >/dev/null; done

# ---- sudo ----------------------------------------------------------------------------
backup /etc/pam.d/sudo
backup /etc/sudoers.d/smartotp-test
echo 'smartotp-t1 ALL=(ALL) ALL' >/etc/sudoers.d/smartotp-test && chmod 440 /etc/sudoers.d/smartotp-test
printf '%s\n' "auth required $SO store=$STORE timeout=3 deny=3 unlock_time=600 reader=Virtual" \
    "account required $SO store=$STORE deny=3 unlock_time=600" "session required pam_permit.so" >/etc/pam.d/sudo
as_t1() { runuser -u smartotp-t1 -- sh -c "$1" 2>&1; }

start_pcscd
start_card "$WORK/card.state"
"$CLI" enroll smartotp-t1 --force --card --reader "$READER" --store "$STORE" >/dev/null 2>&1 || die "card enrolment failed"
out=$(as_t1 "sudo -S -k true </dev/null"); rc=$?
check "sudo: a tap on the virtual card (no input at all)" 0 "$rc"
case "$out" in *"Tap your card"*) ok "sudo shows the module's tap message";; *) not_ok "sudo shows the tap message" "$out";; esac
stop_card
out=$(as_t1 "printf '%s\n' $(totp $S_SUDO) | sudo -S -k true"); rc=$?
check "sudo: no tap in time, then a typed code" 0 "$rc"
out=$(as_t1 "printf '\n2468\n' | sudo -S -k true"); rc=$?
check "sudo: no tap in time, then the simple password" 0 "$rc"
out=$(as_t1 "printf '000000\n' | sudo -S -k true"); rc=$?
check "sudo: a wrong code is refused" 1 "$rc"
out=$(as_t1 "printf '111111\n222222\n' | sudo -S -k true"); rc=$?
check "sudo: more wrong codes (sudo retries) are refused" 1 "$rc"
out=$(as_t1 "printf '%s\n' $(totp $S_LOCK) | sudo -S -k true"); rc=$?
check "sudo: locked after deny=3 failures, even the right code is refused" 1 "$rc"
# sudo passes PAM_SILENT by default: the lock message is dropped, as pam_faillock's is.
case "$out" in *"locked"*) not_ok "under sudo's PAM_SILENT the lock message is not shown" "$out";; *) ok "under sudo's PAM_SILENT the lock message is not shown";; esac
"$CLI" unlock smartotp-t1 --store "$STORE" >/dev/null
stop_pcscd

# ---- su ------------------------------------------------------------------------------
backup /etc/pam.d/su
printf '%s\n' "auth required $SO store=$STORE methods=code,password" "account required pam_permit.so" \
    "session required pam_permit.so" >/etc/pam.d/su
su_as_t1() {  # su_as_t1 ANSWER: smartotp-t1 runs `su smartotp-t2 -c true` on a pty
    python3 - "$1" <<'PY'
import pexpect, sys
child = pexpect.spawn("runuser", ["-u", "smartotp-t1", "--", "su", "smartotp-t2", "-c", "true"], timeout=20, encoding="utf-8")
child.expect("One-time code")
child.sendline(sys.argv[1])
child.expect(pexpect.EOF)
print(child.before)
child.close()
sys.exit(child.exitstatus if child.exitstatus is not None else 99)
PY
}
code=$(totp $S_SU)   # once: a replay must send the same code, even across a step boundary
su_as_t1 "$code" >/dev/null; rc=$?
check "su: the target user's typed code" 0 "$rc"
out=$(su_as_t1 "$code"); rc=$?
case "$rc $out" in "1 "*"su: Authentication failure"*) ok "su: the same code again is refused (replay)";;
    *) not_ok "su: the same code again is refused (replay)" "exit $rc: $out";; esac

# ---- sshd: publickey,keyboard-interactive ---------------------------------------------
SSHD_DIR="$WORK/sshd"
mkdir -p "$SSHD_DIR" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$SSHD_DIR/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$SSHD_DIR/client_key"
install -d -o smartotp-t2 -m 700 /home/smartotp-t2/.ssh
install -o smartotp-t2 -m 600 "$SSHD_DIR/client_key.pub" /home/smartotp-t2/.ssh/authorized_keys
PORT=$((20000 + RANDOM % 20000))
cat >"$SSHD_DIR/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $PORT
HostKey $SSHD_DIR/host_key
PidFile $SSHD_DIR/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication yes
AuthenticationMethods publickey,keyboard-interactive
AuthorizedKeysFile .ssh/authorized_keys
CONF
# sshd names its PAM service after its program name: a link gives it a private service.
ln -s /usr/sbin/sshd "$SSHD_DIR/smartotp-sshd-test"
backup /etc/pam.d/smartotp-sshd-test
printf '%s\n' "auth required $SO store=$STORE methods=code" "account required pam_permit.so" \
    "session required pam_permit.so" >/etc/pam.d/smartotp-sshd-test
"$SSHD_DIR/smartotp-sshd-test" -D -f "$SSHD_DIR/sshd_config" -E "$SSHD_DIR/sshd.log" &
SSHD_PID=$!
at_exit "kill $SSHD_PID 2>/dev/null; wait $SSHD_PID 2>/dev/null"
for i in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
cat >"$SSHD_DIR/askpass" <<'ASK'
#!/bin/sh
# Records the prompt the user would see, answers with the code in $ANSWER.
printf '%s\n' "$1" >>"$PROMPTS"
printf '%s\n' "$ANSWER"
ASK
chmod 755 "$SSHD_DIR/askpass"
ssh_login() {  # ssh_login CODE: exit status of `ssh … true`
    PROMPTS="$SSHD_DIR/prompts" ANSWER="$1" SSH_ASKPASS="$SSHD_DIR/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=none \
        setsid -w ssh -F /dev/null -p "$PORT" -i "$SSHD_DIR/client_key" -o IdentitiesOnly=yes -o BatchMode=no \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 \
        -o NumberOfPasswordPrompts=1 smartotp-t2@127.0.0.1 true </dev/null >/dev/null 2>&1
}
code=$(totp $S_SSH)
ssh_login "$code"; rc=$?
check "sshd: key plus a valid TOTP gets in" 0 "$rc"
case "$(cat "$SSHD_DIR/prompts" 2>/dev/null)" in *"One-time code"*) ok "ssh shows the module's prompt";;
    *) not_ok "ssh shows the module's prompt" "$(cat "$SSHD_DIR/prompts" 2>/dev/null)";; esac
# ssh exits 255 on any error: the record says that the module counted the attempt (every
# attempt is counted before its verdict; only a success clears the count).
counted() { awk '$1 == "failed-at" { n = NF - 1 } END { print n + 0 }' "$STORE/users/${1:-smartotp-t2}"; }
before=$(counted)
ssh_login "$code"; rc=$?
check "sshd: the same code replayed is refused (the module counted it)" "255 $((before + 1))" "$rc $(counted)"
ssh_login 000000; rc=$?
check "sshd: a wrong code is refused (the module counted it)" "255 $((before + 2))" "$rc $(counted)"
"$CLI" unlock smartotp-t2 --store "$STORE" >/dev/null

# ---- a caller that is not root: the setuid helper --------------------------------------
install -o root -g root -m 4755 "$HELPER" "$PUB/smartotp-chkotp"
backup /etc/smartotp/smartotp.conf
mkdir -p /etc/smartotp
printf 'store=%s\ndeny=3\nunlock_time=600\n' "$STORE" >/etc/smartotp/smartotp.conf
mkdir -m 755 "$PUB/pam.d"
# The unprivileged caller must be able to read what it loads, wherever the checkout is
# (a 0700 temporary directory, say): the harness and the module are copied next to the helper.
cp "$BIN/pam-harness" "$PUB/pam-harness"
install -m 644 "$SO" "$PUB/pam_smartotp.so"
printf '%s\n' "auth required $PUB/pam_smartotp.so helper=$PUB/smartotp-chkotp methods=code,password" >"$PUB/pam.d/locker"
lock() { runuser -u smartotp-t1 -- "$PUB/pam-harness" --confdir "$PUB/pam.d" --service locker --user "$1" "${@:2}" 2>&1; }
code=$(totp $S_HELPER)
out=$(lock smartotp-t1 --answer "$code"); rc=$?
check "as the user (a screen locker): the code, checked by the setuid helper" 0 "$rc"
out=$(lock smartotp-t1 --answer "$code"); rc=$?
check "as the user: the same code again is a replay" 7 "$rc"
out=$(lock smartotp-t1 --answer "" --answer 2468); rc=$?
check "as the user: the simple password through the helper" 0 "$rc"
out=$(lock smartotp-t2 --answer "" --answer 2468); rc=$?
check "as the user: another user's record is refused (PAM_AUTHINFO_UNAVAIL)" 9 "$rc"
out=$(runuser -u smartotp-t1 -- "$PUB/smartotp-chkotp" smartotp-t1 summary </dev/null)
case "$out" in "smartotp-helper 1"*"card card "*"lock open"*) ok "the helper answers a summary in its own protocol";;
    *) not_ok "the helper answers a summary in its own protocol" "$out";; esac
case "$out" in *secret*|*access-key*|*'$y$'*|*"$S_HELPER"*|*"$S_SUDO"*) not_ok "no secret, access key or hash in the summary" "$out";;
    *) ok "no secret, access key or hash in the summary";; esac
for i in 1 2 3; do printf '000000\n' | runuser -u smartotp-t1 -- "$PUB/smartotp-chkotp" smartotp-t1 code >/dev/null; done
out=$(lock smartotp-t1 --answer "" --answer 2468); rc=$?
check "calling the helper by hand cannot dodge the lock: locked after 3 (PAM_MAXTRIES)" 11 "$rc"
check "the record stays root's (user and group), 0600" "root root 600" "$(stat -c '%U %G %a' "$STORE/users/smartotp-t1")"

# ---- attacks on the helper, as the user would make them (issue: Step 1 of 5) -----------
# Failures in the tally: the words after "failed-at".
fails() { counted smartotp-t1; }
helper() { runuser -u smartotp-t1 -- "$PUB/smartotp-chkotp" smartotp-t1 "$@"; }
"$CLI" unlock smartotp-t1 --store "$STORE" >/dev/null
size=$(stat -c %s "$STORE/users/smartotp-t1")
# A file-size limit as small as the record made the failure count fail to write, so
# nothing was counted and the right guess still came out "accepted". Now the helper
# raises the limit where root may (CAP_SYS_RESOURCE; containers often withhold it), and
# where it cannot, the count fails to write and no verdict is given: never a verdict
# without a count.
capbnd=$(awk '/^CapBnd/ { print $2 }' /proc/self/status)   # (mawk has no strtonum: bash does the hex)
sys_resource=$(( (0x${capbnd:-0} >> 24) & 1 ))
verdicts=0
limited() {  # limited SIGXFSZ-DISPOSITION ANSWER: one guess under prlimit --fsize=$size
    runuser -u smartotp-t1 -- sh -c "$1 printf '%s\n' '$2' | prlimit --fsize=$size '$PUB/smartotp-chkotp' smartotp-t1 password" 2>&1
}
for i in 1 2; do
    out=$(limited "trap '' XFSZ;" 9999)
    case "$out" in *rejected*|*accepted*|*locked*) verdicts=$((verdicts + 1));; esac
done
out=$(limited "" 9999)
case "$out" in *rejected*|*accepted*|*locked*) verdicts=$((verdicts + 1));; esac
check "prlimit --fsize (SIGXFSZ ignored, then default): no verdict without a count" "$verdicts" "$(fails)"
if [ "$sys_resource" = 1 ]; then
    check "… and with CAP_SYS_RESOURCE every guess is counted" 3 "$(fails)"
else
    skip "… and with CAP_SYS_RESOURCE every guess is counted" "no CAP_SYS_RESOURCE here (a container): the limit stays, so those guesses got no verdict instead"
fi
check "no temporary file is left in the store" 0 "$(ls -A "$STORE/users" | grep -c tmp)"
out=$(limited "trap '' XFSZ;" 2468)
case "$out" in *accepted*) not_ok "under the limit the right password is never accepted uncounted" "$out";;
    *) ok "under the limit the right password is never accepted uncounted (${out##*$'\n'})";; esac
if [ "$sys_resource" = 1 ]; then
    case "$out" in *"verdict locked"*) ok "after deny=3 counted guesses the right password meets the lock";;
        *) not_ok "after deny=3 counted guesses the right password meets the lock" "$out";; esac
fi
"$CLI" unlock smartotp-t1 --store "$STORE" >/dev/null
# Killing the helper right after a wrong guess, before it can write: the helper is root
# by then (real uid too), so the caller cannot signal it; and the count comes first.
out=$(runuser -u smartotp-t1 -- sh -c "printf '9999\n' | '$PUB/smartotp-chkotp' smartotp-t1 password >/dev/null & p=\$!; sleep 0.04; kill -9 \$p 2>&1; wait \$p" 2>&1)
case "$out" in *"not permitted"*) ok "the caller cannot kill the helper 40 ms into a guess (EPERM)";;
    *) not_ok "the caller cannot kill the helper 40 ms into a guess" "$out";; esac
check "… and that guess is counted" 1 "$(fails)"
# A tap through the helper: only a challenge the helper issued counts, and only once.
"$CLI" unlock smartotp-t1 --store "$STORE" >/dev/null
secret=$(awk '$1 == "token" && $2 == "id=card" { for (i = 1; i <= NF; i++) if ($i ~ /^secret=/) print substr($i, 8) }' "$STORE/users/smartotp-t1")
mac() { python3 -c 'import hmac, hashlib, base64, sys
k = base64.b32decode(sys.argv[1] + "=" * (-len(sys.argv[1]) % 8))
print(hmac.new(k, bytes.fromhex(sys.argv[2]), hashlib.sha1).hexdigest())' "$secret" "$1"; }
tap() { printf 'card\n%s\n%s\n' "$1" "$2" | helper tap 2>&1 | sed -n 's/^verdict //p'; }
chal=$(helper challenge </dev/null | sed -n 's/^challenge //p')
resp=$(mac "$chal")
check "a tap answering the helper's own challenge is accepted" "accepted token card" "$(tap "$chal" "$resp")"
check "the captured (challenge, response) pair replayed: refused" "rejected" "$(tap "$chal" "$resp")"
check "a challenge the caller chose, correctly answered: refused" "rejected" "$(tap 0011223344556677 "$(mac 0011223344556677)")"
check "both refusals are counted" 2 "$(fails)"
"$CLI" unlock smartotp-t1 --store "$STORE" >/dev/null
# A caller that never hands over its request cannot keep a process of root's waiting (it
# could not kill it): the helper's deadline ends it. And it keeps none of the caller's
# descriptors: started with descriptor 7 open, it holds only 0, 1 and 2 (Step 2, the
# low findings).
fifo="$WORK/never-written"; mkfifo -m 666 "$fifo"
sleep 40 >"$fifo" & holder=$!
at_exit "kill $holder 2>/dev/null"
start=$(date +%s)
runuser -u smartotp-t1 -- sh -c "exec 7</etc/hostname; exec '$PUB/smartotp-chkotp' smartotp-t1 password" <"$fifo" >/dev/null 2>&1 & waiter=$!
sleep 1
child=$(pgrep -P "$waiter" | head -1)
check "the helper holds only descriptors 0, 1 and 2" "0 1 2" "$(ls /proc/"$child"/fd 2>/dev/null | sort -n | tr '\n' ' ' | sed 's/ $//')"
wait "$waiter"; rc=$?
elapsed=$(( $(date +%s) - start ))
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
if [ "$rc" -ne 0 ] && [ "$elapsed" -ge 8 ] && [ "$elapsed" -le 20 ]; then ok "a helper never handed its request is gone after its deadline (${elapsed} s, exit $rc)"
else not_ok "a helper never handed its request is gone after its deadline" "exit $rc after ${elapsed} s"; fi
check "… and nothing was counted" 0 "$(fails)"
finish
