#!/usr/bin/env bash
# Lint: no trapping construct in any target the PAM module or the setuid helper links,
# no Foundation there, and messages built through msg().
# sshd and sudo load the module; a trap there kills them. Looks for try!, as!, force
# unwraps, fatalError, precondition, assert, unowned, and implicitly unwrapped optionals.
source "$(dirname "$0")/lib/testlib.sh"

TARGETS=(POSIX OTPCore SmartCard PCSC TokenStore Verifier SmartOTPAuth SmartOTPSystem PamSmartOTP smartotp-chkotp)
patterns=(
    'try!'                          # try! traps on error
    'as!'                           # as! traps on a failed cast
    'fatalError\('                  # traps
    'precondition(Failure)?\('      # traps
    '(^|[^a-zA-Z_])assert(ionFailure)?\('  # traps in debug builds
    '[])a-zA-Z0-9_]!([^=]|$)'       # a force unwrap x! / f()! / a[i]! (not !=)
    ':[[:space:]]*[A-Z][A-Za-z0-9_<>]*!([^=]|$)'   # implicitly unwrapped optional type
    'unowned'                       # traps when the object is gone
)
for t in "${TARGETS[@]}"; do
    hits=""
    for p in "${patterns[@]}"; do
        # Comments and string literals are not code: drop // comments and "…" first.
        found=$(grep -rnE "$p" "$ROOT/Sources/$t" --include='*.swift' \
            | sed -E 's#//.*$##' | sed -E 's/"([^"\\]|\\.)*"//g' | grep -E "$p" || true)
        [ -n "$found" ] && hits+="$found"$'\n'
    done
    if [ -z "$hits" ]; then ok "no trapping construct in Sources/$t"; else not_ok "no trapping construct in Sources/$t" "$(echo "$hits" | head -5 | tr '\n' '|')"; fi
done
# Foundation stays out of everything the module links.
for t in "${TARGETS[@]}"; do
    if grep -rqE '^\s*(@_exported |internal |public )?import (Foundation|FoundationEssentials)' "$ROOT/Sources/$t"; then
        not_ok "no Foundation in Sources/$t"
    else
        ok "no Foundation in Sources/$t"
    fi
done
# Messages in the module go through msg() (OTPCore's Message), not plain interpolation,
# which Embedded Swift expands at every use (POSIX sits below OTPCore and keeps its two).
for t in "${TARGETS[@]}"; do
    [ "$t" = POSIX ] && continue
    if hits=$(python3 "$ROOT/Tests/Integration/lib/plain-interpolation.py" $(find "$ROOT/Sources/$t" -name '*.swift')); then
        ok "messages through msg() in Sources/$t"
    else
        not_ok "messages through msg() in Sources/$t" "$(echo "$hits" | head -3 | tr '\n' '|')"
    fi
done
# One version: debian/changelog's top entry names the release Version.swift names.
if out=$(cd "$ROOT" && scripts/version.sh --check "$(dpkg-parsechangelog -l debian/changelog -SVersion)" 2>&1); then
    ok "debian/changelog and Version.swift name the same version"
else
    not_ok "debian/changelog and Version.swift name the same version" "$out"
