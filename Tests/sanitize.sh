#!/usr/bin/env bash
# Tests/sanitize.sh [address|thread|undefined …] — the unit tests under the sanitizers,
# each in its own build folder (.build-asan, .build-tsan, .build-ubsan). Default: address
# and thread. Exit 1 if any run reports a problem.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/private-tmp.sh
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(address thread)
status=0
for k in "${kinds[@]}"; do
    case "$k" in address) dir=.build-asan ;; thread) dir=.build-tsan ;; undefined) dir=.build-ubsan ;; *) echo "unknown sanitizer $k"; exit 2 ;; esac
    echo "== swift test --sanitize=$k"
    mkdir -p "$dir"
    # The Swift backtracer and ASan both want the crash; let the sanitizer report it.
    # Without the fleet's network side (SMARTOTP_NO_FLEET, see Package.swift): not under test here.
    if SMARTOTP_NO_FLEET=1 LSAN_OPTIONS="suppressions=$PWD/Tests/lsan.supp:print_suppressions=0" SWIFT_BACKTRACE=enable=no with_private_tmp swift test --sanitize="$k" --scratch-path "$dir" 2>&1 | tee "$dir/sanitize.log" | grep -E "^(✔|✘) Test run|SUMMARY|ERROR: (Address|Thread)Sanitizer|WARNING: ThreadSanitizer"; then :; fi
    if grep -qE "✘ Test run|ERROR: AddressSanitizer|WARNING: ThreadSanitizer|SUMMARY: (Address|Thread|UndefinedBehavior)Sanitizer" "$dir/sanitize.log" \
       || ! grep -q "✔ Test run" "$dir/sanitize.log"; then
        echo "not ok - unit tests under the $k sanitizer (see $dir/sanitize.log)"
        status=1
    else
        echo "ok - unit tests under the $k sanitizer"
    fi
done
exit $status
