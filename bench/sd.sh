#!/usr/bin/env bash
# Stable Diffusion 1.5 beside diffusers on this machine, in one run: the SD 1.5 architecture (its published configs)
# with random weights, which cost what trained ones do, written once by bench/sd_torch.py as diffusers folders in fp32
# and fp16. Times one 512² image of 20 DPM++ 2M steps with guidance 7.5 (a batch of 2 through the U-Net) and the
# peak resident memory of the whole process: `diffuse generate` from the fp32 and the fp16 folder (the image after
# loading; loading is reported apart), StableDiffusionPipeline from the fp32 folder (its second image; the first warms
# up). Then the pieces, `diffuse bench sd` and `bench/sd_torch.py parts`: the text encoder, one U-Net step at 256²
# and 512², the VAE decode at 512². Speed-up = diffusers' time / ours (> 1: we are faster). Nothing else should use
# the CPU meanwhile; it takes about 20 minutes on 2 cores and needs 9 GB of disk.
# Environment: PYTHON (default python3, with torch, diffusers, transformers and accelerate: without accelerate
# diffusers loads with low_cpu_mem_usage off, holding a second copy of the weights, and says so), SD_DIR (the folders; default
# bench/out/sd15), OUT_DIR (default bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT_DIR=${OUT_DIR:-bench/out}
SD_DIR=${SD_DIR:-$OUT_DIR/sd15}
mkdir -p "$OUT_DIR"
swift build -c release --product diffuse
BIN="$(swift build -c release --show-bin-path)/diffuse"
[ -f "$SD_DIR/fp16/model_index.json" ] && [ -f "$SD_DIR/fp32/model_index.json" ] || "$PYTHON" bench/sd_torch.py make "$SD_DIR"
echo "machine: $("$BIN" info | sed 's/^Diffuse [^ ]* on //')"
echo "PyTorch $("$PYTHON" -c 'import torch; print(torch.__version__)'), diffusers $("$PYTHON" -c 'import diffusers; print(diffusers.__version__)'), 2 threads,"\
     "accelerate $("$PYTHON" -c 'import accelerate; print(accelerate.__version__)' 2>/dev/null || echo 'absent')"

# Runs a command, its output to a log; prints the peak resident memory of the process in MB.
peak() {
    local log=$1; shift
    "$PYTHON" -c 'import resource, subprocess, sys
with open(sys.argv[1], "w") as log:
    subprocess.run(sys.argv[2:], check=True, stdout=log, stderr=subprocess.STDOUT)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$log" "$@"
}

for dtype in fp32 fp16; do
    echo "== diffuse generate, $dtype weights"
    mb=$(peak "$OUT_DIR/sd_generate_$dtype.log" "$BIN" generate --model "$SD_DIR/$dtype" --prompt "a photograph of an astronaut riding a horse on the moon" \
         --negative-prompt "blurry, low quality" --steps 20 --sampler dpm++2m --guidance 7.5 --seed 0 --size 512x512 \
         --out "$OUT_DIR/sd_$dtype.png")
    grep -E "^(loaded|image)" "$OUT_DIR/sd_generate_$dtype.log"
    echo "{\"peak_rss_mb\": $mb, \"image_s\": $(sed -nE 's/^image 1\/1 in ([0-9.]+) s/\1/p' "$OUT_DIR/sd_generate_$dtype.log")}" \
        > "$OUT_DIR/sd_ours_$dtype.json"
done
echo "== diffusers StableDiffusionPipeline, fp32"
"$PYTHON" bench/sd_torch.py pipeline "$SD_DIR/fp32" --json "$OUT_DIR/sd_torch.json"
echo "== the pieces"
"$BIN" bench sd --model "$SD_DIR/fp32" --json "$OUT_DIR/sd_ours_parts_fp32.json"
"$BIN" bench sd --model "$SD_DIR/fp16" --json "$OUT_DIR/sd_ours_parts_fp16.json"
"$PYTHON" bench/sd_torch.py parts "$SD_DIR/fp32" --json "$OUT_DIR/sd_torch_parts.json"

"$PYTHON" - "$OUT_DIR" <<'PY'
import json, sys
out = sys.argv[1]
load = lambda name: json.load(open(f"{out}/{name}.json"))
torch, ours = load("sd_torch"), {d: load(f"sd_ours_{d}") for d in ("fp32", "fp16")}
print("\none 512² image, 20 DPM++ 2M steps, guidance 7.5")
print(f"{'':22s} {'s/image':>8s} {'speed-up':>8s} {'peak RSS':>9s} {'vs diffusers':>12s}")
print(f"{'diffusers fp32':22s} {torch['image_s']:8.1f} {'':8s} {torch['peak_rss_mb'] / 1024:8.2f}G")
for d, o in ours.items():
    print(f"{'diffuse, ' + d + ' weights':22s} {o['image_s']:8.1f} {torch['image_s'] / o['image_s']:7.2f}x"
          f" {o['peak_rss_mb'] / 1024:8.2f}G {o['peak_rss_mb'] / torch['peak_rss_mb']:11.2f}x")
tp, parts = load("sd_torch_parts"), {d: load(f"sd_ours_parts_{d}") for d in ("fp32", "fp16")}
print(f"\n{'piece (median s)':22s} {'diffusers':>9s} {'ours fp32':>9s} {'speed-up':>8s} {'ours fp16':>9s} {'speed-up':>8s}")
for key in ("text_encoder_s", "unet_256_s", "unet_512_s", "vae_decode_512_s"):
    line = f"{key[:-2]:22s} {tp[key]:9.3f}"
    for d in ("fp32", "fp16"):
        line += f" {parts[d][key]:9.3f} {tp[key] / parts[d][key]:7.2f}x"
    print(line)
PY
