#!/usr/bin/env bash
# The Debian packages, as an administrator gets them: built by dpkg-buildpackage
# (scripts/build-debs.sh), checked by lintian, then installed with apt into a fresh
# Debian 12 root made by debootstrap from the same package source apt uses here — a
# system with no Swift toolchain — where the CLI, a pamtester login, pam-auth-update,
# remove, purge (with and without the records) and an upgrade that keeps the
# administrator's conffiles are exercised. The root lives in this suite's folder and goes
# with it; every command inside runs in a mount namespace of its own (its /proc goes
# with it), so nothing is mounted on the machine.
source "$(dirname "$0")/lib/testlib.sh"

for t in dpkg-buildpackage lintian debootstrap oathtool unshare; do
    command -v "$t" >/dev/null || die "$t is not installed (./install.sh --deps-dev)"
done
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot)"

VERSION=$("$ROOT/scripts/version.sh")
ARCH=$(dpkg --print-architecture)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
DEBS=$WORK/debs
R=$WORK/root            # the Debian 12 system under test
SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
# The debootstrapped base, kept as a tarball between runs of this suite on one machine.
CACHE=$ROOT/.build-deb/bookworm-minbase.tar

# in_root CMD…: CMD inside the test root, with a /proc of its own and a clean environment.
in_root() {
    unshare --mount --propagation private -- sh -c 'r=$1; shift; mount -t proc proc "$r/proc" && exec chroot "$r" "$@"' sh "$R" \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
# apt_in ARGS…: apt-get inside the root, as an unattended upgrade runs it (conffiles:
# the administrator's version is kept, dpkg's default for an unchanged one).
apt_in() { in_root apt-get -q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"; }
# login SERVICE USER ANSWER…: pamtester inside the root, its verdict line.
login() {
    local svc=$1 user=$2; shift 2
    printf '%s\n' "$@" | in_root pamtester "$svc" "$user" authenticate 2>&1 | grep -o 'pamtester: .*' | tail -1
}
SUCCESS="pamtester: successfully authenticated"
totp() { oathtool --totp -b "$1"; }
newsecret() { python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode())'; }
# The files (not folders) a package installs, from its .deb.
files_of() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }'; }

# --- Build -------------------------------------------------------------------------------
echo "# building the packages (scripts/build-debs.sh)"
if DEB_BUILD_OPTIONS=noautodbgsym "$ROOT/scripts/build-debs.sh" "$DEBS" >"$WORK/build.log" 2>&1; then
    ok "dpkg-buildpackage -b -us -uc builds the packages"
else
    not_ok "dpkg-buildpackage -b -us -uc builds the packages" "$(tail -20 "$WORK/build.log" | tr '\n' '|')"
    finish; exit 1
fi
LIBPAM=$DEBS/libpam-smartotp_${VERSION}_$ARCH.deb
CLIDEB=$DEBS/smartotp_${VERSION}_$ARCH.deb
DAEMON=$DEBS/smartotpd_${VERSION}_$ARCH.deb
FLEETDEB=$DEBS/smartotp-fleet-client_${VERSION}_$ARCH.deb
check "four packages, named by the one version ($VERSION)" "4" "$(ls "$LIBPAM" "$CLIDEB" "$DAEMON" "$FLEETDEB" 2>/dev/null | wc -l)"
# Sized like their kind (Installed-Size, KiB): what every host needs is small (at most
# 1 MiB); the fleet's TLS client is a package of its own; smartotp carries no ICU data
# (FoundationEssentials) and one Swift program (smartotp-card is a link to smartotp);
# smartotpd neither (libpq, FoundationEssentials): at most 40 MiB; smartotp-fleet-client is
# the TLS client (SwiftNIO and BoringSSL, no Foundation): at most 30 MiB.
size_of() { dpkg-deb -f "$1" Installed-Size; }
for limit in "$LIBPAM 1024" "$CLIDEB 20480" "$DAEMON 40960" "$FLEETDEB 30720"; do
    set -- $limit
    n=$(size_of "$1")
    [ "${n:-999999}" -le "$2" ] && ok "$(basename "${1%%_*}"): Installed-Size $n KiB (at most $2)" || not_ok "$(basename "${1%%_*}") is at most $2 KiB" "$n KiB"
done
dpkg-deb -f "$DAEMON" Depends | grep -q 'libpq5' && ok "smartotpd depends on libpq5 (its PostgreSQL client, found by dpkg-shlibdeps)" ||
    not_ok "smartotpd depends on libpq5" "$(dpkg-deb -f "$DAEMON" Depends)"
files_of "$LIBPAM" | grep -q smartotp-fleet && not_ok "libpam-smartotp has no fleet client" || ok "libpam-smartotp has no fleet client (it suggests smartotp-fleet-client)"

# --- lintian -------------------------------------------------------------------------------
# lintian leaves its mldbm-elf-* caches in TMPDIR: it gets one of its own.
source "$ROOT/scripts/private-tmp.sh"
with_private_tmp lintian --fail-on error,warning --info "$LIBPAM" "$CLIDEB" "$DAEMON" >"$WORK/lintian.txt" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && ! grep -qE '^[EW]: ' "$WORK/lintian.txt"; then
    ok "lintian: no errors, no warnings (the rest explained in debian/*.lintian-overrides)"
else
    not_ok "lintian: no errors, no warnings" "$(grep -E '^[EW]: ' "$WORK/lintian.txt" | head -10 | tr '\n' '|')"
fi

# --- What the packages hold ----------------------------------------------------------------
c=$(dpkg-deb -c "$LIBPAM")
echo "$c" | grep -q " ./usr/lib/$MULTIARCH/security/pam_smartotp.so$" && ok "the module is in the multiarch security folder" || not_ok "module path" "$c"
echo "$c" | grep -qE '^-rwsr-xr-x root/root .* \./usr/sbin/smartotp-chkotp$' && ok "the helper is /usr/sbin/smartotp-chkotp, setuid root" || not_ok "helper path and mode" "$(echo "$c" | grep chkotp)"
echo "$c" | grep -q './usr/share/man/man8/pam_smartotp.8.gz$' && ok "man pages gzipped" || not_ok "man pages gzipped"
x=$WORK/x; dpkg-deb -x "$LIBPAM" "$x"
paths=$(strings "$x/usr/lib/$MULTIARCH/security/pam_smartotp.so" | grep -E '/sbin/smartotp-(chkotp|fleet)$' | sort | tr '\n' ' ')
check "the module runs the helper and the client from /usr/sbin (chosen at build time)" "/usr/sbin/smartotp-chkotp /usr/sbin/smartotp-fleet " "$paths"
grep -q 'Default: no' "$x/usr/share/pam-configs/smartotp" && ok "the pam-auth-update profile is off until enabled" || not_ok "profile Default: no"
deps=$(dpkg-deb -f "$LIBPAM" Depends)
case "$deps" in *libpam0g*libc6*|*libc6*libpam0g*) ok "Depends computed by dpkg-shlibdeps ($deps)" ;; *) not_ok "shlibs Depends" "$deps" ;; esac
check "smartotpd's example configuration is a conffile" "/etc/smartotpd/smartotpd.conf" "$(dpkg-deb -I "$DAEMON" conffiles 2>/dev/null)"

