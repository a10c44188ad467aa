#!/usr/bin/env bash
# install.sh for real: a second run is idempotent and passes its self-test; the package
# list is split (nothing for tests on a production machine); an admin's edit of a
# conffile survives a re-run; --enable edits a scratch PAM directory only after the new
# stack's self-test, keeping a backup, and refuses a stack that does not load; --uninstall
# takes the module out of common-auth (pam-auth-update), restores a backup only if the
# service is unchanged since, refuses while a service still uses the module, and removes
# every file. The machine ends as it began: /etc/pam.d/common-* and /var/lib/pam are
# restored, and if smartotp was installed before, it is again.
source "$(dirname "$0")/lib/testlib.sh"
MANIFEST=/etc/smartotp/installed-files
again="--no-deps"
[ -e /etc/pam.d/smartotp-test ] && again="--no-deps --deps-dev"
had_fleet=0
grep -qxF /usr/local/sbin/smartotp-fleet "$MANIFEST" 2>/dev/null && { had_fleet=1; again="$again --fleet"; }
# The machine's install is put back as it was: a single host's stays without the fleet (a
# run without --fleet keeps an installed fleet, so the one this suite adds goes first).
if [ -f "$MANIFEST" ]; then
    if [ "$had_fleet" -eq 1 ]; then at_exit "'$ROOT/install.sh' $again >/dev/null 2>&1"
    else at_exit "'$ROOT/install.sh' --uninstall >/dev/null 2>&1; '$ROOT/install.sh' $again >/dev/null 2>&1"; fi
else at_exit "'$ROOT/install.sh' --uninstall >/dev/null 2>&1"; fi
# pam-auth-update rewrites these; they are put back as they were.
mkdir -p "$WORK/saved/pam.d"
cp -p /etc/pam.d/common-* "$WORK/saved/pam.d/"
cp -a /var/lib/pam "$WORK/saved/var-lib-pam"
at_exit "cp -p '$WORK/saved/pam.d/'* /etc/pam.d/; rm -rf /var/lib/pam; cp -a '$WORK/saved/var-lib-pam' /var/lib/pam"
at_exit "rm -f /etc/pam.d/smartotp-it-user"
moddir=$(dirname "$(ls /lib/*/security/pam_unix.so | head -1)")
grep -l pam_smartotp /etc/pam.d/common-* 2>/dev/null | sed 's/^/# note: before this suite, pam_smartotp is already in /'

default=$("$ROOT/install.sh" --list-packages)
dev=$("$ROOT/install.sh" --deps-dev --list-packages)
for p in vsmartcard-vpcd openssh-server yubikey-manager libpam-oath valgrind hyperfine pamtester; do
    echo "$default" | grep -qx "$p" && not_ok "a production install does not pull in $p" || ok "a production install does not pull in $p"
done
echo "$dev" | grep -qx vsmartcard-vpcd && ok "--deps-dev (and --demo) add the test packages" || not_ok "--deps-dev adds the test packages"
echo "$default" | grep -qx pcscd && ok "pcscd is a runtime package" || not_ok "pcscd is a runtime package"

out=$("$ROOT/install.sh" --no-deps 2>&1); rc=$?
check "install.sh (build, install, self-test)" 0 "$rc"
case "$out" in *"self-test passed"*) ok "the self-test ran through PAM";; *) not_ok "the self-test ran" "$out";; esac
[ -e /etc/pam.d/smartotp-test ] && not_ok "no test service on a production install" || ok "no test service on a production install"
sum1=$(md5sum "$moddir/pam_smartotp.so" /usr/local/bin/smartotp | md5sum)
"$ROOT/install.sh" --no-deps >/dev/null 2>&1
check "a second run succeeds (idempotent)" 0 "$?"
check "a second run installs the same files" "$sum1" "$(md5sum "$moddir/pam_smartotp.so" /usr/local/bin/smartotp | md5sum)"
check "the manifest lists each file once" 0 "$(sort "$MANIFEST" | uniq -d | wc -l)"
check "the helper is setuid root" "4755 root" "$(stat -c '%a %U' /usr/local/sbin/smartotp-chkotp)"
check "the record directory is root's, 0700" "700 root" "$(stat -c '%a %U' /var/lib/smartotp)"
nm -D --defined-only "$moddir/pam_smartotp.so" | grep -q pam_sm_authenticate && ok "the installed module is stripped but exports pam_sm_authenticate" || not_ok "installed module exports"
for page in pam_smartotp smartotp smartotp-card smartotp-chkotp smartotp.conf; do
    man -w "$page" >/dev/null 2>&1 && ok "man $page finds the page" || not_ok "man $page"
