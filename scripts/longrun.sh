#!/usr/bin/env bash
# A long run with flat memory: trains the tiny U-Net on 16×16 shapes for STEPS steps (default 20,000, batch 8, a
# checkpoint and a sample grid every 1000), samples the trainer's resident memory (VmRSS) every 100 steps, and checks
# that after warm-up (the first tenth of the steps, with the first checkpoint and sample grid) it stays within ±2 % of
# its median, and that the run folder grew only by its log, checkpoints and sample grids. Writes the RSS curve to OUT
# (default longrun-rss.csv).
#
# Usage:  bash scripts/longrun.sh            (STEPS=20000; DIFFUSE=path of the program; OUT=file for the curve)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-20000}
diffuse=${DIFFUSE:-.build/release/diffuse}
out=${OUT:-longrun-rss.csv}
work=$(mktemp -d)
trap 'kill $pid 2> /dev/null || true; rm -rf "$work"' EXIT
run=$work/run
"$diffuse" train --data shapes --preset tiny --image-size 16 --examples 2000 --batch-size 8 --steps "$STEPS" \
    --checkpoint-every 1000 --sample-every 1000 --threads 2 --out "$run" > "$work/out" 2>&1 &
pid=$!
until [ -f "$run/log.csv" ] && (($(wc -l < "$run/log.csv") > 1)); do sleep 0.1; done
before=$(cd "$run" && find . -type f | sort)
echo "step,rss_kb" > "$out"
next=100
start=$(date +%s)
while kill -0 $pid 2> /dev/null; do
    step=$(($(wc -l < "$run/log.csv") - 1))
    if ((step >= next)); then
        rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2> /dev/null || true)
        [ -n "$rss" ] && echo "$step,$rss" >> "$out"
        next=$(((step / 100 + 1) * 100))
    fi
    sleep 0.05
done
wait $pid || { cat "$work/out" >&2; echo "longrun: training failed" >&2; exit 1; }
seconds=$(($(date +%s) - start))
after=$(cd "$run" && find . -type f | sort)
grown=$(comm -13 <(echo "$before") <(echo "$after") | grep -v -E "^\./(log\.csv|checkpoint(-[0-9]+)?\.safetensors|samples/step-[0-9]+\.png)$" || true)
python3 - "$out" "$STEPS" "$seconds" "$grown" <<'PY'
import statistics, sys
path, steps, seconds, grown = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = [tuple(map(int, line.split(","))) for line in open(path).read().split()[1:]]
warm = [rss for step, rss in rows if step > steps // 10]
median = statistics.median(warm)
low, high = min(warm) / median - 1, max(warm) / median - 1
print(f"longrun: {steps} steps in {seconds} s, {len(rows)} RSS samples; after warm-up {min(warm) / 1024:.1f}–{max(warm) / 1024:.1f} MB, "
      f"median {median / 1024:.1f} MB ({100 * low:+.2f} % … {100 * high:+.2f} %); first sample {rows[0][1] / 1024:.1f} MB")
ok = -0.02 <= low and high <= 0.02 and not grown
if grown:
    print(f"longrun: the run folder grew by more than its log, checkpoints and grids: {grown}")
sys.exit(0 if ok else 1)
PY