# --- A fresh Debian 12 root, without Swift ------------------------------------------------
mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Identifier: Packages' 'Codename: bookworm' 2>/dev/null | grep -v security | head -1)
mirror=${mirror:-http://deb.debian.org/debian/}
mkdir -p "$R"
if [ ! -s "$CACHE" ]; then
    echo "# debootstrap --variant=minbase bookworm from $mirror"
    mkdir -p "$(dirname "$CACHE")" "$WORK/base"
    if debootstrap --variant=minbase --include=pamtester,debconf-utils bookworm "$WORK/base" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
        tar -C "$WORK/base" -cf "$CACHE.tmp" . && mv "$CACHE.tmp" "$CACHE"
    else
        not_ok "debootstrap a Debian 12 root" "$(tail -5 "$WORK/debootstrap.log" | tr '\n' '|')"; finish; exit 1
    fi
    rm -rf "$WORK/base"
fi
tar -C "$R" -xf "$CACHE"
# No service starts inside (pcscd comes as a recommendation).
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"; chmod 755 "$R/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$R/tmp/debs"; cp "$DEBS"/*.deb "$R/tmp/debs/"
swift_there=$(in_root sh -c 'command -v swift swiftc; find / -xdev -name "libswiftCore*" 2>/dev/null' | head -1)
check "the test root has no Swift toolchain" "" "$swift_there"

# --- Install -------------------------------------------------------------------------------
in_root apt-get -q update >"$WORK/apt.log" 2>&1
if apt_in install "/tmp/debs/libpam-smartotp_${VERSION}_$ARCH.deb" "/tmp/debs/smartotp_${VERSION}_$ARCH.deb" >>"$WORK/apt.log" 2>&1; then
    ok "apt install ./libpam-smartotp_*.deb ./smartotp_*.deb resolves its dependencies"
else
    not_ok "apt install of the packages" "$(tail -8 "$WORK/apt.log" | tr '\n' '|')"; finish; exit 1
fi
check "smartotp --version runs without the toolchain" "smartotp $VERSION" "$(in_root smartotp --version 2>&1)"
case "$(in_root smartotp-card --help 2>&1)" in *"virtual smart OTP card"*) ok "smartotp-card (a link to smartotp) is the virtual card";; *) not_ok "smartotp-card runs" "$(in_root smartotp-card --help 2>&1 | head -2)";; esac
[ -e "$R/usr/sbin/smartotp-fleet" ] && not_ok "a single host gets no fleet client" || ok "a single host (libpam-smartotp, smartotp) gets no fleet client"
case "$(in_root smartotp list --server https://127.0.0.1:9 2>&1)" in *"smartotp-fleet-client"*) ok "smartotp --server without the fleet client says which package it needs";;
    *) not_ok "smartotp --server names the fleet client package" "$(in_root smartotp list --server https://127.0.0.1:9 2>&1)";; esac
