#!/usr/bin/env bash
# The libFuzzer targets (Fuzz/run.sh), each for FUZZ_SECONDS (default 15) from its seed
# corpus, with AddressSanitizer: no crash, no trap, no leak, no hang.
source "$(dirname "$0")/lib/testlib.sh"
for t in apdu record args uri; do
    if out=$("$ROOT/Fuzz/run.sh" "${FUZZ_SECONDS:-15}" "$t" 2>&1); then
        ok "fuzz-$t: $(echo "$out" | grep -oE '[0-9]+ runs' | head -1), no crash"
    else
        not_ok "fuzz-$t" "$(echo "$out" | grep -E 'Fatal|SUMMARY|ERROR|error:' | head -3 | tr '\n' '|')"
    fi
done
finish
