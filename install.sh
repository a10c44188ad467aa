#!/usr/bin/env bash
# install.sh — build and install smartotp on Debian 12, as root.
#
#   ./install.sh                 install the build and runtime packages, build, install,
#                                self-test (a production machine: nothing for tests): the
#                                single host's product (module, helper, CLI, virtual card)
#   ./install.sh --fleet         also the fleet: smartotpd and its unit, and smartotp-fleet
#                                (what a fleet host's module and `smartotp --server` run);
#                                kept by later runs once installed
#   ./install.sh --demo          the same plus the test and demo packages, then run
#                                `smartotp demo` (real PAM logins with the virtual card)
#   ./install.sh --deps-dev      also install the test and demo packages (vsmartcard-vpcd,
#                                openssh-server, pamtester, …) and the smartotp-test service
#   ./install.sh --deps-only     only install the Debian packages
#   ./install.sh --deps-gui      only install the graphical suite's packages (Xvfb,
#                                xscreensaver, LightDM, …): Tests/run-all.sh does
#   ./install.sh --no-deps       skip apt-get (packages already there)
#   ./install.sh --list-packages print the packages these options would install, and stop
#   ./install.sh --enable SVC    also add pam_smartotp to /etc/pam.d/SVC (sudo, sshd, login,
#                                su, …): only after a self-test of the new stack passes, with
#                                a backup (SVC.smartotp-backup) that --uninstall restores
#   ./install.sh --pam-dir DIR   with --enable: edit services in DIR instead of /etc/pam.d
#   ./install.sh --uninstall     remove what this script added (records are kept); refuses
#                                while a PAM service still uses the module
#
# Idempotent: running it again reinstalls the same files. /etc/pam.d/smartotp-auth and
# /etc/smartotp/smartotp.conf are treated as dpkg treats conffiles: an admin's edits are
# kept and the new version is put beside them (FILE.smartotp-new). It never edits an
# existing /etc/pam.d service unless --enable names it.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/private-tmp.sh

# What a production machine needs: the build (from source) and the runtime.
PACKAGES_BUILD=(pkg-config libpam0g-dev libpcsclite-dev libcrypt-dev libqrencode-dev libpq-dev)
PACKAGES_RUN=(pcscd libpcsclite1 libpam0g libpam-runtime libqrencode4)
# Tests, benchmarks and the demo only. Never on a machine that authenticates real users:
# vsmartcard-vpcd is a virtual reader that listens on the network when the system's pcscd
# loads it (anyone who reaches its port can insert a card).
PACKAGES_DEV=(
    libssl-dev vsmartcard-vpcd pamtester oathtool libpam-oath yubikey-manager iproute2 util-linux procps python3
    sudo openssh-server openssh-client python3-pexpect valgrind hyperfine time
    postgresql curl openssl libnss-wrapper gcc
    build-essential dpkg-dev debhelper po-debconf lintian debootstrap
)
# The graphical suite only (62-graphical: a screen locker and a display manager under
# Xvfb, read back from screenshots): Tests/run-all.sh installs them (--deps-gui) when they
# are missing, so the quick start does not download a desktop's worth of libraries.
PACKAGES_GUI=(
    xvfb xauth xdotool imagemagick tesseract-ocr fonts-dejavu-core xscreensaver lightdm lightdm-gtk-greeter dbus
)
PREFIX=/usr/local
STATE=/var/lib/smartotp
CONFDIR=/etc/smartotp
MANIFEST=$CONFDIR/installed-files
CONFFILES=$CONFDIR/conffiles
PAMDIR=/etc/pam.d

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
md5() { md5sum <"$1" | cut -d' ' -f1; }

# Where PAM modules live: the CLI's answer, the one list of candidate directories.
module_dir() { "$BIN/smartotp" check --module-directory || die "cannot tell where PAM modules are installed"; }

# packages DEV [GUI]: the list to install (GUI=1: the graphical suite's alone)
packages() {
    if [ "${2:-0}" -eq 1 ]; then printf '%s\n' "${PACKAGES_GUI[@]}"; return; fi
    printf '%s\n' "${PACKAGES_BUILD[@]}" "${PACKAGES_RUN[@]}"
    [ "$1" -eq 0 ] || printf '%s\n' "${PACKAGES_DEV[@]}"
}