check "no Swift library is loaded by smartotp" "" "$(in_root ldd /usr/bin/smartotp | grep -E 'swift|not found')"
out=$(in_root smartotp check 2>&1); rc=$?
[ "$rc" -eq 0 ] && echo "$out" | grep -q "^OK .*module installed at .*/security/pam_smartotp.so" && echo "$out" | grep -q "^OK .*store /var/lib/smartotp" \
    && ok "smartotp check finds the packaged module and store" || not_ok "smartotp check in the root" "$(echo "$out" | tr '\n' '|')"
check "the records' folder is root's, 0700" "700 root" "$(stat -c '%a %U' "$R/var/lib/smartotp")"
check "the helper installed setuid root" "4755 root" "$(stat -c '%a %U' "$R/usr/sbin/smartotp-chkotp")"
in_root sh -c 'zcat /usr/share/bash-completion/completions/smartotp 2>/dev/null || cat /usr/share/bash-completion/completions/smartotp' | grep -q '^complete .*-F _smartotp smartotp$' \
    && ok "bash completion installed" || not_ok "bash completion installed"

# Users: alice and carol enrolled (a code each), bob not (a password only).
in_root sh -c 'useradd -m alice && useradd -m bob && useradd -m carol && printf "alice:pw-alice\nbob:pw-bob\ncarol:pw-carol\n" | chpasswd'
S1=$(newsecret); S2=$(newsecret)
echo "$S1" | in_root smartotp enroll alice --secret - >"$WORK/enroll.txt" 2>&1 && ok "smartotp enroll alice (TOTP secret)" || not_ok "smartotp enroll" "$(cat "$WORK/enroll.txt")"
echo "$S2" | in_root smartotp enroll carol --secret - >/dev/null 2>&1
check "the record is root's 0600" "600 root" "$(stat -c '%a %U' "$R/var/lib/smartotp/users/alice")"
printf 'auth required pam_smartotp.so timeout=2\naccount required pam_permit.so\n' >"$R/etc/pam.d/pkgtest"
printf '@include common-auth\naccount required pam_permit.so\n' >"$R/etc/pam.d/pkgtest-common"
check "a pamtester login with a wrong code is refused" "pamtester: Authentication failure" "$(login pkgtest alice 000000)"
check "a pamtester login with alice's code succeeds" "$SUCCESS" "$(login pkgtest alice "$(totp "$S1")")"

