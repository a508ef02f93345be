#!/usr/bin/env python3
"""PyTorch's side of the engine benchmark: the shapes of `diffuse bench engine`, timed the same way.

matmul: torch.matmul (x @ W.T for the linear shapes), fp32, no autograd.
conv2d: F.conv2d 3x3 padding 1, forward (no autograd) and forward+backward (input, weight and bias gradients
through y.backward(seed)), in fp32 contiguous NCHW, and as "best mode" variants: fp32 channels-last, and bf16
autocast (NCHW and channels-last).
FLOPs: 2*M*N*K for a product; 2*N*O*C*KH*KW*OH*OW for a convolution's forward, 3x that forward+backward.
Method per case: warm-up calls, one call to size a run to at least --min-run-time seconds, then --runs timed
runs; the per-call median is reported.

    python3 bench/engine_torch.py [--json PATH] [--threads 2] [--filter conv/cifar]
"""
import argparse
import json
import platform
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("engine_torch.py: PyTorch is not installed for %s. Install the CPU build with\n"
             "    %s -m pip install torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu"
             % (sys.executable, sys.executable))


# The shapes of Sources/diffuse/Bench.swift (MatmulCase.all, ConvCase.all); bench/compare.py checks they agree.
def matmul_cases():
    cases = [dict(id="matmul/square-%d" % s, label="square %d" % s, batch=0, m=s, n=s, k=s, trans_b=False)
             for s in (256, 512, 1024, 2048)]
    cases += [
        dict(id="matmul/mnist-14x14-c64-linear", label="mnist 14² C64 x·Wᵀ", batch=0, m=32 * 14 * 14, n=64, k=64,
             trans_b=True),
        dict(id="matmul/mnist-7x7-c128-linear", label="mnist 7² C128 x·Wᵀ", batch=0, m=32 * 7 * 7, n=128, k=128,
             trans_b=True),
        dict(id="matmul/cifar-16x16-c256-linear", label="cifar 16² C256 x·Wᵀ", batch=0, m=8 * 16 * 16, n=256,
             k=256, trans_b=True),
        dict(id="matmul/cifar-8x8-c256-linear", label="cifar 8² C256 x·Wᵀ", batch=0, m=8 * 8 * 8, n=256, k=256,
             trans_b=True),
        dict(id="matmul/cifar-temb-512-linear", label="cifar temb [8,512]·Wᵀ", batch=0, m=8, n=512, k=512,
             trans_b=True),
        dict(id="matmul/cifar-16x16-attn-qk", label="cifar 16² attn Q·Kᵀ ×8", batch=8, m=256, n=256, k=256,
             trans_b=True),
    ]
    return cases