done
grep -q -- "-F _smartotp smartotp" /usr/share/bash-completion/completions/smartotp && ok "bash completion is installed" || not_ok "bash completion is installed"
[ -f /usr/local/share/doc/smartotp/operations.md ] && ok "the operations page (lockout, backup, AppArmor/SELinux) is installed" || not_ok "operations page installed"
cmp -s /usr/local/share/doc/smartotp/LICENSE "$ROOT/LICENSE" && [ -f /usr/local/share/doc/smartotp/NOTICE ] && ok "… and the licence (Apache-2.0) with its NOTICE" || not_ok "LICENSE and NOTICE installed"
# The fleet is --fleet's: a single host's install builds and installs none of it.
if [ "$had_fleet" -eq 0 ]; then
    { [ -e /usr/local/sbin/smartotpd ] || [ -e /usr/local/sbin/smartotp-fleet ]; } && not_ok "a single host's install has no fleet programs" "$(ls /usr/local/sbin)" ||
        ok "a single host's install has no smartotpd and no smartotp-fleet (--fleet adds them)"
else
    skip "a single host's install has no smartotpd and no smartotp-fleet" "the fleet was installed before this suite (kept as found)"
fi
out=$("$ROOT/install.sh" --no-deps --fleet 2>&1); rc=$?
check "install.sh --fleet (the fleet's build beside the single host's)" 0 "$rc"
[ -x /usr/local/sbin/smartotpd ] && [ -x /usr/local/sbin/smartotp-fleet ] && [ -f /etc/systemd/system/smartotpd.service ] &&
    ok "… installs smartotpd, its unit and smartotp-fleet" || not_ok "--fleet installs the fleet" "$(echo "$out" | tail -3)"
"$ROOT/install.sh" --no-deps >/dev/null 2>&1
grep -qxF /usr/local/sbin/smartotpd "$MANIFEST" && [ -x /usr/local/sbin/smartotpd ] && ok "… and a later run without --fleet keeps it, rebuilt with the rest" ||
    not_ok "the fleet stays installed"

# An admin drops nullok from the snippet: a re-run must not quietly put it back.
sed -i 's/ nullok$//' /etc/pam.d/smartotp-auth
edited=$(md5sum </etc/pam.d/smartotp-auth)
out=$("$ROOT/install.sh" --no-deps 2>&1)
check "a re-run keeps the admin's edited smartotp-auth" "$edited" "$(md5sum </etc/pam.d/smartotp-auth)"
[ -f /etc/pam.d/smartotp-auth.smartotp-new ] && ok "… and puts the new version beside it" || not_ok "smartotp-auth.smartotp-new"
case "$out" in *"kept your /etc/pam.d/smartotp-auth"*) ok "… and says so";; *) not_ok "… and says so" "$out";; esac
cp /etc/pam.d/smartotp-auth.smartotp-new /etc/pam.d/smartotp-auth
"$ROOT/install.sh" --no-deps >/dev/null 2>&1
[ -e /etc/pam.d/smartotp-auth.smartotp-new ] && not_ok "back to ours: the .smartotp-new copy is gone" || ok "back to ours: the .smartotp-new copy is gone"

SCRATCH="$WORK/pam.d"
mkdir -p "$SCRATCH"
# The scratch directory's common-* are the machine's as this suite found them, without our
# module: what --uninstall must find there is what this suite puts there, not what an
# earlier step left in the machine's common-auth.
for f in "$WORK/saved/pam.d/"common-*; do grep -v pam_smartotp "$f" >"$SCRATCH/${f##*/}" || true; done
printf '#%%PAM-1.0\n@include common-auth\n@include common-account\n' >"$SCRATCH/scratch"
cp -p "$SCRATCH/scratch" "$WORK/scratch.orig"
cp -p "$SCRATCH/scratch" "$SCRATCH/edited"
out=$("$ROOT/install.sh" --no-deps --pam-dir "$SCRATCH" --enable scratch --enable edited 2>&1); rc=$?
check "--enable on two scratch services" 0 "$rc"; [ "$rc" = 0 ] || echo "# $out"
check "the service now includes smartotp-auth right after common-auth" "@include common-auth|@include smartotp-auth" \
    "$(grep -A1 '^@include common-auth' "$SCRATCH/scratch" | tr '\n' '|' | sed 's/|$//')"