# --- pam-auth-update -----------------------------------------------------------------------
grep -q pam_smartotp "$R/etc/pam.d/common-auth" && not_ok "installing leaves common-auth alone" || ok "installing leaves common-auth alone (the profile is off)"
in_root pam-auth-update --enable smartotp >/dev/null 2>&1
grep -qE '^auth.*pam_smartotp\.so nullok' "$R/etc/pam.d/common-auth" && ok "pam-auth-update --enable smartotp puts the module in common-auth" || not_ok "common-auth has the module" "$(grep -v '^#' "$R/etc/pam.d/common-auth" | tr '\n' '|')"
check "common-auth: an unenrolled user logs in with the password alone (nullok)" "$SUCCESS" "$(login pkgtest-common bob pw-bob)"
check "common-auth: an enrolled user needs the password and the code" "$SUCCESS" "$(login pkgtest-common carol pw-carol "$(totp "$S2")")"
check "common-auth: the password without the right code is refused" "pamtester: Authentication failure" "$(login pkgtest-common carol pw-carol 000000)"

# --- remove, purge ---------------------------------------------------------------------------
apt_in remove libpam-smartotp >"$WORK/remove.log" 2>&1 && ok "apt remove libpam-smartotp" || not_ok "apt remove" "$(tail -5 "$WORK/remove.log" | tr '\n' '|')"
grep -q pam_smartotp "$R/etc/pam.d/common-auth" && not_ok "remove takes the module out of common-auth" || ok "remove takes the module out of common-auth"
check "after remove, logins through common-auth work" "$SUCCESS" "$(login pkgtest-common bob pw-bob)"
grep -q 'pkgtest still uses pam_smartotp' "$WORK/remove.log" && ok "remove warns of a hand-written service that still uses the module" || not_ok "remove warns about /etc/pam.d/pkgtest" "$(grep -i warning "$WORK/remove.log")"
rm -f "$R/etc/pam.d/pkgtest"
apt_in purge libpam-smartotp >"$WORK/purge.log" 2>&1 || not_ok "apt purge" "$(tail -5 "$WORK/purge.log" | tr '\n' '|')"
left=""
while read -r f; do [ -e "$R$f" ] && left="$left $f"; done < <(files_of "$LIBPAM")
[ -e "$R/etc/smartotp" ] && left="$left /etc/smartotp"
check "apt purge leaves no file of the package (the default answer keeps the records)" "" "$left"
[ -s "$R/var/lib/smartotp/users/alice" ] && ok "purge kept the records by default (debconf: libpam-smartotp/purge-records false)" || not_ok "records kept by default"
apt_in install "/tmp/debs/libpam-smartotp_${VERSION}_$ARCH.deb" >"$WORK/apt2.log" 2>&1
echo 'libpam-smartotp libpam-smartotp/purge-records boolean true' | in_root debconf-set-selections
apt_in purge libpam-smartotp >"$WORK/purge2.log" 2>&1
[ -e "$R/var/lib/smartotp" ] && not_ok "purge removes the records when the administrator says so" || ok "purge removes the records when the administrator says so"

