# private-tmp.sh — sourced by every script that runs the Swift toolchain.
#
# swift-driver leaves an empty /tmp/TemporaryDirectory.XXXXXX behind for many of its jobs
# (swiftlang/swift-driver#1613 and #2049; about 200 a test run here), and nothing removes
# them. `with_private_tmp COMMAND…` runs COMMAND with a TMPDIR of its own and removes it
# afterwards, whatever COMMAND returns (its status is returned).
with_private_tmp() {
    local dir rc=0
    dir=$(mktemp -d "${TMPDIR:-/tmp}/smartotp-toolchain.XXXXXX") || return 1
    TMPDIR=$dir "$@" || rc=$?
    rm -rf "$dir"
    return "$rc"
}
