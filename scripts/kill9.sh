#!/usr/bin/env bash
# kill -9 at random moments: trains a small model (the tiny U-Net on 16×16 shapes), kills it with SIGKILL KILLS
# times, every other kill while a checkpoint is being written and the others at a random step, and resumes it each
# time. Checks that every kill leaves a checkpoint that loads (no fallback to an older one), loses at most one
# checkpoint interval of steps, leaves no stray files, and that at the end the losses and the checkpoint equal an
# uninterrupted run's bit for bit. Prints one line per kill and exits non-zero at the first failed check.
#
# Usage:  bash scripts/kill9.sh                 (KILLS=20 STEPS=400 EVERY=10; DIFFUSE=path of the program)
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-20}
STEPS=${STEPS:-400}
EVERY=${EVERY:-10}
SEED=${SEED:-$RANDOM}
diffuse=${DIFFUSE:-.build/release/diffuse}
[ -x "$diffuse" ] || { echo "kill9: no program at $diffuse (swift build -c release)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
RANDOM=$SEED
args=(--data shapes --preset tiny --image-size 16 --examples 500 --batch-size 16 --steps "$STEPS"
      --checkpoint-every "$EVERY" --sample-every 0 --keep-checkpoints 2 --threads 2)
fail() { echo "kill9: $*" >&2; exit 1; }

# The steps in a run's log, and the step of its checkpoint (from the training state in its metadata).
logged() { echo $(($(wc -l < "$1/log.csv") - 1)); }
saved() {
    python3 - "$1/checkpoint.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    print(json.loads(json.loads(f.read(n))["__metadata__"]["state"])["step"])
PY
}

"$diffuse" train "${args[@]}" --out "$work/reference" > /dev/null 2>&1 || fail "the uninterrupted run failed"
run="$work/run"
echo "kill9: $KILLS kills of a $STEPS-step run (checkpoint every $EVERY steps), seed $SEED"
started=false
for ((k = 1; k <= KILLS; k++)); do
    if $started; then
        "$diffuse" train --out "$run" --resume --threads 2 > "$work/out" 2>&1 &
    else
        "$diffuse" train "${args[@]}" --out "$run" > "$work/out" 2>&1 &
        started=true
    fi
    pid=$!
    if ((k % 2 == 0)); then
        moment="checkpoint write"
        until compgen -G "$run/.checkpoint.safetensors.*.tmp" > /dev/null || ! kill -0 $pid 2> /dev/null; do :; done
    else
        first=$([ -f "$run/log.csv" ] && logged "$run" || echo 0)
        target=$((first + 1 + RANDOM % (3 * EVERY)))
        moment="step $target"
        until [ -f "$run/log.csv" ] && (($(logged "$run") >= target)) || ! kill -0 $pid 2> /dev/null; do sleep 0.005; done
    fi
    kill -9 $pid 2> /dev/null || true
    wait $pid 2> /dev/null || true
    grep -q "^warning" "$work/out" && fail "kill $k: $(grep ^warning "$work/out")"
    mid=$(compgen -G "$run/.checkpoint.safetensors.*.tmp" > /dev/null && echo ", mid-write" || echo "")
    done_steps=$(logged "$run")
    # Killed before its first checkpoint: the run starts again.
    checkpoint=0
    if [ -f "$run/checkpoint.safetensors" ]; then checkpoint=$(saved "$run"); else started=false; fi
    lost=$((done_steps - checkpoint))
    echo "kill $k at $moment$mid: $done_steps steps logged, checkpoint at step $checkpoint, $lost lost"
    ((lost <= EVERY)) || fail "kill $k lost $lost steps, more than one checkpoint interval ($EVERY)"
    ((done_steps < STEPS)) || { echo "kill9: the run finished before kill $k"; break; }
done
"$diffuse" train --out "$run" --resume --threads 2 > "$work/out" 2>&1 || fail "the last resumption failed: $(cat "$work/out")"
grep -q "^warning" "$work/out" && fail "$(grep ^warning "$work/out")"

# Bit for bit: the log's values (not its timings) and the checkpoint's bytes.
values() { cut -d, -f1-4 "$1/log.csv"; }
cmp -s <(values "$work/reference") <(values "$run") || fail "the losses differ from the uninterrupted run's: $(diff <(values "$work/reference") <(values "$run") | head -4)"
# The tensors' bytes and the training state (the header's key order differs from process to process).
python3 - "$work/reference/checkpoint.safetensors" "$run/checkpoint.safetensors" <<'PY' || fail "the final checkpoint differs from the uninterrupted run's"
import json, struct, sys
def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__")
    return json.loads(meta["state"]), {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items()}
(a_state, a), (b_state, b) = read(sys.argv[1]), read(sys.argv[2])
different = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
if a_state != b_state or different:
    print(f"training state equal: {a_state == b_state}; tensors that differ: {different[:5]}", file=sys.stderr)
    sys.exit(1)
PY
stray=$(cd "$run" && ls -A | grep -v -x -E "config.json|log.csv|checkpoint.safetensors|checkpoint-[0-9]+.safetensors|samples|schedule.svg|forward.png" || true)
[ -z "$stray" ] || fail "stray files in the run folder: $stray"
echo "kill9: after $((k > KILLS ? KILLS : k)) kills, $STEPS steps: losses and checkpoint equal the uninterrupted run's, bit for bit"