# --- Upgrade from the previous version --------------------------------------------------------
# The previous version: these packages as 0.1.0, with conffiles that differ from today's,
# so that dpkg meets every case (changed by us, by the admin, by both).
OLD=0.1.0
old_deb() {
    local deb=$1 name dir
    name=$(dpkg-deb -f "$deb" Package); dir=$WORK/old-$name
    rm -rf "$dir"; dpkg-deb -R "$deb" "$dir"
    # Up to 0.2.0 libpam-smartotp carried the fleet client.
    [ "$name" = libpam-smartotp ] && dpkg-deb -x "$FLEETDEB" "$dir"
    sed -i "s/^Version: .*/Version: $OLD/" "$dir/DEBIAN/control"
    local f
    while read -r f; do [ -n "$f" ] && echo "# as shipped in $OLD" >>"$dir$f"; done <"$dir/DEBIAN/conffiles"
    (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | xargs -0 md5sum >DEBIAN/md5sums)
    dpkg-deb --root-owner-group -b "$dir" "$R/tmp/debs/${name}_${OLD}_$ARCH.deb" >/dev/null
}
old_deb "$LIBPAM"; old_deb "$DAEMON"
apt_in install "/tmp/debs/libpam-smartotp_${OLD}_$ARCH.deb" "/tmp/debs/smartotpd_${OLD}_$ARCH.deb" >"$WORK/old.log" 2>&1 \
    && ok "the previous version ($OLD) installs" || not_ok "install $OLD" "$(tail -5 "$WORK/old.log" | tr '\n' '|')"
getent_out=$(in_root getent passwd _smartotpd | cut -d: -f1,7)
check "smartotpd's system user is created" "_smartotpd:/usr/sbin/nologin" "$getent_out"
echo "deny=3 unlock_time=900" >>"$R/etc/smartotp/smartotp.conf"                            # the admin's edit
sed -i 's/^listen.*/listen = 10.0.0.1:8443/' "$R/etc/smartotpd/smartotpd.conf"; grep -q '^listen = 10.0.0.1:8443' "$R/etc/smartotpd/smartotpd.conf" || echo "listen = 10.0.0.1:8443" >>"$R/etc/smartotpd/smartotpd.conf"
echo "$S1" | in_root smartotp enroll alice --secret - --force >/dev/null 2>&1
if apt_in install "/tmp/debs/libpam-smartotp_${VERSION}_$ARCH.deb" "/tmp/debs/smartotpd_${VERSION}_$ARCH.deb" \
        "/tmp/debs/smartotp-fleet-client_${VERSION}_$ARCH.deb" >"$WORK/upgrade.log" 2>&1; then
    ok "upgrade $OLD → $VERSION (smartotp-fleet moves to smartotp-fleet-client: Breaks/Replaces)"
else
    not_ok "upgrade $OLD → $VERSION" "$(tail -5 "$WORK/upgrade.log" | tr '\n' '|')"
fi
check "upgraded" "$VERSION $VERSION" "$(in_root dpkg-query -W -f '${Version} ' libpam-smartotp smartotpd | sed 's/ $//')"
grep -q '^deny=3 unlock_time=900$' "$R/etc/smartotp/smartotp.conf" && ok "the admin's edit of smartotp.conf is kept" || not_ok "smartotp.conf edit kept"
[ -e "$R/etc/smartotp/smartotp.conf.dpkg-dist" ] && ok "the new smartotp.conf is beside it (.dpkg-dist)" || not_ok "smartotp.conf.dpkg-dist"
grep -q '^listen = 10.0.0.1:8443' "$R/etc/smartotpd/smartotpd.conf" && ok "the admin's edit of smartotpd.conf is kept" || not_ok "smartotpd.conf edit kept"
cmp -s "$R/etc/pam.d/smartotp-auth" "$x/etc/pam.d/smartotp-auth" && ok "an unedited conffile (smartotp-auth) gets the new version" || not_ok "smartotp-auth updated"
check "smartotpd.conf stays root's 0600" "600 root" "$(stat -c '%a %U' "$R/etc/smartotpd/smartotpd.conf")"
[ -s "$R/var/lib/smartotp/users/alice" ] && ok "the records survive the upgrade" || not_ok "records after upgrade"
grep -q '^User=_smartotpd' "$R/lib/systemd/system/smartotpd.service" && ok "smartotpd.service runs as _smartotpd" || not_ok "unit User="
[ -e "$R/etc/systemd/system/multi-user.target.wants/smartotpd.service" ] && not_ok "smartotpd is installed disabled" || ok "smartotpd is installed disabled (it needs its database first)"
check "smartotpd --version" "smartotpd $VERSION" "$(in_root smartotpd --version 2>&1)"
check "smartotp-fleet --version (from smartotp-fleet-client) runs without the toolchain" "smartotp-fleet $VERSION" "$(in_root smartotp-fleet --version 2>&1)"
check "… owned by smartotp-fleet-client now" "smartotp-fleet-client" "$(in_root dpkg -S /usr/sbin/smartotp-fleet 2>/dev/null | cut -d: -f1)"
apt_in purge smartotpd >/dev/null 2>&1
[ -e "$R/etc/smartotpd/smartotpd.conf" ] && not_ok "purging smartotpd removes its configuration" || ok "purging smartotpd removes its configuration"

