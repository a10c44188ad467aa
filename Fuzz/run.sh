#!/usr/bin/env bash
# Fuzz/run.sh [SECONDS] [TARGET…] — build the libFuzzer targets with AddressSanitizer and
# run each for SECONDS (default 60) from its committed seed corpus. Exit 1 on any crash,
# leak, trap or hang (a crash input is kept in Fuzz/crashes/).
#
# Targets: apdu (TLV, APDUs, YKOATH answers, the applet), record (records, user names,
# importers), args (module arguments, typed codes), uri (otpauth URIs, Base32, hex).
# The modules are compiled here with swiftc -sanitize=fuzzer,address (SwiftPM cannot
# build a binary whose main is libFuzzer's alongside the normal targets).
set -euo pipefail
cd "$(dirname "$0")"
source ../scripts/private-tmp.sh
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(apdu record args uri)
SRC=../Sources
B=../.build-fuzz
mkdir -p "$B" crashes
FLAGS=(-parse-as-library -sanitize=fuzzer,address -O -g -I "$B" -I "$SRC/CPCSCOnUse/include" -I "$SRC/CCryptOnUse/include" -I "$SRC/CPOSIX/include" -Xcc -I/usr/include/PCSC)

built=()
module() {  # module NAME: a static library and its .swiftmodule; rebuilt when its sources
            # or any module built before it (its dependencies come first) are newer
    local name=$1 fresh=1 dep
    [ "$B/lib$name.a" -nt "$SRC/$name" ] && [ -z "$(find "$SRC/$name" -newer "$B/lib$name.a" -name '*.swift')" ] || fresh=0
    for dep in "${built[@]}"; do [ "$B/lib$dep.a" -nt "$B/lib$name.a" ] && fresh=0; done
    built+=("$name")
    [ "$fresh" -eq 0 ] || return 0
    echo "fuzz: building $name"
    with_private_tmp swiftc "${FLAGS[@]}" -module-name "$name" -emit-module -emit-module-path "$B/$name.swiftmodule" \
        -emit-library -static -o "$B/lib$name.a" "$SRC/$name"/*.swift
}
# The C targets: the POSIX shim, and libcrypt/libpcsclite opened on first use.
if [ ! "$B/libCPOSIX.a" -nt "$SRC/CPOSIX/cposix.c" ] || [ ! "$B/libCPOSIX.a" -nt "$SRC/CPCSCOnUse/pcsc_on_use.c" ] || [ ! "$B/libCPOSIX.a" -nt "$SRC/CCryptOnUse/crypt_on_use.c" ]; then
    # The installed paths: cposix.c's own default.
    clang -c -O1 -g -fsanitize=fuzzer-no-link,address -I "$SRC/CPOSIX/include" "$SRC/CPOSIX/cposix.c" -o "$B/cposix.o"
    clang -c -O1 -g -fsanitize=fuzzer-no-link,address -I "$SRC/CPCSCOnUse/include" -I/usr/include/PCSC "$SRC/CPCSCOnUse/pcsc_on_use.c" -o "$B/pcsc_on_use.o"
    clang -c -O1 -g -fsanitize=fuzzer-no-link,address -I "$SRC/CCryptOnUse/include" "$SRC/CCryptOnUse/crypt_on_use.c" -o "$B/crypt_on_use.o"
    ar rcs "$B/libCPOSIX.a" "$B/cposix.o" "$B/pcsc_on_use.o" "$B/crypt_on_use.o"
fi
for m in OTPCore POSIX SmartCard VirtualCard TokenStore Verifier SmartOTPAdmin SmartOTPAuth; do module "$m"; done
LIBS=("$B/libSmartOTPAuth.a" "$B/libSmartOTPAdmin.a" "$B/libVirtualCard.a" "$B/libVerifier.a" "$B/libTokenStore.a" "$B/libSmartCard.a" "$B/libOTPCore.a" "$B/libPOSIX.a" "$B/libCPOSIX.a")

export SWIFT_BACKTRACE=enable=no  # the backtracer trips ASan; libFuzzer prints the stack
status=0
for t in "${TARGETS[@]}"; do
    echo "fuzz: building fuzz-$t"
    with_private_tmp swiftc "${FLAGS[@]}" -module-name "fuzz_$t" Targets/"$t".swift "${LIBS[@]}" -o "$B/fuzz-$t"
    work=$(mktemp -d)
    cp corpus/"$t"/* "$work"/
    echo "fuzz: running fuzz-$t for ${SECONDS_EACH}s"
    if "$B/fuzz-$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -artifact_prefix=crashes/"$t"- \
        -print_final_stats=1 "$work" >"$B/fuzz-$t.log" 2>&1; then
        echo "ok - fuzz-$t: $(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "$B/fuzz-$t.log" | awk '{print $2}') runs, no crash"
    else
        echo "not ok - fuzz-$t crashed; see $B/fuzz-$t.log and Fuzz/crashes/"
        tail -30 "$B/fuzz-$t.log"
        status=1
    fi
    rm -rf "$work"
done
exit $status
