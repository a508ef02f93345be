#!/usr/bin/env bash
# The engine benchmark beside PyTorch: builds `diffuse` in release, runs `diffuse bench engine` and
# bench/engine_torch.py on the same shapes with the same method, and prints one table with the ratios.
#
#   bench/engine.sh [options passed to both sides: --runs N --warmup N --min-run-time S --filter TEXT]
#
# Environment:
#   ISA       native (default) or avx2: the instruction set measured, on both sides (bench/isa.sh)
#   SCRATCH   SwiftPM scratch path (default .build; .build-avx2 for ISA=avx2)
#   THREADS   threads for both sides (default 2: engine kernels + OpenBLAS, torch.set_num_threads)
#   PYTHON    the Python with PyTorch (default python3)
#   OUT_DIR   where the JSON reports and logs go (default bench/out)
#   COMPILE   =1: also PyTorch's conv2d under torch.compile (inductor, default mode), a column of its own (its
#             compilations add a few minutes)
#   ROUNDS    rounds of both sides, alternated (default 2): each figure is the fastest of the rounds' medians, so that
#             a round slowed by something else on the machine is dropped (ROUNDS=1 halves the time)
# A few minutes in all. Nothing else should be using the CPU meanwhile: the script warns when the load is high
# before the runs, and when other processes took CPU time during them. On a shared machine, running it at a higher
# priority (as root: nice -n -10 bench/engine.sh) steadies the numbers.
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/isa.sh
SCRATCH=${SCRATCH:-.build}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-python3}
ROUNDS=${ROUNDS:-2}
OUT_DIR=${OUT_DIR:-bench/out}
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/ours*.json "$OUT_DIR"/torch*.json "$OUT_DIR"/combined.json "$OUT_DIR"/*.log
case "$ROUNDS" in ''|*[!0-9]*|0) echo "engine.sh: ROUNDS must be a positive integer" >&2; exit 1 ;; esac

torch_help() {
    cat >&2 <<EOF
PyTorch is not importable by '$PYTHON', so only our side is measured.
Install the CPU build (about 200 MB) and run this again:
    $PYTHON -m pip install torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu
(or point PYTHON at an interpreter that has it: PYTHON=/path/to/python bench/engine.sh)
EOF
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "engine.sh: '$PYTHON' not found; it is needed for PyTorch's side and for the combined table." >&2
    echo "Install Python 3 (e.g. apt-get install python3), or set PYTHON." >&2
    exit 1
fi
have_torch=1
if ! torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    have_torch=0
    torch_help
fi

echo "== building diffuse (release, scratch path $SCRATCH)"
swift build -c release --scratch-path "$SCRATCH" --product diffuse
BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/diffuse"

echo "== source: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain -- Sources 2>/dev/null | grep -q . && echo ' plus uncommitted changes under Sources')"
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" -v t="$THREADS" 'BEGIN { exit !(l > 0.5 * t) }'; then
    echo "warning: load average $load on $(nproc) cores: other work is running, timings will be low and noisy." >&2
fi

cpu_state() {  # prints: wall seconds, busy CPU seconds of the machine, CPU seconds of this shell's finished children
    # (as `times` wrote them just before: it must run in this shell itself, not in the $(...) subshell)
    awk -v hz="$(getconf CLK_TCK)" -v wall="$(date +%s.%N)" '
        FILENAME == "/proc/stat" && FNR == 1 { busy = ($2 + $3 + $4 + $7 + $8) / hz }
        FILENAME != "/proc/stat" && FNR == 2 { for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); kids += a[1] * 60 + a[2] } }
        END { printf "%.3f %.3f %.3f\n", wall, busy, kids }' /proc/stat "$OUT_DIR/.times"
}

noisy=""
run_logged() {  # name, log, command...
    local name=$1 log=$2; shift 2
    echo "== $name (log: $log)"
    local before after
    times >"$OUT_DIR/.times"
    before=$(cpu_state)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "engine.sh: $name failed" >&2
        exit 1
    fi
    times >"$OUT_DIR/.times"
    after=$(cpu_state)
    # The CPU time that other processes took meanwhile, as a share of all cores.
    local report
    report=$(awk -v b="$before" -v a="$after" -v cores="$(nproc)" 'BEGIN {
        split(b, x, " "); split(a, y, " "); wall = y[1] - x[1]
        others = (y[2] - x[2]) - (y[3] - x[3]); if (others < 0) others = 0
        printf "%.0f %.0f", wall, 100 * others / (wall * cores) }')
    local wall=${report% *} others=${report#* }
    echo "   ${wall} s; other processes used ${others}% of the CPU meanwhile"
    if [ "$others" -gt 5 ]; then
        noisy="$noisy
warning: other processes used ${others}% of the CPU while $name ran: its figures are low and noisy. Run again on an idle machine."
    fi
}

ours_reports=() torch_reports=()
for round in $(seq 1 "$ROUNDS"); do
    tag=""; [ "$ROUNDS" -gt 1 ] && tag=" (round $round of $ROUNDS)"
    run_logged "diffuse bench engine$tag" "$OUT_DIR/ours.$round.log" \
        "$BIN" bench engine --threads "$THREADS" --json "$OUT_DIR/ours.$round.json" "$@"
    ours_reports+=("$OUT_DIR/ours.$round.json")
    if [ "$have_torch" = 1 ]; then
        run_logged "PyTorch $torch_version, bench/engine_torch.py$tag" "$OUT_DIR/torch.$round.log" \
            "$PYTHON" bench/engine_torch.py --threads "$THREADS" --json "$OUT_DIR/torch.$round.json" \
            ${COMPILE:+--modes fp32,fp32-cl,bf16,bf16-cl,compile} "$@"
        torch_reports+=("$OUT_DIR/torch.$round.json")
    fi
done
echo
"$PYTHON" bench/compare.py --ours "${ours_reports[@]}" --torch "${torch_reports[@]}" --json "$OUT_DIR/combined.json"
if [ "$have_torch" = 0 ]; then
    echo
    torch_help
fi
rm -f "$OUT_DIR/.times"
echo
echo "reports: $(ls "$OUT_DIR"/*.json | tr '\n' ' ')"
if [ -n "$noisy" ]; then echo "$noisy" >&2; fi