fi
# CONTRIBUTING's map of targets names every target of Package.swift.
targets=$(tr '\n' ' ' <"$ROOT/Package.swift" | grep -oE '\.(target|executableTarget|testTarget|systemLibrary)\( *name: "[^"]+"' | sed 's/.*"\(.*\)"/\1/' | sort -u)
map=$(sed -n '/^### The map of targets/,/^## /p' "$ROOT/CONTRIBUTING.md")
unmapped=""
for t in $targets; do grep -qF "\`$t\`" <<<"$map" || unmapped="$unmapped $t"; done
check "CONTRIBUTING's map of targets names every target in Package.swift ($(echo $targets | wc -w))" "" "$unmapped"
# LeakSanitizer drops a leak when any frame of its stack matches a suppression: an entry
# naming a whole library (libswift_Testing.so is on every test's stack) would hide every leak.
check "Tests/lsan.supp names functions, never a whole library" "" "$(grep -E '^leak:.*\.so' "$ROOT/Tests/lsan.supp")"
# README's layout table names every folder of Sources/ (C targets under `Sources/C*`).
layout=$(sed -n '/^## Layout/,/^## /p' "$ROOT/README.md")
unlisted=""
for d in "$ROOT"/Sources/*/; do
    t=$(basename "$d")
    grep -qF "\`Sources/$t\`" <<<"$layout" || { [[ $t == C* ]] && grep -qF '`Sources/C*`' <<<"$layout"; } || unlisted="$unlisted $t"
done
check "README's layout table names every folder of Sources/" "" "$unlisted"
# Every target declares in Package.swift each target it imports: SwiftPM would find one a
# dependency brings along, and the build order (and what links what) would rest on that.
undeclared=$(python3 - "$ROOT" <<'PY'
import glob, re, sys
root = sys.argv[1]
pkg = open(root + "/Package.swift").read()
found = []
for m in re.finditer(r'\.(?:target|executableTarget|testTarget)\(\s*name:\s*"([^"]+)"\s*,\s*dependencies:\s*\[(.*?)\]\s*[,)]', pkg, re.S):
    name, deps = m.group(1), set(re.findall(r'"([^"]+)"', m.group(2)))
    folder = ("Tests/" if name.endswith("Tests") else "Sources/") + name
    imports = set()
    for f in glob.glob(root + "/" + folder + "/**/*.swift", recursive=True):
        for line in open(f):
            i = re.match(r'^(?:@_implementationOnly |@testable |internal |public |private )*import (?:(?:typealias|struct|class|enum|protocol|let|var|func) )?(\w+)', line)
            if i: imports.add(i.group(1))
    system = {"Glibc", "Foundation", "FoundationEssentials", "Synchronization", "Dispatch", "Testing", "XCTest", "_Concurrency"}
    # A module a package builds without a product of its own, declared through the product
    # that brings it: swift-nio-ssl's BoringSSL (FleetNet's blocking client) comes with NIOSSL.
    brought = {"CNIOBoringSSL": "NIOSSL"}
    for i in sorted(imports - deps - system):
        if brought.get(i) not in deps: found.append(name + " imports " + i)
print(" ".join(found))
PY
)
check "every target declares in Package.swift each target it imports" "" "$undeclared"
# The Grafana dashboard (dist/) is JSON and asks only for metrics smartotpd exports.
missing=$(python3 - "$ROOT/dist/grafana-smartotpd.json" "$ROOT"/Sources/smartotpd/*.swift "$ROOT"/Sources/SmartOTPService/*.swift <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
code = "".join(open(f).read() for f in sys.argv[2:])
names = {re.sub(r"_(bucket|sum|count)$", "", m) for p in d["panels"] for t in p["targets"] for m in re.findall(r"smartotpd_[a-z_]+", t["expr"])}
print(" ".join(sorted(n for n in names if '"%s"' % n not in code)))
PY
) && check "dist/grafana-smartotpd.json parses and names only metrics smartotpd exports" "" "$missing" || not_ok "dist/grafana-smartotpd.json parses" "$missing"
# The licence: Apache-2.0 in LICENSE, NOTICE, debian/copyright's Files: * and README.
lic=""
head -3 "$ROOT/LICENSE" 2>/dev/null | grep -q "Apache License" && grep -q "Version 2.0, January 2004" "$ROOT/LICENSE" || lic="$lic LICENSE"
grep -q "Apache License, Version 2.0" "$ROOT/NOTICE" 2>/dev/null || lic="$lic NOTICE"
awk '/^Files: \*$/{f=1; next} f && /^License:/{print $2; exit}' "$ROOT/debian/copyright" | grep -qx "Apache-2.0" || lic="$lic debian/copyright"
grep -q "^## Licence" "$ROOT/README.md" || lic="$lic README"
check "the licence is Apache-2.0: LICENSE, NOTICE, debian/copyright (DEP-5) and README say so" "" "$lic"
finish
