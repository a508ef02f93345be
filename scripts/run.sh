#!/usr/bin/env bash
# The main job: builds Diffuse in release mode, trains a small DDPM on the built-in coloured shapes (16×16, the
# `tiny` U-Net predicting x₀) for a fixed number of steps, samples 256 images from it and says how many of them lie
# among the data's images, beside the same figure for a fresh draw of the data and for noise. A step count rather
# than minutes: the model converges the same on any CPU, a slow one only takes longer (about 6 minutes in all on 2
# cores with AVX2 alone). Everything lands in runs/shapes-DATE/: the schedule plot, the forward process, sample
# grids during training, the final samples and a reverse trajectory.
# STEPS=3000 bash scripts/run.sh trains longer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product diffuse
run="runs/shapes-$(date +%Y%m%d-%H%M%S)"
.build/release/diffuse train --data shapes --image-size 16 --preset tiny --prediction sample --batch-size 64 \
    --learning-rate 2e-3 --steps "${STEPS:-600}" --sample-every 200 --out "$run"
.build/release/diffuse sample "$run" --count 256 --out "$run/samples.png" --trajectory "$run/trajectory.png"
echo "open $run/samples.png, $run/trajectory.png, $run/forward.png and $run/schedule.svg"
