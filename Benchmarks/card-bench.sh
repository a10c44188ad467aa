#!/usr/bin/env bash
# card-bench.sh — the card side over a real pcscd and the virtual card (vpcd):
# APDUs and wall time per tap (SELECT + CALCULATE; with an access code, + VALIDATE), and
# the CPU a process uses while it waits 10 s for a card that never comes (event-driven
# SCardGetStatusChange: it should be near zero). Root; starts and stops its own pcscd.
source "$(dirname "$0")/../Tests/Integration/lib/testlib.sh"
READER="Virtual PCD 00 00"
start_pcscd
echo "| measurement | count | figure |"
echo "| --- | ---: | ---: |"
start_card "$WORK/open.state"
timeout 30 ykman --reader "$READER" oath accounts add -f bench JBSWY3DPEHPK3PXP >/dev/null 2>&1
"$BIN/smartotp-bench" tap --reader "$READER" --name bench --taps "${TAPS:-50}"
stop_card
start_card "$WORK/locked.state"
timeout 30 ykman --reader "$READER" oath accounts add -f bench JBSWY3DPEHPK3PXP >/dev/null 2>&1
timeout 30 ykman --reader "$READER" oath access change -n "bench code" >/dev/null 2>&1
"$BIN/smartotp-bench" tap --reader "$READER" --name bench --code "bench code" --taps "${TAPS:-50}"
stop_card
"$BIN/smartotp-bench" wait --reader "$READER" --seconds "${WAIT_SECONDS:-10}"
