#!/usr/bin/env bash
# The whole test suite, in release mode (numeric code is 10-100x slower in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --build-tests
exec swift test -c release --skip-build "$@"
