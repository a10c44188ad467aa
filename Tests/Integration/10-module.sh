#!/usr/bin/env bash
# The shared object: only pam_sm_* exported, no Swift/Foundation libraries needed,
# loadable by a plain C loader (Python ctypes' dlopen), -z nodelete set.
source "$(dirname "$0")/lib/testlib.sh"

[ -f "$SO" ] || die "build first: swift build -c release"

exported=$(nm -D --defined-only "$SO" | awk '$2 ~ /^[A-Z]$/ {print $3}' | sort | tr '\n' ' ')
check "exports exactly pam_sm_acct_mgmt pam_sm_authenticate pam_sm_setcred" \
    "pam_sm_acct_mgmt pam_sm_authenticate pam_sm_setcred " "$exported"

if ldd "$SO" | grep -qiE 'swift|foundation|dispatch|XCTest'; then
    not_ok "no Swift runtime or Foundation library is needed" "$(ldd "$SO" | grep -iE 'swift|foundation|dispatch')"
else
    ok "no Swift runtime or Foundation library is needed"
fi

if readelf -d "$SO" | grep -q 'NODELETE'; then ok "linked with -z nodelete"; else not_ok "linked with -z nodelete"; fi

out=$(python3 - "$SO" <<'PY'
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_LOCAL)
f = lib.pam_sm_authenticate
f.restype = ctypes.c_int
# A NULL handle must give PAM_SERVICE_ERR (3), never a crash.
print(f(None, 0, 0, None))
print(lib.pam_sm_acct_mgmt(None, 0, 0, None))
PY
)
check "dlopen from a plain C loader; NULL handle gives PAM_SERVICE_ERR" "3 3" "$(echo $out)"

size=$(stat -c %s "$SO")
echo "# module size: $size bytes"
finish
