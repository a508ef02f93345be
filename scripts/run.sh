#!/usr/bin/env bash
# The main job: builds Diffuse in release mode, trains a small DDPM on the built-in synthetic shapes for a few
# minutes, and samples from it. Everything lands in runs/shapes-DATE/: the schedule plot, the forward process,
# sample grids during training, 64 final samples and a reverse trajectory.
# MINUTES=10 bash scripts/run.sh trains longer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product diffuse
run="runs/shapes-$(date +%Y%m%d-%H%M%S)"
.build/release/diffuse train --data shapes --image-size 16 --preset tiny --batch-size 64 --learning-rate 2e-3 \
    --steps 100000 --minutes "${MINUTES:-4}" --sample-every 250 --out "$run"
.build/release/diffuse sample "$run" --count 64 --out "$run/samples.png" --trajectory "$run/trajectory.png"
echo "open $run/samples.png, $run/trajectory.png, $run/forward.png and $run/schedule.svg"
