#!/usr/bin/env bash
# Fuzzes Diffuse's parsers of outside input with libFuzzer and AddressSanitizer: safetensors (and checkpoints), run and
# diffusers configs, IDX (raw and gzip), CIFAR-10 batches, PNG (libpng through our wrapper, and its text chunks),
# generation parameters, CLIP tokenizer files and prompts, and the JSON bodies of `diffuse serve`. Each target runs
# SECONDS (default 30) from a seed corpus made of the test fixtures; an input that crashes, traps, leaks or takes
# over 1 s is a finding, kept under Fuzz/.build/findings/TARGET/. What a run learns (the inputs that reach new code)
# stays in Fuzz/.build/corpus/TARGET/, so that the next run goes on from there. Prints each target's executions and
# findings, appends them to Fuzz/.build/ledger.tsv (date, commit, CPU, target, seconds, executions, findings), and
# exits 1 if there was any finding. Not part of the test command; `bash scripts/fuzz.sh 600 png` fuzzes one target
# longer, and RUNS=10000000 stops each target after that many executions instead of after SECONDS.
#
# Usage:  [RUNS=N] bash scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
all=(safetensors configs idx cifar10 png parameters tokenizer-files prompts server)
targets=("${@:-${all[@]}}")
[ $# -gt 0 ] || targets=("${all[@]}")
swift build --package-path Fuzz --scratch-path Fuzz/.build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing \
    2>&1 | grep -E "error|Compiling Diffuse|Build complete" || true
fuzz=Fuzz/.build/release/DiffuseFuzz
[ -x "$fuzz" ] || { echo "fuzz: the fuzz build failed" >&2; exit 2; }
out=Fuzz/.build
fixtures=Tests/DiffuseModelsTests/Fixtures

# Seed corpora from the fixtures (and a few small inputs written here).
seed() {
    local target=$1 dir=$out/seeds/$1
    rm -rf "$dir" && mkdir -p "$dir"
    case $target in
        safetensors) find Tests -name "*.safetensors" -size -100k -exec cp -t "$dir" --backup=numbered {} + ;;
        configs) find Tests -name "*config*.json" -exec cp -t "$dir" --backup=numbered {} + ;;
        png) cp Tests/DiffuseDataTests/Fixtures/*.png "$dir" ;;
        tokenizer-files) { cat $fixtures/clip-tokenizer/vocab.json; printf '\0'; cat $fixtures/clip-tokenizer/merges.txt; } > "$dir/folder" ;;
        *) python3 - "$target" "$dir" <<'PY'
import gzip, json, pathlib, struct, sys
target, d = sys.argv[1], pathlib.Path(sys.argv[2])
def put(name, data): (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
if target == "idx":
    images = bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 3, 3) + bytes(range(18))
    put("images.idx", images); put("images.idx.gz", gzip.compress(images)); put("labels.idx", bytes([0, 0, 8, 1, 0, 0, 0, 2, 3, 7]))
elif target == "cifar10":
    put("batch.bin", b"".join(bytes([k]) + bytes((k * 31 + i) % 256 for i in range(3072)) for k in range(2)))
elif target == "parameters":
    put("a", "a lighthouse at dusk, (oil painting:1.2)\nNegative prompt: blurry, text\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: v1-5")
    put("b", 'Steps: 12, Sampler: DDIM, Seed: 7, Size: 16x16, Model: "a, b: \\"c\\"", Version: Diffuse 0.1.0')
elif target == "prompts":
    for i, p in enumerate(["a photo of a cat", "Über-café naïve façade, 東京タワー 🗼!!! ...", "(masterpiece:1.2), [blue|red] 1234567890 " * 9]):
        put(f"p{i}", p)
elif target == "server":
    put("txt2img", json.dumps({"prompt": "a cat", "negative_prompt": "", "steps": 20, "cfg_scale": 7, "seed": -1, "sampler_name": "Euler a",
                               "width": 512, "height": 512, "batch_size": 2, "n_iter": 1, "override_settings": {"sd_model_checkpoint": "sd"}}))
    put("class", json.dumps({"type": "generate", "model": "runs/x", "class": 3, "steps": 10, "sampler_name": "DPM++ 2M Karras"}))
    put("train", json.dumps({"type": "train", "name": "shapes-1", "model": "ddpm", "data": "shapes", "preset": "tiny", "steps": 100,
                             "batch_size": 32, "learning_rate": 0.001, "seed": 1, "conditional": False, "image_size": 16}))
PY
        ;;
    esac
}

status=0
if [ -n "${RUNS:-}" ]; then limit=(-runs="$RUNS"); else limit=(-max_total_time="$seconds"); fi
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
printf "%-16s %12s %10s %9s\n" target executions "exec/s" findings
for target in "${targets[@]}"; do
    seed "$target"
    findings=$out/findings/$target
    mkdir -p "$findings"
    log=$out/fuzz-$target.log
    mkdir -p "$out/corpus/$target"
    start=$SECONDS
    # Two frames of allocation context (not thirty) make ASan's bookkeeping about 15 % cheaper; a finding is rerun
    # with full stacks when it is fixed.
    ASAN_OPTIONS=malloc_context_size=2 FUZZ_TARGET=$target FUZZ_TOKENIZER=$fixtures/clip-tokenizer "$fuzz" \
        "$out/corpus/$target" "$out/seeds/$target" "${limit[@]}" \
        -timeout=1 -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$findings/" -print_final_stats=1 > "$log" 2>&1 || true
    elapsed=$((SECONDS - start))
    runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" | tail -1)
    runs=${runs:-0}
    found=$(find "$findings" -type f | wc -l)
    printf "%-16s %12s %10s %9s\n" "$target" "$runs" "$((runs / (elapsed > 0 ? elapsed : 1)))" "$found"
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$(date -u +%FT%TZ)" "$commit" "$cpu" "$target" "$elapsed" "$runs" "$found" >> "$out/ledger.tsv"
    ((found == 0)) || { status=1; find "$findings" -type f | sed 's/^/    /'; }
done
exit $status
