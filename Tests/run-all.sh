#!/usr/bin/env bash
# Runs every test: the Swift unit tests, then the integration suites in
# Tests/Integration (real pcscd, real PAM, real programs), and prints one summary line.
# Needs root for the integration suites (they start pcscd and write PAM stacks).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/private-tmp.sh

passed=0 failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
# What is in the temporary folder before: a test that leaves something there is a failure
# (the toolchain's own leftovers are kept out by with_private_tmp).
tmp_root=${TMPDIR:-/tmp}
ls -A "$tmp_root" | sort >"$log/tmp-before"

echo "== swift build (release: the CLIs, the harness, the virtual card)"
with_private_tmp swift build -c release
echo "== scripts/build-embedded.sh (the module and the helper the integration tests load)"
scripts/build-embedded.sh

echo "== swift test (unit tests)"
if with_private_tmp swift test 2>&1 | tee "$log/unit.txt"; then unit=ok; else unit=fail; fi
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

echo "== $tmp_root after the run"
left=$(ls -A "$tmp_root" | sort | comm -13 "$log/tmp-before" - | tr '\n' ' ')
if [ -z "$left" ]; then
    echo "ok - the run leaves nothing new in $tmp_root"; passed=$((passed + 1))
else
    echo "not ok - the run leaves nothing new in $tmp_root: $left"; failed=$((failed + 1))
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
