#!/usr/bin/env bash
# install.sh — build and install smartotp on Debian 12, as root.
#
#   ./install.sh                 install the Debian packages, build, install, self-test
#   ./install.sh --demo          the same, then run `smartotp demo` (real PAM logins
#                                with the virtual card where no reader exists)
#   ./install.sh --deps-only     only install the Debian packages (what CI does first)
#   ./install.sh --no-deps       skip apt-get (packages already there)
#   ./install.sh --enable SVC    also add pam_smartotp to /etc/pam.d/SVC (sudo, sshd, login,
#                                su, …): only after a self-test of the new stack passes, with
#                                a backup (SVC.smartotp-backup) that --uninstall restores
#   ./install.sh --pam-dir DIR   with --enable: edit services in DIR instead of /etc/pam.d
#   ./install.sh --uninstall     remove everything this script added (records are kept)
#
# It is idempotent: running it again reinstalls the same files. It never edits an
# existing /etc/pam.d service unless --enable names it.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
    # build
    pkg-config libpam0g-dev libpcsclite-dev libssl-dev libcrypt-dev libqrencode-dev
    # run
    pcscd libpcsclite1 libpam0g libqrencode4
    # the virtual card bench, the tests and the demo
    vsmartcard-vpcd pamtester oathtool libpam-oath yubikey-manager iproute2 util-linux procps python3
    # the real-program tests (sudo, su, sshd) and the benchmarks
    sudo openssh-server openssh-client python3-pexpect valgrind hyperfine time
)
PREFIX=/usr/local
STATE=/var/lib/smartotp
CONFDIR=/etc/smartotp
MANIFEST=$CONFDIR/installed-files
PAMDIR=/etc/pam.d

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

module_dir() {
    local d
    for d in /lib/x86_64-linux-gnu/security /lib/aarch64-linux-gnu/security /usr/lib/x86_64-linux-gnu/security /lib/security /usr/lib/security; do
        [ -e "$d/pam_unix.so" ] && { echo "$d"; return; }
    done
    die "cannot find the directory of pam_unix.so (is libpam-modules installed?)"
}

deps() {
    say "installing Debian packages: ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Keep package scripts from starting pcscd or sshd: the tests start their own, on
    # loopback, and refuse to run beside a pcscd they did not start.
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1
    fi
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" || { [ "$added" -eq 0 ] || rm -f "$policy"; die "apt-get install failed"; }
    [ "$added" -eq 0 ] || rm -f "$policy"
}

build() {
    command -v swift >/dev/null || die "swift is not on PATH (Swift 6 toolchain needed)"
    say "building (release)"
    swift build -c release
}

# put SRC DEST MODE: install a file and remember it for --uninstall.
put() {
    install -D -o root -g root -m "$3" "$1" "$2"
    grep -qxF "$2" "$MANIFEST" 2>/dev/null || echo "$2" >>"$MANIFEST"
}

