#!/usr/bin/env python3
"""Puts `diffuse bench engine --json` and `bench/engine_torch.py --json` side by side.

    python3 bench/compare.py --ours OURS.json [OURS2.json ...] [--torch TORCH.json ...] [--json COMBINED.json]

Several reports per side are rounds of the same benchmark (bench/engine.sh alternates them): each figure is then
the fastest of the rounds' medians, which drops a round that something else on the machine slowed down.
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


def is_timing(x):
    return isinstance(x, dict) and "median_ms" in x


def merge(values, spreads):
    """One report from rounds of the same one: each timing the round with the lowest median. Appends, for each
    timing, its slowest median over its fastest to `spreads`."""
    first = values[0]
    if is_timing(first):
        medians = [v["median_ms"] for v in values]
        spreads.append(max(medians) / min(medians))
        return dict(min(values, key=lambda v: v["median_ms"]), rounds=medians)
    if isinstance(first, dict):
        return {k: merge([v[k] for v in values if k in v], spreads) for k in first}
    if isinstance(first, list) and first and isinstance(first[0], dict) and "id" in first[0]:
        rows = [{r["id"]: r for r in v} for v in values]
        return [merge([r[row["id"]] for r in rows if row["id"] in r], spreads) for row in first]
    return first


def load_rounds(paths):
    if not paths:
        return None, []
    spreads = []
    return merge([load(p) for p in paths], spreads), spreads


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


def gflops(flops, timing):
    return flops / (timing["median_ms"] * 1e-3) / 1e9


def fmt(v, width, decimals=1, suffix=""):
    if v is None:
        return " " * (width - 1) + "—"
    return ("%*.*f" % (width - len(suffix), decimals, v)) + suffix


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def spread_note(name, paths, spreads):
    if len(paths) < 2 or not spreads:
        return None
    s = sorted(spreads)
    return "%s: %d rounds; slowest round's median over the fastest: typically %.0f%%, at worst %.0f%%" % (
        name, len(paths), 100 * (s[len(s) // 2] - 1), 100 * (s[-1] - 1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", nargs="+", required=True, metavar="JSON", help="diffuse bench engine reports")
    p.add_argument("--torch", nargs="*", default=[], metavar="JSON", help="bench/engine_torch.py reports")
    p.add_argument("--json", metavar="PATH", help="write the combined rows as JSON")
    args = p.parse_args()
    ours, our_spreads = load_rounds(args.ours)
    torch, torch_spreads = load_rounds(args.torch)
    combined = dict(ours=dict(build=ours.get("build"), threads=ours.get("threads"), blas=ours.get("blas"),
                              method=ours.get("method"), rounds=len(args.ours)),
                    torch=None if torch is None else dict(version=torch.get("torch_version"),
                                                          threads=torch.get("threads"),
                                                          method=torch.get("method"), rounds=len(args.torch)),
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
    rounds = " (the fastest of the rounds' medians)" if max(len(args.ours), len(args.torch)) > 1 else ""
    print("each figure: median of %s runs after %s warm-up calls, runs ≥ %s s%s;\nratios are ours/PyTorch in "
          "GFLOP/s (> 1: we are faster)" % (m.get("runs"), m.get("warmup"), m.get("min_run_time"), rounds))
    if ours.get("build") != "release":
        print("WARNING: our numbers come from a %s build and mean nothing" % ours.get("build"))

    if ours.get("matmul"):
        theirs = by_id(torch, "matmul", ours["matmul"])
        print()
        print("%-26s %9s %8s %8s %9s %10s %10s" % ("matmul, fp32 forward", "ours ms", "GFLOP/s", "raw GF/s",
                                                   "ours/raw", "torch GF/s", "ours/torch"))
        for r in ours["matmul"]:
            t = theirs.get(r["id"])
            og, rg = gflops(r["flops"], r["engine"]), gflops(r["flops"], r["raw"])
            tg = gflops(t["flops"], t["torch"]) if t else None
            row = dict(id=r["id"], label=r["label"], ours_ms=r["engine"]["median_ms"], ours_gflops=og,
                       raw_gflops=rg, ours_over_raw=og / rg, torch_gflops=tg, ours_over_torch=og / tg if tg else None)
            combined["matmul"].append(row)
            print("%-26s %9.3f %8.1f %8.1f %9s %10s %10s" % (
                r["label"], row["ours_ms"], og, rg, fmt(100 * row["ours_over_raw"], 9, 1, "%"), fmt(tg, 10),
                fmt(row["ours_over_torch"], 10, 2)))
        print("%-26s %9s %8s %8s %9s %10s %10s" % (
            "geometric mean", "", "", "", fmt(100 * geomean([r["ours_over_raw"] for r in combined["matmul"]]),
                                              9, 1, "%"),
            "", fmt(geomean([r["ours_over_torch"] for r in combined["matmul"]]), 10, 2)))

    if ours.get("conv"):
        theirs = by_id(torch, "conv", ours["conv"])
        for phase, title in (("forward", "forward"), ("train", "forward+backward (∂x, ∂W, ∂b)")):
            print()
            print("conv2d 3×3 pad 1, %s" % title)
            compiled = any("compile" in t["modes"] for t in theirs.values())
            print("%-26s %8s %7s %8s %7s %7s  %-8s %7s %7s" % (
                "shape", "ours ms", "GF/s", "torch ms", "GF/s", "ratio", "best", "GF/s", "ratio")
                + (" %11s %7s" % ("compiled ms", "ratio") if compiled else ""))
            config, rows = None, []
            for r in ours["conv"]:
                if r["config"] != config:
                    config = r["config"]
                    print("%s (batch %d)" % (config, r["n"]))
                t = theirs.get(r["id"])
                flops = r[phase + "_flops"]
                ms = r[phase]["median_ms"]
                gf = gflops(flops, r[phase])
                tms = tg = bmode = bg = cms = None
                if t and "compile" in t["modes"]:
                    cms = t["modes"]["compile"][phase]["median_ms"]
                if t:
                    tms = t["modes"]["fp32"][phase]["median_ms"]
                    tg = gflops(flops, t["modes"]["fp32"][phase])
                    bmode = min((m for m in t["modes"] if m != "compile"),
                                key=lambda mode: t["modes"][mode][phase]["median_ms"])
                    bg = gflops(flops, t["modes"][bmode][phase])
                row = dict(id=r["id"], label=r["label"], phase=phase, ours_ms=ms, ours_gflops=gf, torch_ms=tms,
                           torch_gflops=tg, ours_over_torch=gf / tg if tg else None, best_mode=bmode,
                           best_gflops=bg, ours_over_best=gf / bg if bg else None, compiled_ms=cms,
                           ours_over_compiled=cms / ms if cms else None)
                rows.append(row)
                print("  %-24s %8.3f %7.1f %8s %7s %7s  %-8s %7s %7s" % (
                    r["label"], ms, gf, fmt(tms, 8, 3), fmt(tg, 7),
                    fmt(row["ours_over_torch"], 7, 2), bmode or "—", fmt(bg, 7), fmt(row["ours_over_best"], 7, 2))
                    + (" %11s %7s" % (fmt(cms, 11, 3), fmt(row["ours_over_compiled"], 7, 2)) if compiled else ""))
            print("  %-24s %8s %7s %8s %7s %7s  %-8s %7s %7s" % (
                "geometric mean", "", "", "", "", fmt(geomean([x["ours_over_torch"] for x in rows]), 7, 2),
                "", "", fmt(geomean([x["ours_over_best"] for x in rows]), 7, 2))
                + (" %11s %7s" % ("", fmt(geomean([x["ours_over_compiled"] for x in rows]), 7, 2)) if compiled else ""))
            combined["conv"] += rows
        print("best: PyTorch's fastest of fp32 NCHW, fp32 channels-last (cl), bf16 autocast NCHW and channels-last"
              + ("; compiled: fp32 under torch.compile (inductor, default mode)" if compiled else ""))

    notes = [n for n in (spread_note("ours", args.ours, our_spreads),
                         spread_note("PyTorch", args.torch, torch_spreads)) if n]
    if notes:
        print("\n" + "\n".join(notes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(combined, f, indent=2)


if __name__ == "__main__":
    main()