# --- The same packages in a Debian 13 root -------------------------------------------------
# Built on Debian 12, they must install and work on the next release as they are (the
# t64 libraries there provide the old names). Only when the package source carries it.
if curl -sf --max-time 20 -o /dev/null "${mirror%/}/dists/trixie/Release"; then
    CACHE13=$ROOT/.build-deb/trixie-minbase.tar
    R=$WORK/root13
    mkdir -p "$R"
    if [ ! -s "$CACHE13" ]; then
        echo "# debootstrap --variant=minbase trixie from $mirror"
        mkdir -p "$WORK/base13"
        if debootstrap --variant=minbase --include=pamtester trixie "$WORK/base13" "$mirror" >"$WORK/debootstrap13.log" 2>&1; then
            tar -C "$WORK/base13" -cf "$CACHE13.tmp" . && mv "$CACHE13.tmp" "$CACHE13"
        fi
        rm -rf "$WORK/base13"
    fi
    if [ -s "$CACHE13" ]; then
        tar -C "$R" -xf "$CACHE13"
        printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"; chmod 755 "$R/usr/sbin/policy-rc.d"
        cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
        mkdir -p "$R/tmp/debs"; cp "$LIBPAM" "$CLIDEB" "$FLEETDEB" "$R/tmp/debs/"
        in_root apt-get -q update >"$WORK/apt13.log" 2>&1
        if apt_in install "/tmp/debs/$(basename "$LIBPAM")" "/tmp/debs/$(basename "$CLIDEB")" "/tmp/debs/$(basename "$FLEETDEB")" >>"$WORK/apt13.log" 2>&1; then
            ok "Debian 13 ($(cat "$R/etc/debian_version")): the same packages install"
        else
            not_ok "Debian 13: the packages install" "$(tail -6 "$WORK/apt13.log" | tr '\n' '|')"
        fi
        check "Debian 13: smartotp and smartotp-fleet run" "smartotp $VERSION smartotp-fleet $VERSION" \
            "$(in_root smartotp --version 2>&1) $(in_root smartotp-fleet --version 2>&1)"
        in_root useradd -m alice
        echo "$SECRET" | in_root smartotp enroll alice --secret - >/dev/null 2>&1
        printf 'auth required pam_smartotp.so methods=code\naccount required pam_permit.so\n' >"$R/etc/pam.d/pkgtest"
        check "Debian 13: a wrong code is refused" "pamtester: Authentication failure" "$(login pkgtest alice 000000)"
        check "Debian 13: alice's code logs in" "$SUCCESS" "$(login pkgtest alice "$(totp "$SECRET")")"
        apt_in purge libpam-smartotp smartotp smartotp-fleet-client >"$WORK/purge13.log" 2>&1
        left=$(for f in $(files_of "$LIBPAM") $(files_of "$CLIDEB") $(files_of "$FLEETDEB"); do [ -e "$R$f" ] && echo "$f"; done)
        check "Debian 13: purge leaves none of their files" "" "$left"
    else
        not_ok "debootstrap a Debian 13 root" "$(tail -5 "$WORK/debootstrap13.log" 2>/dev/null | tr '\n' '|')"
    fi
else
    skip "Debian 13: the same packages install, run, refuse a wrong code, log in and purge" "the package source here ($mirror) carries no Debian 13 (trixie)"
fi

finish