cmp -s "$SCRATCH/scratch.smartotp-backup" "$WORK/scratch.orig" && ok "the original is kept as a backup" || not_ok "backup kept"
echo "# the admin's own line, added after --enable" >>"$SCRATCH/edited"

printf '#%%PAM-1.0\n@include common-auth\n' >"$SCRATCH/broken"
printf 'auth required /nonexistent/pam_nothing.so\n' >"$SCRATCH/smartotp-auth"
cp -p "$SCRATCH/broken" "$WORK/broken.orig"
out=$("$ROOT/install.sh" --no-deps --pam-dir "$SCRATCH" --enable broken 2>&1); rc=$?
check "--enable refuses a stack whose self-test fails" 1 "$rc"
cmp -s "$SCRATCH/broken" "$WORK/broken.orig" && ok "… and leaves the service as it was" || not_ok "broken service untouched"
[ ! -e "$SCRATCH/broken.smartotp-backup" ] && ok "… with no backup left behind" || not_ok "no stray backup"

# pam-auth-update puts the module in common-auth; a service includes the snippet by hand.
DEBIAN_FRONTEND=noninteractive pam-auth-update --package --enable smartotp
grep -q pam_smartotp /etc/pam.d/common-auth && ok "pam-auth-update --enable smartotp puts the module in common-auth" || not_ok "common-auth has the module"
printf '#%%PAM-1.0\n@include common-auth\n@include smartotp-auth\n' >/etc/pam.d/smartotp-it-user
out=$("$ROOT/install.sh" --uninstall 2>&1); rc=$?
check "--uninstall refuses while a service still uses the module" 1 "$rc"
case "$out" in *"/etc/pam.d/smartotp-it-user"*) ok "… naming the file";; *) not_ok "… naming the file" "$out";; esac
[ -e "$moddir/pam_smartotp.so" ] && ok "… and the module stays in place" || not_ok "… and the module stays in place"
grep -q pam_smartotp /etc/pam.d/common-auth && not_ok "common-auth no longer has the module (pam-auth-update --remove)" || ok "common-auth no longer has the module (pam-auth-update --remove)"
rm -f /etc/pam.d/smartotp-it-user

out=$("$ROOT/install.sh" --uninstall 2>&1); rc=$?
check "--uninstall once nothing uses the module" 0 "$rc"; [ "$rc" = 0 ] || printf '#   %s\n' "$out"
cmp -s "$SCRATCH/scratch" "$WORK/scratch.orig" && ok "--uninstall restores an unchanged service from its backup" || not_ok "service restored"
grep -q "smartotp-auth" "$SCRATCH/edited" && not_ok "a service changed since --enable loses only our line" || ok "a service changed since --enable loses only our line"
grep -q "the admin's own line" "$SCRATCH/edited" && ok "… and keeps the admin's edit" || not_ok "… and keeps the admin's edit"
"$H" --confdir /etc/pam.d --service common-auth --user smartotp-it-nobody --conv-fail >"$WORK/common.out" 2>&1; rc=$?
[ "$rc" -ne 28 ] && ! grep -q "Module is unknown" "$WORK/common.out" && ok "logins through common-auth still load every module (rc $rc)" || not_ok "common-auth loads" "$(cat "$WORK/common.out")"
left=0
for f in "$moddir/pam_smartotp.so" /usr/local/bin/smartotp /usr/local/bin/smartotp-card /usr/local/sbin/smartotp-chkotp \
         /etc/pam.d/smartotp-auth /etc/pam.d/smartotp-test /usr/share/pam-configs/smartotp /etc/smartotp/smartotp.conf \
         /usr/share/bash-completion/completions/smartotp /usr/local/share/man/man8/smartotp-chkotp.8 \
         /usr/local/sbin/smartotpd /usr/local/sbin/smartotp-fleet /etc/systemd/system/smartotpd.service \
         /usr/local/share/man/man8/smartotpd.8 "$MANIFEST"; do
    [ -e "$f" ] && { left=$((left + 1)); echo "# left: $f"; }
done
check "--uninstall removes every installed file" 0 "$left"
out=$("$ROOT/install.sh" --uninstall 2>&1); rc=$?
check "--uninstall again, with nothing installed, succeeds" 0 "$rc"; [ "$rc" = 0 ] || printf '#   %s\n' "$out"
finish