def conv_cases():
    def config(name, batch, in_channels, size, channels):
        def conv(key, label, c, o, hw, stride=1):
            return dict(id="conv/%s/%s" % (name, key), config=name, label=label, n=batch, c=c, h=hw, w=hw, o=o,
                        kernel=3, stride=stride, padding=1)
        out = [conv("in-%d-%d-%d" % (in_channels, channels[0], size),
                    "conv_in %d→%d %d²" % (in_channels, channels[0], size), in_channels, channels[0], size)]
        hw = size
        for ch in channels:
            out.append(conv("%d-%d-%d" % (ch, ch, hw), "%d→%d %d²" % (ch, ch, hw), ch, ch, hw))
            hw //= 2
        out.append(conv("down-%d-%d" % (channels[0], size),
                        "down %d %d²→%d² s2" % (channels[0], size, size // 2), channels[0], channels[0], size, 2))
        return out
    return (config("mnist-small", 32, 1, 28, [32, 64, 128])
            + config("cifar-ddpm", 8, 3, 32, [128, 256, 256, 256]))


class Timer:
    def __init__(self, runs, warmup, min_run_time):
        self.runs, self.warmup, self.min_run_time = runs, warmup, min_run_time

    def measure(self, body):
        for _ in range(self.warmup):
            body()
        start = time.perf_counter()
        body()
        once = max(time.perf_counter() - start, 1e-7)
        calls = max(1, int(-(-self.min_run_time // once)))
        samples = []
        for _ in range(self.runs):
            t0 = time.perf_counter()
            for _ in range(calls):
                body()
            samples.append((time.perf_counter() - t0) / calls * 1e3)
        samples.sort()
        n = len(samples)
        median = samples[n // 2] if n % 2 else (samples[n // 2 - 1] + samples[n // 2]) / 2
        return dict(median_ms=median, min_ms=samples[0], max_ms=samples[-1], calls_per_run=calls)


def gflops(flops, ms):
    return flops / (ms * 1e-3) / 1e9


def bench_matmul(case, timer, gen):
    lead = [case["batch"]] if case["batch"] else []
    a = torch.randn(lead + [case["m"], case["k"]], generator=gen)
    b = torch.randn(lead + ([case["n"], case["k"]] if case["trans_b"] else [case["k"], case["n"]]), generator=gen)
    bt = b.transpose(-1, -2) if case["trans_b"] else b

    def body():
        with torch.no_grad():
            torch.matmul(a, bt)
    flops = 2.0 * max(case["batch"], 1) * case["m"] * case["n"] * case["k"]
    t = timer.measure(body)
    return dict(case, flops=flops, torch=t, torch_gflops=gflops(flops, t["median_ms"]))


# Conv modes: (name, memory format, autocast to bf16).
MODES = [("fp32", torch.contiguous_format, False),
         ("fp32-cl", torch.channels_last, False),
         ("bf16", torch.contiguous_format, True),
         ("bf16-cl", torch.channels_last, True),
         ("compile", torch.contiguous_format, False)]  # fp32 under torch.compile (inductor, default mode)


def bench_conv(case, timer, gen, modes):
    n, c, h, w, o, k = case["n"], case["c"], case["h"], case["w"], case["o"], case["kernel"]
    stride, padding = case["stride"], case["padding"]
    oh = (h + 2 * padding - k) // stride + 1
    ow = (w + 2 * padding - k) // stride + 1
    fwd_flops = 2.0 * n * o * c * k * k * oh * ow
    x0 = torch.randn(n, c, h, w, generator=gen)
    w0 = torch.randn(o, c, k, k, generator=gen) * 0.1
    b0 = torch.randn(o, generator=gen)
    seed0 = torch.randn(n, o, oh, ow, generator=gen)
    result = dict(case, oh=oh, ow=ow, forward_flops=fwd_flops, train_flops=3 * fwd_flops, modes={})
    for name, fmt, bf16 in modes:
        x = x0.contiguous(memory_format=fmt)
        wt = w0.contiguous(memory_format=fmt)
        seed = seed0.contiguous(memory_format=fmt)
        xg = x.clone().requires_grad_()
        wg = wt.clone().requires_grad_()
        bg = b0.clone().requires_grad_()

        def plain(a, b, c):
            return F.conv2d(a, b, c, stride=stride, padding=padding)
        conv = torch.compile(plain) if name == "compile" else plain

        def forward():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                conv(x, wt, b0)

        def train():
            xg.grad = wg.grad = bg.grad = None
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = conv(xg, wg, bg)
            y.backward(seed)
        f, t = timer.measure(forward), timer.measure(train)
        result["modes"][name] = dict(forward=f, train=t, forward_gflops=gflops(fwd_flops, f["median_ms"]),
                                     train_gflops=gflops(3 * fwd_flops, t["median_ms"]))
    base = result["modes"]["fp32"]
    result.update(forward=base["forward"], train=base["train"], forward_gflops=base["forward_gflops"],
                  train_gflops=base["train_gflops"])
    for phase in ("forward", "train"):
        eager = [m for m in result["modes"] if m != "compile"]
        best = min(eager, key=lambda m: result["modes"][m][phase]["median_ms"])
        result["best_" + phase + "_mode"] = best
        result["best_" + phase + "_gflops"] = result["modes"][best][phase + "_gflops"]
        result["best_" + phase + "_ms"] = result["modes"][best][phase]["median_ms"]
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to this file")
    p.add_argument("--runs", type=int, default=7, help="timed runs per case; the median is reported")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up calls per case")
    p.add_argument("--min-run-time", type=float, default=0.05,
                   help="each timed run repeats the call until it lasts at least this many seconds")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--filter", help="cases whose id contains this text only")
    p.add_argument("--modes", default=",".join(m[0] for m in MODES if m[0] != "compile"),
                   help="conv modes to time, of fp32,fp32-cl,bf16,bf16-cl,compile (fp32 is always timed; compile, "
                   "fp32 under torch.compile, only when named: its compilations take minutes)")
    args = p.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.min_run_time < 0 or args.threads < 1:
        p.error("--runs and --threads must be positive, --warmup and --min-run-time not negative")

    torch.set_num_threads(args.threads)
    # glibc serves each large allocation with fresh mmap'd pages (page faults on every call) until a block that large
    # has been freed once, after which it reuses heap memory. A training process is long past that point, and so is
    # our engine with its buffer pool: free one large block first, so that no case's time depends on what ran before.
    primer = torch.empty(30 * 2**20 // 4)
    del primer
    wanted = set(args.modes.split(",")) | {"fp32"}
    unknown = wanted - {m[0] for m in MODES}
    if unknown:
        p.error("unknown --modes: " + ", ".join(sorted(unknown)))
    modes = [m for m in MODES if m[0] in wanted]
    timer = Timer(args.runs, args.warmup, args.min_run_time)
    gen = torch.Generator().manual_seed(0)
    selected = lambda c: args.filter is None or args.filter in c["id"]

    print("PyTorch %s: %d threads, %s, CPU capability %s" % (
        torch.__version__, torch.get_num_threads(), platform.processor() or platform.machine(),
        torch.backends.cpu.get_cpu_capability()))
    print("median of %d runs after %d warm-up calls, each run ≥ %g s\n" % (args.runs, args.warmup, args.min_run_time))

    matmuls = []
    for case in filter(selected, matmul_cases()):
        r = bench_matmul(case, timer, gen)
        matmuls.append(r)
    if matmuls:
        print("%-32s %9s %8s" % ("matmul (fp32, no grad)", "torch ms", "GFLOP/s"))
        for r in matmuls:
            print("%-32s %9.3f %8.1f" % (r["label"], r["torch"]["median_ms"], r["torch_gflops"]))
        print()

    convs = []
    for case in filter(selected, conv_cases()):
        convs.append(bench_conv(case, timer, gen, modes))
    if convs:
        print("%-28s %17s %17s   %-22s %s" % ("conv2d 3x3 pad 1", "fp32 NCHW fwd", "fp32 NCHW f+b",
                                              "best fwd", "best f+b"))
        print("%-28s %8s %8s %8s %8s   (mode, GFLOP/s)" % ("shape", "ms", "GFLOP/s", "ms", "GFLOP/s"))
        config = None
        for r in convs:
            if r["config"] != config:
                config = r["config"]
                print("%s (batch %d)" % (config, r["n"]))
            print("  %-26s %8.3f %8.1f %8.3f %8.1f   %-8s %6.1f         %-8s %6.1f" % (
                r["label"], r["forward"]["median_ms"], r["forward_gflops"], r["train"]["median_ms"],
                r["train_gflops"], r["best_forward_mode"], r["best_forward_gflops"], r["best_train_mode"],
                r["best_train_gflops"]))

    if args.json:
        report = dict(tool="torch", torch_version=torch.__version__, threads=torch.get_num_threads(),
                      cpu_capability=torch.backends.cpu.get_cpu_capability(),
                      method=dict(runs=args.runs, warmup=args.warmup, min_run_time=args.min_run_time),
                      modes=[m[0] for m in modes], matmul=matmuls, conv=convs)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
        print("\nwrote %s" % args.json)


if __name__ == "__main__":
    main()