install_files() {
    [ "$(id -u)" -eq 0 ] || die "run as root"
    local bin=.build/release moddir
    moddir=$(module_dir)
    install -d -o root -g root -m 0755 "$CONFDIR"
    touch "$MANIFEST"
    # Stripped: the debug info is two thirds of the file and useless in sudo's memory.
    strip --strip-unneeded -o "$bin/pam_smartotp.stripped.so" "$bin/libpam_smartotp.so"
    put "$bin/pam_smartotp.stripped.so" "$moddir/pam_smartotp.so" 0644
    put "$bin/smartotp" "$PREFIX/bin/smartotp" 0755
    put "$bin/smartotp-card" "$PREFIX/bin/smartotp-card" 0755
    put "$bin/pam-harness" "$PREFIX/lib/smartotp/pam-harness" 0755
    # setuid root, as unix_chkpwd: checks only the calling user's own record.
    put "$bin/smartotp-chkotp" "$PREFIX/sbin/smartotp-chkotp" 4755
    put docs/pam_smartotp.8 "$PREFIX/share/man/man8/pam_smartotp.8" 0644
    put docs/smartotp.1 "$PREFIX/share/man/man1/smartotp.1" 0644
    for f in pam.d/smartotp-auth pam.d/smartotp-test; do put "$f" "/etc/pam.d/$(basename "$f")" 0644; done
    for f in pam.d/examples/*; do put "$f" "$PREFIX/share/doc/smartotp/pam.d/$(basename "$f")" 0644; done
    put pam.d/pam-configs/smartotp /usr/share/pam-configs/smartotp 0644
    install -d -o root -g root -m 0700 "$STATE" "$STATE/users" "$STATE/locks"
    say "module: $moddir/pam_smartotp.so; CLIs: $PREFIX/bin/smartotp, smartotp-card; records: $STATE (0700)"
}

self_test() {
    # The installed module loads and answers through a real PAM stack: a user without a
    # record is PAM_USER_UNKNOWN (10) from the test service.
    local out rc
    set +e
    out=$("$PREFIX/lib/smartotp/pam-harness" --confdir /etc/pam.d --service smartotp-test --user smartotp-selftest-nobody 2>&1)
    rc=$?
    set -e
    [ "$rc" -eq 10 ] || die "self-test failed (expected PAM_USER_UNKNOWN, got $rc): $out"
    say "self-test passed: the installed module loads and answers through PAM"
}

enable_service() {
    local svc=$1 file=$PAMDIR/$1 backup tmpdir out rc
    [[ "$svc" =~ ^[a-z0-9][a-z0-9_.-]*$ ]] || die "--enable: '$svc' is not a service name"
    [ -f "$file" ] || die "$file does not exist"
    if grep -q 'smartotp-auth\|pam_smartotp' "$file"; then say "$file already uses smartotp"; return; fi
    backup="$file.smartotp-backup"
    # The new stack: our snippet right after the password step (two factors), or first.
    tmpdir=$(mktemp -d)
    cp -p "$PAMDIR"/* "$tmpdir/" 2>/dev/null || true
    [ -f "$tmpdir/smartotp-auth" ] || cp /etc/pam.d/smartotp-auth "$tmpdir/"
    if grep -q '^@include common-auth' "$file"; then
        sed '/^@include common-auth/a @include smartotp-auth' "$file" >"$tmpdir/$svc"
    else
        { echo "@include smartotp-auth"; cat "$file"; } >"$tmpdir/$svc"
    fi
    # Self-test the candidate stack before it goes live: every module must load and the
    # stack must reach a verdict for a user with no record (pam_unix refuses it, our
    # module ignores it). Anything else — a module that does not load, a syntax error —
    # leaves the service untouched. Locking the administrator out is the worst outcome.
    local harness="$PREFIX/lib/smartotp/pam-harness"
    # 1. The snippet alone, then pam_permit: it must load and let a user without a record
    #    through (PAM_SUCCESS); a module that does not load, or a snippet without nullok
    #    (which would lock out everyone not yet enrolled, the administrator included), fails.
    #    Written out, not @included: Linux-PAM resolves @include from /etc/pam.d even for
    #    a private directory, and the snippet to test is the one in $PAMDIR.
    local snippet=$PAMDIR/smartotp-auth
    [ -f "$snippet" ] || snippet=/etc/pam.d/smartotp-auth
    { grep -v '^@include' "$snippet"; echo "auth required pam_permit.so"; } >"$tmpdir/smartotp-selftest"
    set +e
    out=$("$harness" --confdir "$tmpdir" --service smartotp-selftest --user smartotp-selftest-nobody --conv-fail 2>&1)
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        rm -rf "$tmpdir"
        die "self-test of smartotp-auth failed (PAM code $rc: ${out//$'\n'/ }): it must load and keep nullok until every user is enrolled; $file not changed"
    fi
    # 2. The whole new stack must reach a verdict for that user (pam_unix refuses it).
    set +e
    out=$("$harness" --confdir "$tmpdir" --service "$svc" --user smartotp-selftest-nobody --conv-fail 2>&1)
    rc=$?
    set -e
    case "$rc" in
        7|9|10|19|25) ;;   # AUTH_ERR, AUTHINFO_UNAVAIL, USER_UNKNOWN, CONV_ERR, IGNORE
        *) rm -rf "$tmpdir"; die "self-test of the new $svc stack failed (PAM code $rc: ${out//$'\n'/ }); $file not changed" ;;
    esac
    cp -p "$file" "$backup"
    if ! cp "$tmpdir/$svc" "$file"; then cp -p "$backup" "$file"; rm -f "$backup" "$tmpdir"; die "could not write $file; restored"; fi
    rm -rf "$tmpdir"
    grep -qxF "backup:$backup" "$MANIFEST" 2>/dev/null || echo "backup:$backup" >>"$MANIFEST"
    say "enabled smartotp in $file (backup: $backup; ./install.sh --uninstall restores it)"
}

uninstall() {
    [ "$(id -u)" -eq 0 ] || die "run as root"
    local f
    if [ -f "$MANIFEST" ]; then
        while read -r f; do
            case "$f" in
                backup:*) f=${f#backup:}
                    if [ -e "$f" ]; then cp -p "$f" "${f%.smartotp-backup}" && rm -f "$f" && say "restored ${f%.smartotp-backup}"; fi ;;
                ?*) rm -f "$f" ;;
            esac
        done <"$MANIFEST"
        rm -f "$MANIFEST"
    fi
    rmdir "$CONFDIR" "$PREFIX/lib/smartotp" "$PREFIX/share/doc/smartotp/pam.d" "$PREFIX/share/doc/smartotp" 2>/dev/null || true
    say "uninstalled (records in $STATE are kept; remove them with rm -r $STATE)"
}

main() {
    local do_deps=1 do_install=1 demo=0 enable=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --deps-only) do_install=0 ;;
            --no-deps) do_deps=0 ;;
            --demo) demo=1 ;;
            --enable) [ $# -ge 2 ] || die "--enable needs a service"; enable+=("$2"); shift ;;
            --pam-dir) [ $# -ge 2 ] || die "--pam-dir needs a directory"; PAMDIR=$2; shift ;;
            --uninstall) uninstall; return ;;
            -h|--help) sed -n '2,19p' "$0"; return ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
        shift
    done
    [ "$(id -u)" -eq 0 ] || die "run as root"
    [ "$do_deps" -eq 1 ] && deps
    [ "$do_install" -eq 1 ] || return 0
    build
    install_files
    self_test
    for s in "${enable[@]}"; do enable_service "$s"; done
    if [ "$demo" -eq 1 ]; then "$PREFIX/bin/smartotp" demo; fi
}

main "$@"
