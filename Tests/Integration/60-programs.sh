#!/usr/bin/env bash
# pam_smartotp in the real programs: sudo, su and sshd (key + typed code), and a login
# run by an unprivileged caller through the setuid helper (what screen lockers do).
#
# System files this suite changes, each restored or removed on exit (also on failure):
# /etc/pam.d/sudo and /etc/pam.d/su (backed up, then our stack), /etc/sudoers.d/smartotp-test,
# /etc/pam.d/smartotp-sshd-test, /etc/smartotp/smartotp.conf (helper policy), the test
# users smartotp-t1 and smartotp-t2, and /usr/local/lib/smartotp-test.* (the setuid helper
# copy). sshd listens on 127.0.0.1 only and is stopped by PID.
source "$(dirname "$0")/lib/bench.sh"

# One code token per phase, so that no test needs to wait for the next TOTP step.
S_SUDO=JBSWY3DPEHPK3PXP S_LOCK=ONSWG4TFORPWK6DQ S_HELPER=KRSXG5CTMVRXEZLU   # smartotp-t1
S_SU=GEZDGNBVGY3TQOJQ S_SSH=MFRGGZDFMZTWQ2LK                          # smartotp-t2
READER="Virtual PCD 00 00"
PUB=$(mktemp -d /usr/local/lib/smartotp-test.XXXXXX)   # not under a nosuid /tmp
chmod 755 "$PUB"
at_exit "rm -rf '$PUB'"
STORE="$PUB/store"
mkdir -m 700 "$STORE"
for cmd in sudo su sshd ssh ssh-keygen python3; do
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || die "$cmd is missing (./install.sh --deps-only)"
done
python3 -c 'import pexpect' 2>/dev/null || die "python3-pexpect is missing"

# backup FILE: restore it (or remove it if it did not exist) on exit.
backup() {
    local f=$1 b="$WORK/backup.$(echo "$1" | tr / _)"
    if [ -e "$f" ]; then cp -p "$f" "$b"; at_exit "cp -p '$b' '$f'"; else at_exit "rm -f '$f'"; fi
}
add_user() {
    id "$1" >/dev/null 2>&1 && die "user $1 exists already; remove it first"
    useradd -m -s /bin/sh "$1" && usermod -p '*' "$1"
    at_exit "userdel -r '$1' 2>/dev/null || userdel '$1'"
}
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
child.close()
sys.exit(child.exitstatus if child.exitstatus is not None else 99)
PY
}
code=$(totp $S_SU)   # once: a replay must send the same code, even across a step boundary
su_as_t1 "$code" >/dev/null; rc=$?
check "su: the target user's typed code" 0 "$rc"
su_as_t1 "$code" >/dev/null; rc=$?
check "su: the same code again is refused (replay)" 1 "$rc"

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
ssh_login "$code"; rc=$?
check "sshd: the same code replayed is refused" 255 "$rc"
ssh_login 000000; rc=$?
check "sshd: a wrong code is refused" 255 "$rc"
"$CLI" unlock smartotp-t2 --store "$STORE" >/dev/null

# ---- a caller that is not root: the setuid helper --------------------------------------
install -o root -g root -m 4755 "$BIN/smartotp-chkotp" "$PUB/smartotp-chkotp"
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
case "$out" in *"secret=AA "*) ok "the helper's summary carries no secret";; *) not_ok "the helper's summary carries no secret" "$out";; esac
case "$out" in *"$S_HELPER"*|*"$S_SUDO"*) not_ok "no Base32 secret in the summary";; *) ok "no Base32 secret in the summary";; esac
for i in 1 2 3; do printf '000000\n' | runuser -u smartotp-t1 -- "$PUB/smartotp-chkotp" smartotp-t1 code >/dev/null; done
out=$(lock smartotp-t1 --answer "" --answer 2468); rc=$?
check "calling the helper by hand cannot dodge the lock: locked after 3 (PAM_MAXTRIES)" 11 "$rc"
check "the record stays root's, 0600" "root 600" "$(stat -c '%U %a' "$STORE/users/smartotp-t1")"
finish
