#!/usr/bin/env bash
# Runs every test: the Swift unit tests, then the integration suites in
# Tests/Integration (real pcscd, real PAM, real programs), and prints one summary line.
# Needs root for the integration suites (they start pcscd and write PAM stacks).
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0 failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

echo "== swift build (release: the CLIs, the harness, the virtual card)"
swift build -c release
echo "== scripts/build-embedded.sh (the module and the helper the integration tests load)"
scripts/build-embedded.sh

echo "== swift test (unit tests)"
if swift test 2>&1 | tee "$log/unit.txt"; then unit=ok; else unit=fail; fi
# One line per test; the closing "Test run with N tests" line is not a test.
n_pass=$(grep -E '^✔ Test ' "$log/unit.txt" | grep -vc '^✔ Test run with' || true)
n_fail=$(grep -E '^✘ Test ' "$log/unit.txt" | grep -vc '^✘ Test run with' || true)
passed=$((passed + n_pass)); failed=$((failed + n_fail))
[ "$unit" = ok ] || [ "$n_fail" -gt 0 ] || failed=$((failed + 1))

for suite in Tests/Integration/*.sh; do
    [ -e "$suite" ] || continue
    echo "== $suite"
    if bash "$suite" 2>&1 | tee "$log/suite.txt"; then
        n_pass=$(grep -cE '^ok ' "$log/suite.txt" || true)
        n_fail=$(grep -cE '^not ok ' "$log/suite.txt" || true)
    else
        n_pass=$(grep -cE '^ok ' "$log/suite.txt" || true)
        n_fail=$(grep -cE '^not ok ' "$log/suite.txt" || true)
        [ "$n_fail" -gt 0 ] || n_fail=1
    fi
    passed=$((passed + n_pass)); failed=$((failed + n_fail))
done

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
