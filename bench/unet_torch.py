"""PyTorch + diffusers side of the U-Net benchmark: a training step (forward, MSE loss, backward, AdamW) and a sampling
step (one forward without gradients) of the mnist-small and cifar-ddpm UNet2DModel configs, at the batches of
`diffuse bench unet`. Median seconds of --runs after --warmup; also the sampling step in PyTorch's best CPU mode
(bf16 autocast, channels-last) and, with --compile, both steps under torch.compile (inductor, default mode; the
compilation, minutes per case on 2 cores, is done in the warm-up and not timed). Prints a table, and JSON with
--json. --case NAME:BATCH (repeatable) runs only those cases.

    python3 bench/unet_torch.py [--runs 5] [--warmup 2] [--threads 2] [--compile] [--case mnist-small:32] [--json PATH]
"""
import argparse
import json
import statistics
import time

import torch
from diffusers import UNet2DModel

CONFIGS = {
    "mnist-small": dict(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1,
                        block_out_channels=(32, 64, 128), norm_num_groups=8,
                        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
    "cifar-ddpm": dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                       block_out_channels=(128, 256, 256, 256), dropout=0.1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
}
CASES = [("mnist-small", 32), ("mnist-small", 64), ("cifar-ddpm", 1), ("cifar-ddpm", 8), ("cifar-ddpm", 16)]


def median_time(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time both steps under torch.compile")
    ap.add_argument("--phase", choices=("train", "sample", "both"), default="both",
                    help="which step to time (one alone, for its peak memory)")
    ap.add_argument("--case", action="append", default=[], help="NAME:BATCH, e.g. mnist-small:32 (default: all)")
    ap.add_argument("--json")
    args = ap.parse_args()
    known = [f"{n}:{b}" for n, b in CASES]
    for case in args.case:
        if case not in known:
            ap.error(f"unknown case {case!r}; the cases are {', '.join(known)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    for name, batch in CASES:
        if args.case and f"{name}:{batch}" not in args.case:
            continue
        model = UNet2DModel(**CONFIGS[name])
        c = CONFIGS[name]
        x = torch.randn(batch, c["in_channels"], c["sample_size"], c["sample_size"])
        t = torch.randint(0, 1000, (batch,))
        target = torch.randn_like(x)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step(net):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(net(x, t).sample, target)
            loss.backward()
            opt.step()

        compiled = torch.compile(model) if args.compile else None
        model.train()
        train = train_compiled = sample = sample_compiled = best = None
        if args.phase != "sample":
            train = median_time(lambda: train_step(model), args.runs, args.warmup)
            train_compiled = (median_time(lambda: train_step(compiled), args.runs, max(args.warmup, 1))
                              if compiled is not None else None)
        model.eval()
        if args.phase != "train":
            with torch.no_grad():
                sample = median_time(lambda: model(x, t), args.runs, args.warmup)
                sample_compiled = (median_time(lambda: compiled(x, t), args.runs, max(args.warmup, 1))
                                   if compiled is not None else None)
                cl = model.to(memory_format=torch.channels_last)
                xcl = x.to(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    best = median_time(lambda: cl(xcl, t), args.runs, args.warmup)
        results.append(dict(model=name, batch=batch, train_s=train, sample_s=sample, sample_best_s=best,
                            train_compiled_s=train_compiled, sample_compiled_s=sample_compiled))
        def seconds(v):
            return "      — " if v is None else f"{v:7.3f} s"
        line = (f"{name:12s} batch {batch:3d}  train step {seconds(train)}  sampling step {seconds(sample)}"
                f"  (bf16 channels-last {seconds(best)})")
        if compiled is not None:
            line += f"  torch.compile: train {seconds(train_compiled)}, sampling {seconds(sample_compiled)}"
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(torch=torch.__version__, threads=args.threads, results=results), f, indent=1)


if __name__ == "__main__":
    main()
