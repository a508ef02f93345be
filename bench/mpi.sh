#!/usr/bin/env bash
# Data-parallel training over MPI on this machine: steps per second of `diffuse train` on 1 process and on 2 ranks
# (`mpirun -np 2`), one engine thread each, at the same global batch, for the mnist-small U-Net (MNIST from
# ../shared/data/mnist, or 28² shapes without it) and cifar-ddpm (32² shapes); and the share of a 2-rank step spent
# summing gradients (MPI_Allreduce over shared memory here). Each figure is the median step time after the first
# two steps, from the run's log.csv. Nothing else should use the CPU meanwhile; it takes about 10 minutes on 2 cores.
# Environment: OUT_DIR (default bench/out), STEPS_SMALL (default 12), STEPS_CIFAR (default 6).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-bench/out}
STEPS_SMALL=${STEPS_SMALL:-12}
STEPS_CIFAR=${STEPS_CIFAR:-6}
command -v mpirun >/dev/null || bash scripts/setup.sh mpirun=openmpi-bin
swift build -c release --product diffuse
BIN="$(swift build -c release --show-bin-path)/diffuse"
mkdir -p "$OUT_DIR"
echo "machine: $("$BIN" info | sed 's/^Diffuse [^ ]* on //'); $(mpirun --version | head -1)"
mnist=shapes
[ -f ../shared/data/mnist/t10k-images-idx3-ubyte.gz ] && mnist=mnist:../shared/data/mnist

# Median seconds per step of a run folder's log (steps after the second).
median() { python3 -c 'import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1] + "/log.csv")))[2:]
print(statistics.median(float(r["seconds"]) for r in rows))' "$1"; }

printf "%-12s %5s %6s %14s %14s %9s %14s\n" model batch ranks "s/step" "steps/s" speed-up "allreduce/step"
# One model on 1 process and on 2 ranks: preset, data, image size, global batch, steps.
measure() {
    local preset=$1 data=$2 size=$3 batch=$4 steps=$5
    local args=(train --data "$data" --image-size "$size" --preset "$preset" --batch-size "$batch" --steps "$steps"
                --sample-every 0 --checkpoint-every 0 --threads 1)
    rm -rf "$OUT_DIR/mpi-$preset-1" "$OUT_DIR/mpi-$preset-2"
    "$BIN" "${args[@]}" --out "$OUT_DIR/mpi-$preset-1" > "$OUT_DIR/mpi-$preset-1.log" 2>&1
    mpirun --allow-run-as-root --bind-to core -np 2 "$BIN" "${args[@]}" --out "$OUT_DIR/mpi-$preset-2" \
        > "$OUT_DIR/mpi-$preset-2.log" 2>&1
    python3 -c "import sys
one, two, ms = map(float, sys.argv[1:4])
print('%-12s %5d %6d %14.3f %14.2f' % (sys.argv[4], int(sys.argv[5]), 1, one, 1 / one))
print('%-12s %5d %6d %14.3f %14.2f %8.2fx %8.1f ms, %.1f %%' % (sys.argv[4], int(sys.argv[5]), 2, two, 1 / two, one / two, ms, ms / 10 / two))" \
        "$(median "$OUT_DIR/mpi-$preset-1")" "$(median "$OUT_DIR/mpi-$preset-2")" \
        "$(sed -nE 's/.*\(([0-9.]+) ms a step\).*/\1/p' "$OUT_DIR/mpi-$preset-2.log")" "$preset" "$batch"
}
measure mnist-small "$mnist" 28 32 "$STEPS_SMALL"
measure cifar-ddpm shapes 32 16 "$STEPS_CIFAR"
