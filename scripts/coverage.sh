#!/usr/bin/env bash
# scripts/coverage.sh [FOLDER…] — the unit tests with code coverage (their own build folder,
# .build-cov), then the line coverage of each source folder named (default: the service
# library and the ledger: Sources/SmartOTPService Sources/SmartOTPPostgres), and of all of
# them together. The PostgreSQL tests need root (they start a cluster of their own).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/private-tmp.sh
folders=("$@")
# The toolchain's own llvm tools: the profile format is the compiler's (Debian's llvm-14 is older).
tools=$(dirname "$(readlink -f "$(command -v swift)")")
[ ${#folders[@]} -gt 0 ] || folders=(Sources/SmartOTPService Sources/SmartOTPPostgres)
with_private_tmp swift build --build-tests --enable-code-coverage --scratch-path .build-cov 2>&1 | grep -E "error|warning: |Build complete" || true
bin=.build-cov/debug/smartotpPackageTests.xctest
[ -x "$bin" ] || { echo "coverage: no test binary at $bin"; exit 1; }
rm -f .build-cov/*.profraw
LLVM_PROFILE_FILE="$PWD/.build-cov/%p.profraw" "$bin" --testing-library swift-testing >.build-cov/tests.log 2>&1 ||
    { tail -20 .build-cov/tests.log; echo "coverage: the tests failed"; exit 1; }
grep -E "Test run with" .build-cov/tests.log | tail -1
"$tools/llvm-profdata" merge -sparse .build-cov/*.profraw -o .build-cov/tests.profdata
total_lines=0 total_covered=0
for f in "${folders[@]}"; do
    read -r lines missed < <("$tools/llvm-cov" report "$bin" -instr-profile .build-cov/tests.profdata "$PWD/$f" 2>/dev/null |
        awk '$1 == "TOTAL" { print $8, $9 }')
    covered=$((lines - missed))
    total_lines=$((total_lines + lines)); total_covered=$((total_covered + covered))
    printf '%-32s %5d of %5d lines  %5.1f %%\n' "$f" "$covered" "$lines" "$(echo "100 * $covered / $lines" | bc -l)"
done
printf '%-32s %5d of %5d lines  %5.1f %%\n' "together" "$total_covered" "$total_lines" "$(echo "100 * $total_covered / $total_lines" | bc -l)"
