#!/usr/bin/env bash
# The U-Net benchmark beside PyTorch + diffusers: builds `diffuse` in release, runs `diffuse bench unet` and
# bench/unet_torch.py in alternating rounds, and prints both with the speed-up (PyTorch's time / ours; > 1: we are
# faster). Each figure is the fastest of its rounds' medians, so that a round slowed by something else on the machine
# is dropped. Nothing else should use the CPU meanwhile.
# Environment: ISA (native, the default, or avx2: the instruction set measured on both sides, see bench/isa.sh),
# SCRATCH (SwiftPM scratch path, default .build; .build-avx2 for ISA=avx2), PYTHON (default python3), OUT_DIR (default bench/out),
# ROUNDS (default 2), COMPILE=1 (also PyTorch under torch.compile, a column of its own; its compilation takes
# minutes per case on 2 cores and is not timed). Ends with the peak memory of a training step on each side.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/isa.sh
SCRATCH=${SCRATCH:-.build}
PYTHON=${PYTHON:-python3}
OUT_DIR=${OUT_DIR:-bench/out}
ROUNDS=${ROUNDS:-2}
case "$ROUNDS" in ''|*[!0-9]*|0) echo "unet.sh: ROUNDS must be a positive integer" >&2; exit 1 ;; esac
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/unet_ours.*.json "$OUT_DIR"/unet_torch.*.json
swift build -c release --scratch-path "$SCRATCH" --product diffuse
BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/diffuse"
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round of $ROUNDS: ours"
    "$BIN" bench unet --json "$OUT_DIR/unet_ours.$round.json"
    echo "== round $round of $ROUNDS: PyTorch $("$PYTHON" -c 'import torch; print(torch.__version__)') + diffusers, 2 threads"
    "$PYTHON" bench/unet_torch.py --threads 2 ${COMPILE:+--compile} --json "$OUT_DIR/unet_torch.$round.json"
done
"$PYTHON" - "$OUT_DIR" "$ROUNDS" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def best(side):
    table = {}
    for r in range(1, rounds + 1):
        for row in json.load(open(f"{out}/unet_{side}.{r}.json"))["results"]:
            key = (row["model"], row["batch"])
            old = table.setdefault(key, dict(row))
            for k, v in row.items():
                if k.endswith("_s") and v is not None:
                    old[k] = min(old[k], v) if old.get(k) is not None else v
    return table
ours, torch = best("ours"), best("torch")
print(f"\nfastest of {rounds} round(s) each")
compiled = all(t.get("train_compiled_s") is not None for t in torch.values())
print(f"{'model':12s} {'batch':>5s} | {'train: ours':>11s} {'torch':>7s} {'speed-up':>8s} | {'sample: ours':>12s} {'torch':>7s} {'speed-up':>8s} {'torch bf16':>10s}"
      + (f" | {'compiled: train':>15s} {'speed-up':>8s} {'sample':>7s} {'speed-up':>8s}" if compiled else ""))
for key, o in ours.items():
    t = torch[key]
    line = (f"{key[0]:12s} {key[1]:5d} | {o['train_s']:10.3f}s {t['train_s']:6.3f}s {t['train_s'] / o['train_s']:7.2f}x |"
            f" {o['sample_s']:11.3f}s {t['sample_s']:6.3f}s {t['sample_s'] / o['sample_s']:7.2f}x {t['sample_best_s']:9.3f}s")
    if compiled:
        line += (f" | {t['train_compiled_s']:14.3f}s {t['train_compiled_s'] / o['train_s']:7.2f}x"
                 f" {t['sample_compiled_s']:6.3f}s {t['sample_compiled_s'] / o['sample_s']:7.2f}x")
    print(line)
PY
# Peak resident memory of cifar-ddpm's batch-8 training step, each side in a process of its own (PyTorch's with the
# interpreter and its libraries, as a user's process has them).
peak() {
    "$PYTHON" -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$@"
}
echo "peak resident memory, cifar-ddpm batch 8, training steps: ours" \
    "$(peak "$BIN" bench unet --case cifar-ddpm:8 --phase train --runs 2 --warmup 1) MiB, PyTorch" \
    "$(peak "$PYTHON" bench/unet_torch.py --case cifar-ddpm:8 --phase train --runs 2 --warmup 1) MiB"