deps() {
    local list
    mapfile -t list < <(packages "$1" "${2:-0}")
    say "installing Debian packages: ${list[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Keep package scripts from starting pcscd or sshd: the tests start their own, on
    # loopback, and refuse to run beside a pcscd they did not start.
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1
    fi
    apt-get install -y -q --no-install-recommends "${list[@]}" || { [ "$added" -eq 0 ] || rm -f "$policy"; die "apt-get install failed"; }
    [ "$added" -eq 0 ] || rm -f "$policy"
    # LightDM is there for 62-graphical, which starts its own on Xvfb: a test machine must
    # not come up with a display manager on its console at the next boot.
    if [ "${2:-0}" -eq 1 ] && [ -d /run/systemd/system ]; then
        systemctl disable --quiet lightdm.service 2>/dev/null || true
    fi
}

# Where build() left the programs: .build-host (the single host's build, without the
# fleet's network libraries) or .build (everything, with --fleet).
BIN=.build-host/release

build() {
    local fleet=$1
    command -v swift >/dev/null || die "no Swift toolchain: swift is not on PATH. The build needs Swift 6.3 for Linux (Debian 12) from swift.org (https://www.swift.org/install/linux/), unpacked and its usr/bin put on PATH; or install the Debian packages built elsewhere (README, \"Install from packages\"), which need no toolchain"
    # (swift-driver leaves a TemporaryDirectory.* behind even for --version.)
    local version
    version=$(with_private_tmp swift --version 2>&1 | head -1)
    case "$version" in
        *"Swift version 6."[3-9]*|*"Swift version 6."[1-9][0-9]*|*"Swift version "[7-9]*) ;;
        *) die "the build needs Swift 6.3 or later from swift.org (Embedded Swift for the module); this is: $version";;
    esac
    if [ "$fleet" -eq 1 ]; then
        say "building (release): the CLIs and the fleet (smartotpd, smartotp-fleet), then the module and the helper in Embedded Swift"
        with_private_tmp swift build -c release
        BIN=.build/release
    else
        # SwiftNIO, BoringSSL, swift-crypto and libpq are the fleet's: a single host
        # builds none of them (Package.swift, SMARTOTP_NO_FLEET).
        say "building (release): the CLI and the virtual card, then the module and the helper in Embedded Swift (the fleet: --fleet)"
        SMARTOTP_NO_FLEET=1 with_private_tmp swift build -c release --scratch-path .build-host
        BIN=.build-host/release
    fi
    scripts/build-embedded.sh
}

remember() { grep -qxF "$1" "$MANIFEST" 2>/dev/null || echo "$1" >>"$MANIFEST"; }

# put SRC DEST MODE: install a file and remember it for --uninstall.
put() {
    install -D -o root -g root -m "$3" "$1" "$2"
    remember "$2"
}

# put_conffile SRC DEST: as dpkg installs a conffile. Replaced only when the admin has
# not changed it since we installed it; otherwise theirs stays and ours goes beside it.
put_conffile() {
    local src=$1 dest=$2 shipped recorded current
    shipped=$(md5 "$src")
    recorded=$(awk -v p="$dest" '$1 == p { print $2 }' "$CONFFILES" 2>/dev/null || true)
    if [ -e "$dest" ]; then
        current=$(md5 "$dest")
        if [ "$current" != "$shipped" ] && [ "$current" != "$recorded" ]; then
            install -o root -g root -m 0644 "$src" "$dest.smartotp-new"
            remember "$dest.smartotp-new"
            say "kept your $dest (changed since it was installed); the new version is $dest.smartotp-new"
            return
        fi
    fi
    put "$src" "$dest" 0644
    rm -f "$dest.smartotp-new"
    { grep -v "^$dest " "$CONFFILES" 2>/dev/null || true; echo "$dest $shipped"; } >"$CONFFILES.new"
    mv "$CONFFILES.new" "$CONFFILES"
}

