#!/usr/bin/env bash
# Runs every test: the Swift unit tests, then the integration suites in
# Tests/Integration (real pcscd, real PAM, real programs), and prints one summary line.
# Needs root for the integration suites (they start pcscd and write PAM stacks).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/private-tmp.sh

passed=0 failed=0 skipped=0
log=$(mktemp -d)
# A temporary folder of the run's own, the TMPDIR of everything the run starts: the last
# check looks at what the run's own processes left there, not at the machine's /tmp (where
# other programs write meanwhile). The toolchain's own leftovers are kept out by
# with_private_tmp; the suites' folders (testlib's WORK) live here too. Traversable (0711):
# the postgres user reaches the fleet suites' clusters below it.
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/smartotp-run.XXXXXX")
chmod 711 "$run_tmp"
trap 'rm -rf "$log" "$run_tmp"' EXIT
export TMPDIR=$run_tmp

# What each step costs, printed at the end (CI keeps the whole run under 40 minutes).
times=()
mark=$SECONDS
took() { times+=("$(printf '%5d s  %s' $((SECONDS - mark)) "$1")"); mark=$SECONDS; }

# The graphical suite's packages (Xvfb, xscreensaver, LightDM, …): not in the quick
# start's list, installed here when one is missing.
missing=$(./install.sh --list-packages --deps-gui | while read -r p; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "== ./install.sh --deps-gui (missing: $(echo $missing))"
    ./install.sh --deps-gui
    took "the graphical suite's packages"
fi

echo "== swift build (release: the CLIs, the harness, the virtual card)"
with_private_tmp swift build -c release
echo "== scripts/build-embedded.sh (the module and the helper the integration tests load)"
scripts/build-embedded.sh
took "build (release and Embedded)"

echo "== swift test (unit tests)"
if with_private_tmp swift test 2>&1 | tee "$log/unit.txt"; then unit=ok; else unit=fail; fi
# The closing "Test run with N tests in M suites passed|failed …" line is the count (the
# per-test lines are not: one CI log held 79 "✔ Test" lines for 184 tests that all ran);
# the failed ones are the "✘ Test" lines. XCTest's "Executed N tests, with K failures"
# adds its own (none today).
n_run=$(sed -n 's/^.* Test run with \([0-9]*\) tests\{0,1\} in .*/\1/p' "$log/unit.txt" | tail -1)
n_fail=$(grep -E '^✘ Test ' "$log/unit.txt" | grep -vc 'Test run with' || true)
read -r x_run x_fail < <(sed -n 's/^[[:space:]]*Executed \([0-9]*\) tests\{0,1\}, with \([0-9]*\) failures.*/\1 \2/p' "$log/unit.txt" | tail -1; echo)
# A skipped test ("Test name() skipped: why", e.g. PostgreSQL's suite without root) is in
# the run's count but is no pass.
n_skip=$(grep -cE 'Test [^ ]+\(.*\) skipped' "$log/unit.txt" || true)
grep -E 'Test [^ ]+\(.*\) skipped' "$log/unit.txt" | sed 's/^[^T]*/unit tests: /' >>"$log/skips.txt" || true
n_pass=$(( ${n_run:-0} - n_fail - n_skip + ${x_run:-0} - ${x_fail:-0} ))
n_fail=$(( n_fail + ${x_fail:-0} ))
passed=$((passed + n_pass)); failed=$((failed + n_fail)); skipped=$((skipped + n_skip))
[ "$unit" = ok ] || [ "$n_fail" -gt 0 ] || failed=$((failed + 1))
took "unit tests"

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
    n_skip=$(grep -cE '^skip ' "$log/suite.txt" || true)
    grep -E '^skip ' "$log/suite.txt" | sed "s|^skip - |$(basename "$suite"): |" >>"$log/skips.txt" || true
    passed=$((passed + n_pass)); failed=$((failed + n_fail)); skipped=$((skipped + n_skip))
    took "$(basename "$suite")"
done

echo "== the run's temporary folder ($run_tmp) after the run"
left=$(ls -A "$run_tmp" | tr '\n' ' ')
if [ -z "$left" ]; then
    echo "ok - the run's processes leave nothing in their temporary folder"; passed=$((passed + 1))
else
    echo "not ok - the run's processes leave nothing in their temporary folder: $left"; failed=$((failed + 1))
fi

echo
echo "== what each step took ($SECONDS s in all)"
printf '%s\n' "${times[@]}"
echo
[ "$skipped" -eq 0 ] || { echo "skipped (could not run here; counted as neither passed nor failed):"; sed 's/^/  /' "$log/skips.txt"; }
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
