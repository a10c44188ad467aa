#!/usr/bin/env bash
# The shared object as sshd and sudo get it (Embedded Swift): only pam_sm_* exported, no
# Swift runtime, Foundation or libstdc++ needed, every symbol resolved (-z defs), loadable
# and unloadable by a plain C loader; and nothing of the Swift runtime's environment
# handling or signal handlers carried into the host.
source "$(dirname "$0")/lib/testlib.sh"

[ -f "$SO" ] || die "build first: scripts/build-embedded.sh"

exported=$(nm -D --defined-only "$SO" | awk '$2 ~ /^[A-Z]$/ {print $3}' | sort | tr '\n' ' ')
check "exports exactly pam_sm_acct_mgmt pam_sm_authenticate pam_sm_setcred" \
    "pam_sm_acct_mgmt pam_sm_authenticate pam_sm_setcred " "$exported"

needed=$(readelf -d "$SO" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
check "needs only libc and libpam: no Swift runtime, no libstdc++; libpcsclite and libcrypt are opened when first used" \
    "libc.so.6 libpam.so.0 " "$needed"
check "the helper needs only libc" "libc.so.6 " "$(readelf -d "$HELPER" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')"
check "every symbol resolves (ldd -r: nothing undefined)" 0 "$(ldd -r "$SO" 2>&1 | grep -c 'undefined symbol')"
# libpam opens modules with RTLD_NOW: every imported function is looked up at every load of
# every sudo and sshd (~0.7-1 K instructions each). The list is closed: a new import must be
# added here on purpose (README, Benchmarks; CONTRIBUTING "The module's imports").
allowed="__errno_location __stack_chk_fail clock_gettime close dlclose dlopen dlsym
explicit_bzero fchmod fchown flock free fstat fsync geteuid getpwnam_r lstat memcmp memmove
memset open pam_get_item pam_get_user posix_memalign pthread_once read rename strlen
syslog unlink write"
imports=$(nm -D --undefined-only "$SO" | awk '{print $2}' | sed 's/@.*//' | sort -u)
extra=$(comm -23 <(echo "$imports") <(echo "$allowed" | tr ' ' '\n' | sort -u) | tr '\n' ' ')
check "imports only the $(echo "$allowed" | wc -w) libc and libpam functions on the list (no C start files)" "" "$extra"
# Names, ids and protocol words are compared as bytes (OTPCore's String.equals): String's ==
# would link Unicode's normalisation tables, a seventh of the module.
for f in "$SO" "$HELPER"; do
    check "$(basename "$f") links no Unicode normalisation (no String ==, no String-keyed switch)" \
        0 "$(nm "$f" | grep -cE 'nfd_decomp|normData|_stringCompareInternal|_findStringSwitchCase')"
done
# As installed (stripped: the debug info records the compiler's -D flags, not code).
for f in "$SO" "$HELPER"; do
    strip --strip-unneeded -o "$WORK/stripped" "$f"
    check "$(basename "$f") holds no SWIFT_* environment name (no backtracer, no debug switches)" \
        0 "$(strings "$WORK/stripped" | grep -c 'SWIFT_')"
done

# A host that loads the module, logs in through it (NULL handle: PAM_SERVICE_ERR), and
# reports its caught signals before and after; then, with SWIFT_BACKTRACE naming a program,
# crashes: nothing may run.
marker="$WORK/backtracer-ran"
printf '#!/bin/sh\ntouch %s\n' "$marker" >"$WORK/fake-backtrace"
chmod 755 "$WORK/fake-backtrace"
out=$(SWIFT_BACKTRACE="enable=yes,swift-backtrace=$WORK/fake-backtrace" python3 - "$SO" <<'PY'
import ctypes, os, signal, sys
def caught():
    return [l.split()[1] for l in open("/proc/self/status") if l.startswith("SigCgt:")][0]
before = caught()
lib = ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_LOCAL)
print(lib.pam_sm_authenticate(None, 0, 0, None), lib.pam_sm_acct_mgmt(None, 0, 0, None))
print("same" if caught() == before else "changed %s -> %s" % (before, caught()))
# Unload (no RTLD_NODELETE, nothing pinning it: its mapping is gone) and load again: it
# answers as the first time.
ctypes.CDLL("libc.so.6").dlclose(ctypes.c_void_p(lib._handle))
mapped = any(os.path.realpath(sys.argv[1]) in l for l in open("/proc/self/maps"))
lib = ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_LOCAL)
print("still mapped" if mapped else "unloaded", lib.pam_sm_authenticate(None, 0, 0, None))
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGSEGV)
PY
)
check "dlopen from a plain C loader; NULL handle gives PAM_SERVICE_ERR" "3 3" "$(echo "$out" | sed -n 1p)"
check "the module leaves the host's signal handlers as they were (SigCgt)" "same" "$(echo "$out" | sed -n 2p)"
check "unloaded (its mapping gone) and loaded again, it answers as the first time" "unloaded 3" "$(echo "$out" | sed -n 3p)"
sleep 0.2
[ -e "$marker" ] && not_ok "a crash of the host runs nothing named by SWIFT_BACKTRACE" || ok "a crash of the host runs nothing named by SWIFT_BACKTRACE"

echo "# module: $(stat -c %s "$SO") bytes as built, $(strip --strip-unneeded -o "$WORK/m.so" "$SO" && stat -c %s "$WORK/m.so") stripped"
finish