install_files() {
    local dev=$1 fleet=$2 bin=$BIN ebin=.build-embedded/release moddir
    [ "$(id -u)" -eq 0 ] || die "run as root"
    moddir=$(module_dir)
    install -d -o root -g root -m 0755 "$CONFDIR"
    touch "$MANIFEST"
    # Stripped: the debug info is two thirds of the file and useless in sudo's memory.
    strip --strip-unneeded -o "$ebin/pam_smartotp.stripped.so" "$ebin/libpam_smartotp.so"
    strip -o "$ebin/smartotp-chkotp.stripped" "$ebin/smartotp-chkotp"
    put "$ebin/pam_smartotp.stripped.so" "$moddir/pam_smartotp.so" 0644
    put "$bin/smartotp" "$PREFIX/bin/smartotp" 0755
    put "$bin/smartotp-card" "$PREFIX/bin/smartotp-card" 0755
    # The fleet (--fleet): the client the module runs with server= (its key is root's),
    # and the verifier service with its unit (installed disabled: smartotpd(8)).
    if [ "$fleet" -eq 1 ]; then
        put "$bin/smartotp-fleet" "$PREFIX/sbin/smartotp-fleet" 0755
        put "$bin/smartotpd" "$PREFIX/sbin/smartotpd" 0755
        put dist/smartotpd.service /etc/systemd/system/smartotpd.service 0644
        # The host's certificate renewal (smartotp join, then systemctl enable --now smartotp-renew.timer).
        put dist/smartotp-renew.service /etc/systemd/system/smartotp-renew.service 0644
        put dist/smartotp-renew.timer /etc/systemd/system/smartotp-renew.timer 0644
        # Root's fleet agent (systemctl enable --now smartotp-fleet-agent): logins start no client.
        put dist/smartotp-fleet-agent.service /etc/systemd/system/smartotp-fleet-agent.service 0644
        put dist/grafana-smartotpd.json "$PREFIX/share/doc/smartotp/grafana-smartotpd.json" 0644
        [ -d /run/systemd/system ] && systemctl daemon-reload 2>/dev/null || true
    fi
    put "$bin/pam-harness" "$PREFIX/lib/smartotp/pam-harness" 0755
    put scripts/demo.sh "$PREFIX/lib/smartotp/demo.sh" 0755
    put scripts/virtual-reader.sh "$PREFIX/lib/smartotp/virtual-reader.sh" 0644
    put scripts/answer-prompts.py "$PREFIX/lib/smartotp/answer-prompts.py" 0755
    # setuid root, as unix_chkpwd: checks only the calling user's own record.
    put "$ebin/smartotp-chkotp.stripped" "$PREFIX/sbin/smartotp-chkotp" 4755
    local page
    for page in docs/*.[0-9]; do
        put "$page" "$PREFIX/share/man/man${page##*.}/$(basename "$page")" 0644
    done
    "$bin/smartotp" --generate-completion-script bash >"$bin/smartotp.bash-completion"
    put "$bin/smartotp.bash-completion" /usr/share/bash-completion/completions/smartotp 0644
    put_conffile pam.d/smartotp-auth /etc/pam.d/smartotp-auth
    put_conffile docs/smartotp.conf.example "$CONFDIR/smartotp.conf"
    # A service that runs only pam_smartotp, for pamtester: test and demo machines only.
    if [ "$dev" -eq 1 ]; then
        put pam.d/smartotp-test /etc/pam.d/smartotp-test 0644
    elif grep -qxF /etc/pam.d/smartotp-test "$MANIFEST"; then
        # Installed by an earlier --demo or --deps-dev: a production install has none.
        rm -f /etc/pam.d/smartotp-test
        sed -i '\#^/etc/pam.d/smartotp-test$#d' "$MANIFEST"
        say "removed the test service /etc/pam.d/smartotp-test (installed for tests; --deps-dev keeps it)"
    fi
    local f
    for f in pam.d/examples/* docs/operations.md docs/fleet.md docs/rollout.md docs/smartotpd.conf.example LICENSE NOTICE; do
        put "$f" "$PREFIX/share/doc/smartotp/$(basename "$f")" 0644
    done
    put pam.d/pam-configs/smartotp /usr/share/pam-configs/smartotp 0644
    install -d -o root -g root -m 0700 "$STATE" "$STATE/users" "$STATE/locks"
    local fleetsay="fleet: not installed (./install.sh --fleet)"
    [ "$fleet" -eq 1 ] && fleetsay="fleet: $PREFIX/sbin/smartotpd, smartotp-fleet"
    say "module: $moddir/pam_smartotp.so; CLIs: $PREFIX/bin/smartotp, smartotp-card; $fleetsay; records: $STATE (0700)"
}

self_test() {
    # The installed module loads and answers through a real PAM stack, run from a private
    # directory: a user without a record is PAM_USER_UNKNOWN (10).
    local out rc dir
    dir=$(mktemp -d)
    echo "auth required pam_smartotp.so" >"$dir/smartotp-selftest"
    set +e
    out=$("$PREFIX/lib/smartotp/pam-harness" --confdir "$dir" --service smartotp-selftest --user smartotp-selftest-nobody 2>&1)
    rc=$?
    set -e
    rm -rf "$dir"
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
    #    The user: a system account the name service knows (the module refuses names it
    #    does not) and that has no record.
    local snippet=$PAMDIR/smartotp-auth unenrolled=""
    [ -f "$snippet" ] || snippet=/etc/pam.d/smartotp-auth
    for u in nobody daemon bin sys; do
        getent passwd "$u" >/dev/null && [ ! -e "$STATE/users/$u" ] && { unenrolled=$u; break; }
    done
    [ -n "$unenrolled" ] || die "--enable: no system account without a record to self-test with (nobody, daemon, bin, sys)"
    { grep -v '^@include' "$snippet"; echo "auth required pam_permit.so"; } >"$tmpdir/smartotp-selftest"
    set +e
    out=$("$harness" --confdir "$tmpdir" --service smartotp-selftest --user "$unenrolled" --conv-fail 2>&1)
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
    # What we wrote, so that --uninstall restores the backup only if nobody changed it since.
    remember "enabled:$file:$(md5 "$file")"
    say "enabled smartotp in $file (backup: $backup; ./install.sh --uninstall restores it)"
}

# uses_smartotp DIR FILE: whether FILE's stack runs the installed pam_smartotp (by its name,
# which PAM looks up in its module directory, or by a path there), following @include,
# include and substack as Linux-PAM does (at most 16 deep). A stack that loads a copy from
# elsewhere (a build tree's libpam_smartotp.so, a test's) does not lose it with --uninstall.
uses_smartotp() {
    local dir=$1 f=$2 depth=${3:-0} type control module rest
    [ "$depth" -lt 16 ] || return 1
    case "$f" in /*) ;; *) f="$dir/$f" ;; esac
    [ -f "$f" ] || return 1
    grep -qE '^[^#]*(^|[[:space:]]|\])([^[:space:]#]*/security/)?pam_smartotp\.so([[:space:]]|$)' "$f" && return 0
    while read -r type control module rest; do
        if [ "$type" = "@include" ]; then uses_smartotp "$dir" "$control" $((depth + 1)) && return 0; continue; fi
        case "$control" in include|substack) uses_smartotp "$dir" "$module" $((depth + 1)) && return 0 ;; esac
    done <"$f"
    return 1
}

