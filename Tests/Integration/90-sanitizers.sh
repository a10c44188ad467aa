#!/usr/bin/env bash
# The unit tests again under AddressSanitizer (with LeakSanitizer) and ThreadSanitizer.
set -uo pipefail
exec "$(dirname "$0")/../sanitize.sh" address thread
