#!/usr/bin/env python3
"""Turn fort_bench_layers' JSON output into the Markdown tables of docs/benchmarks.md.

    fort_bench_layers --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
        --benchmark_out=bench.json --benchmark_out_format=json
    python3 benchmarks/bench_tables.py bench.json > tables.md

Uses the median of the repetitions (the `median` aggregate) and reports the largest CPU-time
coefficient of variation (the `cv` aggregate). Plain Python 3, no third-party modules.
"""
import json
import sys

LAYERS = ["AffineCoupling", "AdditiveCoupling", "SplineCoupling", "ActNorm", "LULinear", "Permutation"]
COUPLINGS = LAYERS[:3]
PASSES = ["forward", "inverse", "backward_forward", "backward_inverse"]
SCALARS = ["float", "double"]


def load(path):
    with open(path) as f:
        doc = json.load(f)
    median, cv = {}, {}
    for b in doc["benchmarks"]:
        kind = b.get("aggregate_name")
        if kind == "median":
            median[b["run_name"]] = b
        elif kind == "cv":
            cv[b["run_name"]] = b["cpu_time"]
    if not median:
        sys.exit(f"{path}: no median aggregates; run with --benchmark_repetitions=3 "
                 "--benchmark_report_aggregates_only=true")
    return doc.get("context", {}), median, cv


def si(x):
    """Samples/s as '1.77 M', '833 k'."""
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.3g} M"
    if x >= 1e3:
        return f"{x / 1e3:.3g} k"
    return f"{x:.3g}"


def seconds(b):
    """Wall time per iteration with a readable unit."""
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
    t = b["real_time"] * scale
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if t >= f:
            return f"{t / f:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def rate(m, name):
    b = m.get(name)
    return None if b is None else b.get("items_per_second")


def gflops(m, name):
    b = m.get(name)
    return "–" if b is None or "GFLOP/s" not in b else f"{b['GFLOP/s']:.1f}"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench_tables.py bench.json")
    ctx, m, cv = load(sys.argv[1])
    out = []
    w = out.append
    w(f"Machine: {ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz; "
      f"date {ctx.get('date', '?')}.")
    if cv:
        worst = max(cv, key=cv.get)
        w(f"Largest CPU-time coefficient of variation: {100 * cv[worst]:.0f} % ({worst}); "
          f"median {100 * sorted(cv.values())[len(cv) // 2]:.1f} %.")
    shapes = [(d, n) for d in (2, 66) for n in (1, 256, 4096)]
    for s in SCALARS:
        w(f"\n### Layers, {s}: samples/s\n")
        w("| layer | pass | " + " | ".join(f"D={d} N={n}" for d, n in shapes) + " |")
        w("|---|---|" + "---:|" * len(shapes))
        for layer in LAYERS:
            for p in PASSES:
                cells = [si(rate(m, f"{layer}/{s}/{p}/D:{d}/batch:{n}")) for d, n in shapes]
                w(f"| {layer} | {p} | " + " | ".join(cells) + " |")

    w("\n### Coupling conditioner GFLOP/s at D=66\n")
    w("| layer | pass | float N=256 | float N=4096 | double N=256 | double N=4096 |")
    w("|---|---|---:|---:|---:|---:|")
    for layer in COUPLINGS:
        for p in PASSES:
            cells = [gflops(m, f"{layer}/{s}/{p}/D:66/batch:{n}") for s in SCALARS for n in (256, 4096)]
            w(f"| {layer} | {p} | " + " | ".join(cells) + " |")

    w("\n### GEMM reference GFLOP/s\n")
    w("| product H[N×in]·Wᵀ | float N=256 | float N=4096 | double N=256 | double N=4096 |")
    w("|---|---:|---:|---:|---:|")
    spline_out = 33 * (3 * 8 - 1)
    for label, i, o in (("first 33→64", 33, 64), ("hidden 64→64", 64, 64), ("affine out 64→66", 64, 66),
                        (f"spline out 64→{spline_out}", 64, spline_out)):
        cells = [gflops(m, f"GEMM/{s}/in:{i}/out:{o}/batch:{n}") for s in SCALARS for n in (256, 4096)]
        w(f"| {label} | " + " | ".join(cells) + " |")

    w("\n### Flows, D=66, 8 × (coupling + permutation)\n")
    w("| flow | op | float samples/s | float GFLOP/s | float time | double samples/s | double GFLOP/s | double time |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for flow in ("FlowAffine", "FlowSpline"):
        for op, suffix in (("sample_and_log_prob N=1", "sample_and_log_prob/D:66/batch:1"),
                           ("sample_and_log_prob N=4096", "sample_and_log_prob/D:66/batch:4096"),
                           ("log_prob N=1", "log_prob/D:66/batch:1"),
                           ("log_prob N=4096", "log_prob/D:66/batch:4096"),
                           ("sample_point", "sample_point/D:66"),
                           ("forward_point", "forward_point/D:66")):
            cells = []
            for s in SCALARS:
                name = f"{flow}/{s}/{suffix}"
                cells += [si(rate(m, name)), gflops(m, name), seconds(m[name]) if name in m else "–"]
            w(f"| {flow} | {op} | " + " | ".join(cells) + " |")

    w("\n### FORT training step (one thread, AdamW) against its GEMM ceiling\n")
    w("| step | scalar | batch | time | samples/s | GFLOP/s | GEMM ceiling GFLOP/s | share of ceiling |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for kind, out_width in (("Affine", 66), ("Spline", spline_out)):
        for s in SCALARS:
            for n in (256, 1024):
                name = f"TrainStep/{kind}/{s}/D:66/batch:{n}"
                ceil = m.get(f"GEMMStep/{s}/out:{out_width}/batch:{n}")
                if name not in m:
                    continue
                got = m[name]["GFLOP/s"]
                c = ceil["GFLOP/s"] if ceil else None
                share = f"{100 * got / c:.0f} %" if c else "–"
                cstr = f"{c:.1f}" if c else "–"
                w(f"| {kind} | {s} | {n} | {seconds(m[name])} | {si(rate(m, name))} | {got:.1f} | {cstr} | {share} |")

    w("\n### CNF targets (velocity MLP 2×128, RK4 20 steps, D=66, N=4096, one thread)\n")
    w("| scalar | time | pairs/s | GFLOP/s |")
    w("|---|---:|---:|---:|")
    for s in SCALARS:
        name = f"CNFTargets/{s}/D:66/N:4096"
        if name in m:
            w(f"| {s} | {seconds(m[name])} | {si(rate(m, name))} | {gflops(m, name)} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