# The PAM files (in /etc/pam.d and every directory --enable worked in) that still use the
# module, but for our own snippet and test service, which go with it.
module_users() {
    local dirs=("/etc/pam.d") d f
    while read -r d; do dirs+=("${d#pamdir:}"); done < <(grep '^pamdir:' "$MANIFEST" 2>/dev/null || true)
    for d in "${dirs[@]}"; do
        for f in "$d"/*; do
            case "$(basename "$f")" in smartotp-auth|smartotp-test|*.smartotp-backup|*.smartotp-new|*.dpkg-*) continue ;; esac
            if uses_smartotp "$d" "$(basename "$f")"; then echo "$f"; fi
        done
    done | sort -u
}

uninstall() {
    [ "$(id -u)" -eq 0 ] || die "run as root"
    local entry f sum users
    # 1. The profile pam-auth-update may have put in common-auth and its siblings (only where
    #    it did: pam-auth-update is a debconf client and fails while another holds debconf).
    if [ -e /usr/share/pam-configs/smartotp ] && command -v pam-auth-update >/dev/null &&
       grep -qsE '^[^#]*pam_smartotp\.so' "$PAMDIR"/common-*; then
        DEBIAN_FRONTEND=noninteractive pam-auth-update --package --remove smartotp || die "pam-auth-update --remove smartotp failed"
    fi
    # 2. Services --enable changed: the backup if the file is as we left it, else only our line.
    if [ -f "$MANIFEST" ]; then
        while read -r entry; do
            case "$entry" in
                enabled:*)
                    f=${entry#enabled:}; sum=${f##*:}; f=${f%:*}
                    [ -e "$f" ] || continue
                    if [ "$(md5 "$f")" = "$sum" ] && [ -e "$f.smartotp-backup" ]; then
                        cp -p "$f.smartotp-backup" "$f" && rm -f "$f.smartotp-backup" && say "restored $f"
                    else
                        sed -i '/^@include smartotp-auth$/d' "$f"
                        say "$f changed since --enable: removed only its '@include smartotp-auth' line (backup kept: $f.smartotp-backup)"
                    fi ;;
                backup:*)   # written by earlier versions
                    f=${entry#backup:}
                    if [ -e "$f" ]; then cp -p "$f" "${f%.smartotp-backup}" && rm -f "$f" && say "restored ${f%.smartotp-backup}"; fi ;;
            esac
        done <"$MANIFEST"
        sed -i '/^enabled:/d; /^backup:/d' "$MANIFEST"
    fi
    # 3. Removing the module under a stack that still loads it locks everyone out of it.
    users=$(module_users)
    if [ -n "$users" ]; then
        die "pam_smartotp is still used by: $(echo $users) — remove it from there first (pam_smartotp.so or @include smartotp-auth lines); nothing else was removed"
    fi
    # 4. The verifier service and the fleet agent, if an admin started them from our units.
    for unit in smartotpd.service smartotp-fleet-agent.service; do
        if [ -d /run/systemd/system ] && [ -e "/etc/systemd/system/$unit" ]; then
            systemctl disable --now "$unit" 2>/dev/null || true
        fi
    done
    # 5. The files. A conffile the admin changed stays.
    if [ -f "$MANIFEST" ]; then
        while read -r f; do
            case "$f" in pamdir:*|"") continue ;; esac
            sum=$(awk -v p="$f" '$1 == p { print $2 }' "$CONFFILES" 2>/dev/null || true)
            if [ -n "$sum" ] && [ -e "$f" ] && [ "$(md5 "$f")" != "$sum" ]; then
                say "kept $f: changed since it was installed"
                continue
            fi
            if [ -d "$f" ]; then say "skipped $f: a directory where a file was installed"; continue; fi
            rm -f -- "$f" || say "could not remove $f"
        done <"$MANIFEST"
        rm -f "$MANIFEST" "$CONFFILES"
    fi
    rmdir "$CONFDIR" "$PREFIX/lib/smartotp" "$PREFIX/share/doc/smartotp" 2>/dev/null || true
    [ -d /run/systemd/system ] && systemctl daemon-reload 2>/dev/null || true
    say "uninstalled (records in $STATE are kept; remove them with rm -r $STATE)"
}

main() {
    local do_deps=1 do_install=1 demo=0 dev=0 gui=0 list=0 fleet=0 enable=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --deps-only) do_install=0 ;;
            --no-deps) do_deps=0 ;;
            --deps-dev) dev=1 ;;
            --deps-gui) gui=1; do_install=0 ;;
            --demo) demo=1; dev=1 ;;
            --fleet) fleet=1 ;;
            --list-packages) list=1 ;;
            --enable) [ $# -ge 2 ] || die "--enable needs a service"; enable+=("$2"); shift ;;
            --pam-dir) [ $# -ge 2 ] || die "--pam-dir needs a directory"; PAMDIR=$2; shift ;;
            --uninstall) uninstall; return ;;
            -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; return ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
        shift
    done
    if [ "$list" -eq 1 ]; then packages "$dev" "$gui"; return; fi
    [ "$(id -u)" -eq 0 ] || die "run as root"
    [ "$do_deps" -eq 1 ] && deps "$dev" "$gui"
    [ "$do_install" -eq 1 ] || return 0
    # Once installed, the fleet's programs are rebuilt with the rest: never left behind
    # at an older version.
    grep -qxF "$PREFIX/sbin/smartotp-fleet" "$MANIFEST" 2>/dev/null && fleet=1
    build "$fleet"
    install_files "$dev" "$fleet"
    self_test
    if [ "$PAMDIR" != /etc/pam.d ] && [ ${#enable[@]} -gt 0 ]; then remember "pamdir:$PAMDIR"; fi
    for s in "${enable[@]}"; do enable_service "$s"; done
    if [ "$demo" -eq 1 ]; then "$PREFIX/bin/smartotp" demo; fi
}

main "$@"
