#!/usr/bin/env bash
# version.sh — the release's version, written once in Sources/Verifier/Version.swift.
#   scripts/version.sh                 prints it
#   scripts/version.sh --check V       fails unless V (debian/changelog's top entry) is it
# To release X.Y.Z: set it in Version.swift and add a debian/changelog entry for it
# (`dch -v X.Y.Z`); the package build and 05-lint refuse the two apart.
set -euo pipefail
cd "$(dirname "$0")/.."
v=$(sed -n 's/^ *public static let current = "\([0-9][0-9A-Za-z.+~-]*\)"$/\1/p' Sources/Verifier/Version.swift)
[ -n "$v" ] || { echo "version.sh: no version in Sources/Verifier/Version.swift" >&2; exit 1; }
case "${1:-}" in
    "") echo "$v" ;;
    --check)
        [ "${2:-}" = "$v" ] || { echo "version.sh: debian/changelog says ${2:-nothing}, Sources/Verifier/Version.swift says $v: make them one (dch -v $v)" >&2; exit 1; } ;;
    *) echo "usage: version.sh [--check VERSION]" >&2; exit 2 ;;
esac
