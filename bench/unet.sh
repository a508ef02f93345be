#!/usr/bin/env bash
# The U-Net benchmark beside PyTorch + diffusers: builds `diffuse` in release, runs `diffuse bench unet` and
# bench/unet_torch.py in the same run, and prints both with the speed-up (PyTorch's time / ours; > 1: we are faster).
# Nothing else should use the CPU meanwhile. Environment: SCRATCH (SwiftPM scratch path, default .build),
# PYTHON (default python3), OUT_DIR (default bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${SCRATCH:-.build}
PYTHON=${PYTHON:-python3}
OUT_DIR=${OUT_DIR:-bench/out}
mkdir -p "$OUT_DIR"
swift build -c release --scratch-path "$SCRATCH" --product diffuse
BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/diffuse"
echo "== ours"
"$BIN" bench unet --json "$OUT_DIR/unet_ours.json"
echo "== PyTorch $("$PYTHON" -c 'import torch; print(torch.__version__)') + diffusers, 2 threads"
"$PYTHON" bench/unet_torch.py --threads 2 --json "$OUT_DIR/unet_torch.json"
"$PYTHON" - "$OUT_DIR/unet_ours.json" "$OUT_DIR/unet_torch.json" <<'PY'
import json, sys
ours = {(r["model"], r["batch"]): r for r in json.load(open(sys.argv[1]))["results"]}
torch = {(r["model"], r["batch"]): r for r in json.load(open(sys.argv[2]))["results"]}
print(f"\n{'model':12s} {'batch':>5s} | {'train: ours':>11s} {'torch':>7s} {'speed-up':>8s} | {'sample: ours':>12s} {'torch':>7s} {'speed-up':>8s} {'torch bf16':>10s}")
for key, o in ours.items():
    t = torch[key]
    print(f"{key[0]:12s} {key[1]:5d} | {o['train_s']:10.3f}s {t['train_s']:6.3f}s {t['train_s'] / o['train_s']:7.2f}x |"
          f" {o['sample_s']:11.3f}s {t['sample_s']:6.3f}s {t['sample_s'] / o['sample_s']:7.2f}x {t['sample_best_s']:9.3f}s")
PY
