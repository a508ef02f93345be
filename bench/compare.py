#!/usr/bin/env python3
"""Puts `diffuse bench engine --json` and `bench/engine_torch.py --json` side by side.

    python3 bench/compare.py OURS.json [TORCH.json] [--json COMBINED.json]

Ratios are ours/PyTorch in throughput (GFLOP/s), i.e. PyTorch's time over ours: above 1 we are faster.
"""
import argparse
import json
import math
import sys

SHAPE_KEYS = {"matmul": ("batch", "m", "n", "k", "trans_b"),
              "conv": ("n", "c", "h", "w", "o", "kernel", "stride", "padding")}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("compare.py: cannot read %s: %s" % (path, e))


def by_id(report, section, ours_section):
    """PyTorch's rows by id, checked against our shapes."""
    if report is None:
        return {}
    rows = {r["id"]: r for r in report.get(section, [])}
    for mine in ours_section:
        theirs = rows.get(mine["id"])
        if theirs is None:
            continue
        diff = [k for k in SHAPE_KEYS[section] if mine.get(k) != theirs.get(k)]
        if diff:
            sys.exit("compare.py: %s has different shapes in the two reports (%s); bench/engine_torch.py and "
                     "Sources/diffuse/Bench.swift disagree" % (mine["id"], ", ".join(diff)))
    return rows


def fmt(v, width, decimals=1, suffix=""):
    if v is None:
        return " " * (width - 1) + "—"
    return ("%*.*f" % (width - len(suffix), decimals, v)) + suffix


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ours")
    p.add_argument("torch", nargs="?")
    p.add_argument("--json", metavar="PATH", help="write the combined rows as JSON")
    args = p.parse_args()
    ours = load(args.ours)
    torch = load(args.torch) if args.torch else None
    combined = dict(ours=dict(build=ours.get("build"), threads=ours.get("threads"), blas=ours.get("blas"),
                              method=ours.get("method")),
                    torch=None if torch is None else dict(version=torch.get("torch_version"),
                                                          threads=torch.get("threads"),
                                                          method=torch.get("method")),
                    matmul=[], conv=[])

    th = ours.get("threads", {})
    print("ours: %s build, engine threads %s (OpenBLAS inside the engine: %s); raw cblas_sgemm: OpenBLAS %s threads; %s"
          % (ours.get("build"), th.get("engine"), th.get("engine_openblas"), th.get("raw_openblas"), ours.get("blas")))
    if torch:
        print("PyTorch %s: %s threads, %s" % (torch.get("torch_version"), torch.get("threads"),
                                                torch.get("cpu_capability")))
        if torch.get("method") != ours.get("method"):
            print("note: the two sides were timed with different settings: %s vs %s"
                  % (ours.get("method"), torch.get("method")))
    else:
        print("PyTorch: not measured (no report)")
    m = ours.get("method", {})
    print("each figure: median of %s runs after %s warm-up calls, runs ≥ %s s; ratios are ours/PyTorch in "
          "GFLOP/s (> 1: we are faster)" % (m.get("runs"), m.get("warmup"), m.get("min_run_time")))
    if ours.get("build") != "release":
        print("WARNING: our numbers come from a %s build and mean nothing" % ours.get("build"))

    if ours.get("matmul"):
        theirs = by_id(torch, "matmul", ours["matmul"])
        print()
        print("%-26s %9s %8s %8s %9s %10s %10s" % ("matmul, fp32 forward", "ours ms", "GFLOP/s", "raw GF/s",
                                                  "ours/raw", "torch GF/s", "ours/torch"))
        for r in ours["matmul"]:
            t = theirs.get(r["id"])
            tg = t["torch_gflops"] if t else None
            ratio = r["engine_gflops"] / tg if tg else None
            print("%-26s %9.3f %8.1f %8.1f %9s %10s %10s" % (
                r["label"], r["engine"]["median_ms"], r["engine_gflops"], r["raw_gflops"],
                fmt(100 * r["engine_over_raw"], 9, 1, "%"), fmt(tg, 10), fmt(ratio, 10, 2)))
            combined["matmul"].append(dict(id=r["id"], label=r["label"], ours_ms=r["engine"]["median_ms"],
                                           ours_gflops=r["engine_gflops"], raw_gflops=r["raw_gflops"],
                                           ours_over_raw=r["engine_over_raw"], torch_gflops=tg,
                                           ours_over_torch=ratio))
        print("%-26s %9s %8s %8s %9s %10s %10s" % (
            "geometric mean", "", "", "", fmt(100 * geomean([r["ours_over_raw"] for r in combined["matmul"]]),
                                              9, 1, "%"),
            "", fmt(geomean([r["ours_over_torch"] for r in combined["matmul"]]), 10, 2)))

    if ours.get("conv"):
        theirs = by_id(torch, "conv", ours["conv"])
        for phase, title in (("forward", "forward"), ("train", "forward+backward (∂x, ∂W, ∂b)")):
            print()
            print("conv2d 3×3 pad 1, %s" % title)
            print("%-26s %8s %7s %6s %5s %8s %7s %7s  %-8s %7s %7s" % (
                "shape", "ours ms", "GF/s", "GEMM%", "raw%", "torch ms", "GF/s", "ratio", "best", "GF/s", "ratio"))
            config, rows = None, []
            for r in ours["conv"]:
                if r["config"] != config:
                    config = r["config"]
                    print("%s (batch %d)" % (config, r["n"]))
                t = theirs.get(r["id"])
                gf = r[phase + "_gflops"]
                share = r["engine_gemm_share_" + phase]
                raw_share = r["raw_gemm_share_" + phase]
                tms = t[phase]["median_ms"] if t else None
                tg = t[phase + "_gflops"] if t else None
                bmode = t["best_%s_mode" % phase] if t else None
                bg = t["best_%s_gflops" % phase] if t else None
                row = dict(id=r["id"], label=r["label"], phase=phase, ours_ms=r[phase]["median_ms"], ours_gflops=gf,
                           engine_gemm_share=share, raw_gemm_share=raw_share, torch_ms=tms, torch_gflops=tg, ours_over_torch=gf / tg if tg else None,
                           best_mode=bmode, best_gflops=bg, ours_over_best=gf / bg if bg else None)
                rows.append(row)
                print("  %-24s %8.3f %7.1f %6s %5s %8s %7s %7s  %-8s %7s %7s" % (
                    r["label"], row["ours_ms"], gf, fmt(100 * share, 6, 0, "%"), fmt(100 * raw_share, 5, 0, "%"),
                    fmt(tms, 8, 3), fmt(tg, 7),
                    fmt(row["ours_over_torch"], 7, 2), bmode or "—", fmt(bg, 7), fmt(row["ours_over_best"], 7, 2)))
            print("  %-24s %8s %7s %6s %5s %8s %7s %7s  %-8s %7s %7s" % (
                "geometric mean", "", "", "", "", "", "", fmt(geomean([x["ours_over_torch"] for x in rows]), 7, 2),
                "", "", fmt(geomean([x["ours_over_best"] for x in rows]), 7, 2)))
            combined["conv"] += rows
        print("\nGEMM%, raw%: share of our conv2d time that its im2col GEMMs take alone, through the engine's matmul and "
              "through raw cblas_sgemm\n(OpenBLAS threading); the rest is im2col/col2im, layout copies, bias, graph")
        print("best: PyTorch's fastest of fp32 NCHW, fp32 channels-last (cl), bf16 autocast NCHW and channels-last")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(combined, f, indent=2)


if __name__ == "__main__":
    main()
