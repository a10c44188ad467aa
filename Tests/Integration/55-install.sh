#!/usr/bin/env bash
# install.sh for real: a second run is idempotent and passes its self-test; --enable edits
# a scratch PAM directory only after the new stack's self-test, keeping a backup, and
# refuses a stack that does not load; --uninstall removes every file and restores the
# backup. The machine ends as it began: if smartotp was installed before, it is again.
source "$(dirname "$0")/lib/bench.sh"
MANIFEST=/etc/smartotp/installed-files
if [ -f "$MANIFEST" ]; then at_exit "'$ROOT/install.sh' --no-deps >/dev/null 2>&1"; else at_exit "'$ROOT/install.sh' --uninstall >/dev/null 2>&1"; fi
moddir=$(dirname "$(ls /lib/*/security/pam_unix.so | head -1)")

out=$("$ROOT/install.sh" --no-deps 2>&1); rc=$?
check "install.sh (build, install, self-test)" 0 "$rc"
case "$out" in *"self-test passed"*) ok "the self-test ran through PAM";; *) not_ok "the self-test ran" "$out";; esac
sum1=$(md5sum "$moddir/pam_smartotp.so" /usr/local/bin/smartotp | md5sum)
"$ROOT/install.sh" --no-deps >/dev/null 2>&1
check "a second run succeeds (idempotent)" 0 "$?"
check "a second run installs the same files" "$sum1" "$(md5sum "$moddir/pam_smartotp.so" /usr/local/bin/smartotp | md5sum)"
check "the manifest lists each file once" 0 "$(sort "$MANIFEST" | uniq -d | wc -l)"
check "the helper is setuid root" "4755 root" "$(stat -c '%a %U' /usr/local/sbin/smartotp-chkotp)"
check "the record directory is root's, 0700" "700 root" "$(stat -c '%a %U' /var/lib/smartotp)"
nm -D --defined-only "$moddir/pam_smartotp.so" | grep -q pam_sm_authenticate && ok "the installed module is stripped but exports pam_sm_authenticate" || not_ok "installed module exports"
man -w pam_smartotp >/dev/null 2>&1 && ok "man pam_smartotp finds the page" || not_ok "man pam_smartotp"

SCRATCH="$WORK/pam.d"
mkdir -p "$SCRATCH"
cp /etc/pam.d/common-* "$SCRATCH/"
printf '#%%PAM-1.0\n@include common-auth\n@include common-account\n' >"$SCRATCH/scratch"
cp -p "$SCRATCH/scratch" "$WORK/scratch.orig"
out=$("$ROOT/install.sh" --no-deps --pam-dir "$SCRATCH" --enable scratch 2>&1); rc=$?
check "--enable on a scratch service" 0 "$rc"
check "the service now includes smartotp-auth right after common-auth" "@include common-auth|@include smartotp-auth" \
    "$(grep -A1 '^@include common-auth' "$SCRATCH/scratch" | tr '\n' '|' | sed 's/|$//')"
cmp -s "$SCRATCH/scratch.smartotp-backup" "$WORK/scratch.orig" && ok "the original is kept as a backup" || not_ok "backup kept"

printf '#%%PAM-1.0\n@include common-auth\n' >"$SCRATCH/broken"
printf 'auth required /nonexistent/pam_nothing.so\n' >"$SCRATCH/smartotp-auth"
cp -p "$SCRATCH/broken" "$WORK/broken.orig"
out=$("$ROOT/install.sh" --no-deps --pam-dir "$SCRATCH" --enable broken 2>&1); rc=$?
check "--enable refuses a stack whose self-test fails" 1 "$rc"
cmp -s "$SCRATCH/broken" "$WORK/broken.orig" && ok "… and leaves the service as it was" || not_ok "broken service untouched"
[ ! -e "$SCRATCH/broken.smartotp-backup" ] && ok "… with no backup left behind" || not_ok "no stray backup"

"$ROOT/install.sh" --uninstall >/dev/null 2>&1
check "--uninstall" 0 "$?"
cmp -s "$SCRATCH/scratch" "$WORK/scratch.orig" && ok "--uninstall restores the edited service" || not_ok "service restored"
left=0
for f in "$moddir/pam_smartotp.so" /usr/local/bin/smartotp /usr/local/bin/smartotp-card /usr/local/sbin/smartotp-chkotp \
         /etc/pam.d/smartotp-auth /etc/pam.d/smartotp-test /usr/share/pam-configs/smartotp "$MANIFEST"; do
    [ -e "$f" ] && { left=$((left + 1)); echo "# left: $f"; }
done
check "--uninstall removes every installed file" 0 "$left"
finish
