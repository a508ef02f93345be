#!/usr/bin/env bash
# The main job: builds Diffuse in release mode and runs it on built-in data. Extra arguments go to `diffuse demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product diffuse
exec .build/release/diffuse demo "$@"
