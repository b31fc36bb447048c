"""Side-by-side comparison of fort against PyTorch (hand-built), zuko, normflows, LibTorch and POT.

Run through benchmarks/compare/run.sh, which makes the virtual environment and builds the fort and
LibTorch programs. Same machine, same thread count, same batch sizes; implementations are
interleaved inside every repetition and the table reports medians over repetitions.

Flows: D = 66, 8 couplings (alternating half masks, random permutations in between), conditioner
MLP with two hidden layers of 256 (ReLU). Affine: y = x·exp(s) + t (fort and the hand-built flows
use s = 3·tanh(ŝ/3); zuko and normflows use their own affine maps). Spline: rational-quadratic,
8 bins, bound 3.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn

D, BLOCKS, WIDTH, BINS = 66, 8, 256, 8


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- hand-built PyTorch affine flow (same parametrisation as fort) --------------------------------

class AffineCoupling(nn.Module):
    def __init__(self, passed, transformed):
        super().__init__()
        self.register_buffer("pa", torch.tensor(passed))
        self.register_buffer("tr", torch.tensor(transformed))
        self.net = nn.Sequential(nn.Linear(len(passed), WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                                 nn.Linear(WIDTH, 2 * len(transformed)))

    def forward(self, x):
        h = self.net(x[:, self.pa]).view(x.shape[0], -1, 2)
        s = 3.0 * torch.tanh(h[..., 0] / 3.0)
        y = x.clone()
        y[:, self.tr] = x[:, self.tr] * torch.exp(s) + h[..., 1]
        return y, s.sum(1)


class HandFlow(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.couplings = nn.ModuleList(AffineCoupling(b["passed"], b["transformed"]) for b in spec["blocks"])
        for i, b in enumerate(spec["blocks"]):
            self.register_buffer(f"perm{i}", torch.tensor(b["perm_src"]))

    def forward(self, z):
        ld = torch.zeros(z.shape[0], dtype=z.dtype)
        for i, c in enumerate(self.couplings):
            z, l = c(z)
            ld = ld + l
            z = z[:, getattr(self, f"perm{i}")]
        return z, ld

    def load_fort(self, spec, params):
        for c, b in zip(self.couplings, spec["blocks"]):
            off = b["offset"]
            for lin in (c.net[0], c.net[2], c.net[4]):
                o, i = lin.weight.shape
                lin.weight.data.copy_(torch.from_numpy(params[off:off + o * i].reshape(o, i)))
                off += o * i
                lin.bias.data.copy_(torch.from_numpy(params[off:off + o]))
                off += o
            assert off == b["offset"] + b["num_params"], "fort parameter layout mismatch"

    def sample_and_log_prob(self, n):
        z = torch.randn(n, D)
        x, ld = self(z)
        return x, (-0.5 * z.square().sum(1) - 0.5 * D * math.log(2 * math.pi)) - ld


# ---- peers: zuko and normflows -----------------------------------------------------------------

def zuko_flow(kind):
    import zuko
    if kind == "affine":
        return zuko.flows.NICE(D, transforms=BLOCKS, randmask=False, hidden_features=(WIDTH, WIDTH))
    return zuko.flows.NICE(D, transforms=BLOCKS, randmask=False, hidden_features=(WIDTH, WIDTH),
                           univariate=zuko.transforms.MonotonicRQSTransform,
                           shapes=[(BINS,), (BINS,), (BINS - 1,)])


def normflows_flow(kind):
    import normflows as nf
    flows = []
    for i in range(BLOCKS):
        if kind == "affine":
            net = nf.nets.MLP([D // 2, WIDTH, WIDTH, D], init_zeros=True)
            flows.append(nf.flows.AffineCouplingBlock(net, scale=True, scale_map="exp"))
        else:
            # normflows' spline conditioner is a ResidualNet: num_blocks=1 gives in→256, one residual
            # block of two 256→256 layers, 256→out (one hidden layer more than the others).
            flows.append(nf.flows.CoupledRationalQuadraticSpline(D, 1, WIDTH, num_bins=BINS, tail_bound=3.0,
                                                                 reverse_mask=bool(i % 2)))
        flows.append(nf.flows.Permute(D, mode="shuffle"))
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(D, trainable=False), flows)


def perturb(model):
    """Small random weights everywhere (zero-initialised last layers would make the flow trivial)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


class Peer:
    """One Python implementation: a FORT step and sample_and_log_prob."""

    def __init__(self, name, kind):
        self.name = name
        if name == "torch":
            spec = json.load(open(os.path.join(ARGS.export, "affine.json")))
            self.model = HandFlow(spec)
            self.model.load_fort(spec, np.load(os.path.join(ARGS.export, "affine_params.npy")).ravel())
            self.gen = lambda x: self.model(x)[0]
            self.sample = self.model.sample_and_log_prob
        elif name == "zuko":
            self.model = perturb(zuko_flow(kind))
            self.gen = lambda x: self.model().transform.inv(x)  # zuko's transform maps data → noise
            self.sample = lambda n: self.model().rsample_and_log_prob((n,))
        elif name == "normflows":
            self.model = perturb(normflows_flow(kind))

            def gen(x):
                for f in self.model.flows:
                    x, _ = f(x)
                return x
            self.gen = gen
            self.sample = self.model.sample
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=5e-4, weight_decay=0.01)

    def train_step(self, x0, x1):
        self.opt.zero_grad(set_to_none=True)
        loss = (self.gen(x0) - x1).square().sum(1).mean()
        loss.backward()
        self.opt.step()

    def sample_lp(self, n):
        with torch.inference_mode():
            x, lp = self.sample(n)
        return x, lp


def time_block(f, min_s=0.2):
    f()
    t0 = time.perf_counter()
    f()
    one = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(min_s / one))
    t0 = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - t0) / calls


def run_cmd(cmd):
    out = subprocess.run(list(map(str, cmd)), check=True, capture_output=True, text=True).stdout
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return lines


def fort_time(*a):
    return run_cmd([ARGS.fort, *map(str, a)])[-1]["median_s"]


def libtorch_time(*a):
    return run_cmd([ARGS.libtorch, *map(str, a)])[-1]["median_s"]


# ---- agreement check ---------------------------------------------------------------------------

def check_agreement():
    spec = json.load(open(os.path.join(ARGS.export, "affine.json")))
    params = np.load(os.path.join(ARGS.export, "affine_params.npy")).ravel()
    model = HandFlow(spec)
    model.load_fort(spec, params)
    z = torch.from_numpy(np.load(os.path.join(ARGS.export, "affine_z.npy")))
    x_ref = np.load(os.path.join(ARGS.export, "affine_x.npy"))
    ld_ref = np.load(os.path.join(ARGS.export, "affine_ld.npy")).ravel()
    with torch.no_grad():
        x, ld = model(z)
    dx = float(np.abs(x.numpy() - x_ref).max())
    dld = float(np.abs(ld.numpy() - ld_ref).max())
    scale = float(np.abs(x_ref).max())
    res = {"max_abs_dx": dx, "max_abs_dlogdet": dld, "max_abs_x": scale, "max_abs_logdet": float(np.abs(ld_ref).max())}
    if ARGS.libtorch:
        res["libtorch"] = run_cmd([ARGS.libtorch, "check", ARGS.export])[-1]
    ok = dx <= 1e-4 * max(1.0, scale) and dld <= 1e-3 * max(1.0, float(np.abs(ld_ref).max()))
    if ARGS.libtorch:
        lt = res["libtorch"]
        ok = ok and lt["max_abs_dx"] <= 1e-4 * max(1.0, scale) and lt["max_abs_dlogdet"] <= 1e-3 * max(1.0, float(np.abs(ld_ref).max()))
    res["ok"] = ok
    return res


# ---- OT ----------------------------------------------------------------------------------------

def ot_points(n, d=66):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s = 0.1 * 30.0 ** (np.arange(d) / (d - 1))
    x1 = (rng.standard_normal((n, d)) * s) @ q
    return x0, x1


def bench_ot(n, reps):
    import ot
    x0, x1 = ot_points(n)
    p0 = os.path.join(ARGS.export, f"ot_x0_{n}.npy")
    p1 = os.path.join(ARGS.export, f"ot_x1_{n}.npy")
    np.save(p0, x0)
    np.save(p1, x1)
    M = ot.dist(x0, x1)  # squared Euclidean
    a = np.full(n, 1.0 / n)
    pot_t, fort_pts, fort_mat, res = [], [], [], {}
    for r in range(reps):
        t0 = time.perf_counter()
        G, log_ = ot.emd(a, a, M, numItermax=10**9, log=True)
        pot_t.append(time.perf_counter() - t0)
        res["pot_cost"] = float((G * M).sum() * n)
        res["pot_warning"] = log_.get("warning")
        f = run_cmd([ARGS.fort, "ot", p0, p1, 1])[-1]
        fort_pts.append(f["points_median_s"])
        fort_mat.append(f["matrix_median_s"])
        res["fort_cost_points"], res["fort_cost_matrix"] = f["cost_points"], f["cost_matrix"]
    res.update(pot_s=statistics.median(pot_t), fort_points_s=statistics.median(fort_pts),
               fort_matrix_s=statistics.median(fort_mat))
    res["cost_rel_diff"] = abs(res["fort_cost_matrix"] - res["pot_cost"]) / res["pot_cost"]
    return res


# ---- main --------------------------------------------------------------------------------------

def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--fort", required=True)
    ap.add_argument("--libtorch", default="")
    ap.add_argument("--export", required=True)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ot", default="1000,5000")
    ap.add_argument("--out", default="")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: train,sample,ot")
    ARGS = ap.parse_args()
    skip = set(filter(None, ARGS.skip.split(",")))
    import zuko, normflows, ot  # noqa: F401  (versions)
    report = {"versions": {"torch": torch.__version__, "zuko": zuko.__version__, "normflows": normflows.__version__,
                           "pot": ot.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
              "rows": []}
    report["check"] = check_agreement()
    log("agreement:", report["check"])
    if not report["check"]["ok"]:
        log("outputs disagree: stopping before any timing")
        sys.exit(1)

    def row(**kw):
        report["rows"].append(kw)
        log(json.dumps(kw))

    for threads in map(int, ARGS.threads.split(",")):
        torch.set_num_threads(threads)
        for kind in ("affine", "spline"):
            peers = [Peer(n, kind) for n in (["torch"] if kind == "affine" else []) + ["zuko", "normflows"]]
            g = torch.Generator().manual_seed(1)
            if "train" not in skip:
                for batch in (256, 1024):
                    x0 = torch.randn(batch, D, generator=g)
                    x1 = torch.randn(batch, D, generator=g)
                    times = {}
                    for r in range(ARGS.reps):
                        times.setdefault("fort", []).append(fort_time("train", kind, batch, threads, 1))
                        if ARGS.libtorch and kind == "affine":
                            times.setdefault("libtorch", []).append(libtorch_time("train", batch, threads, 1))
                        for p in peers:
                            times.setdefault(p.name, []).append(time_block(lambda: p.train_step(x0, x1)))
                    row(op="train_step", flow=kind, batch=batch, threads=threads,
                        **{k: statistics.median(v) for k, v in times.items()})
            if "sample" not in skip:
                for batch in (1, 4096):
                    times = {}
                    for r in range(ARGS.reps):
                        times.setdefault("fort", []).append(fort_time("sample", kind, batch, threads, 1))
                        if batch == 1:
                            times.setdefault("fort_point", []).append(fort_time("point", kind, 1))
                        if ARGS.libtorch and kind == "affine":
                            times.setdefault("libtorch", []).append(libtorch_time("sample", batch, threads, 1))
                        for p in peers:
                            times.setdefault(p.name, []).append(time_block(lambda: p.sample_lp(batch)))
                    row(op="sample_and_log_prob", flow=kind, batch=batch, threads=threads,
                        **{k: statistics.median(v) for k, v in times.items()})
        # Eigen GEMM ceiling for the same products (one thread), for the fraction-of-ceiling column.
        if threads == 1:
            for kind in ("affine", "spline"):
                for batch in (1, 256, 1024, 4096):  # batch 1: matrix-vector products (memory-bound)
                    out = run_cmd([ARGS.fort, "ceiling", kind, batch, 3])
                    fwd = [o for o in out if "median_s" in o]
                    row(op="gemm_ceiling", flow=kind, batch=batch, threads=1, forward=fwd[0]["median_s"],
                        train=fwd[1]["median_s"], forward_flops=fwd[0]["flops"], train_flops=fwd[1]["flops"])
    if "ot" not in skip:
        for n in map(int, ARGS.ot.split(",")):
            r = bench_ot(n, 3 if n <= 1000 else 1 if n > 5000 else 2)
            row(op="ot", n=n, **r)
    if ARGS.out:
        json.dump(report, open(ARGS.out, "w"), indent=1)
    print_table(report)


def print_table(report):
    rows = report["rows"]
    ceil = {(r["flow"], r["batch"]): r for r in rows if r["op"] == "gemm_ceiling"}
    print("\nversions:", ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    c = report["check"]
    print(f"agreement (hand-built torch vs fort, same weights, 16 samples): max|dx| = {c['max_abs_dx']:.2e}, "
          f"max|dlogdet| = {c['max_abs_dlogdet']:.2e}" +
          (f"; libtorch: {c['libtorch']['max_abs_dx']:.2e}, {c['libtorch']['max_abs_dlogdet']:.2e}" if "libtorch" in c else ""))
    print("\n| op | flow | batch | threads | fort | torch | zuko | normflows | libtorch | best peer / fort | fort % of GEMM ceiling |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def fmt(t):
        if t is None:
            return "–"
        return f"{t * 1e3:.3g} ms" if t >= 1e-3 else f"{t * 1e6:.3g} µs"
    for r in rows:
        if r["op"] not in ("train_step", "sample_and_log_prob"):
            continue
        fort = r["fort"]
        if r["op"] == "sample_and_log_prob" and r["batch"] == 1 and "fort_point" in r:
            fort = min(fort, r["fort_point"])
        peers = [r[k] for k in ("torch", "zuko", "normflows", "libtorch") if k in r]
        best = min(peers)
        frac = "–"
        cr = ceil.get((r["flow"], r["batch"]))
        if cr and r["threads"] == 1:
            frac = f"{100 * (cr['train'] if r['op'] == 'train_step' else cr['forward']) / fort:.0f} %"
        fort_s = fmt(r["fort"]) + (f" (point {fmt(r['fort_point'])})" if "fort_point" in r else "")
        print(f"| {r['op']} | {r['flow']} | {r['batch']} | {r['threads']} | {fort_s} | {fmt(r.get('torch'))} | "
              f"{fmt(r.get('zuko'))} | {fmt(r.get('normflows'))} | {fmt(r.get('libtorch'))} | {best / fort:.2f}× | {frac} |")
    for r in rows:
        if r["op"] == "ot":
            print(f"\nexact OT N={r['n']}: POT ot.emd {r['pot_s']:.3f} s; fort linear_assignment (same matrix) "
                  f"{r['fort_matrix_s']:.3f} s ({r['pot_s'] / r['fort_matrix_s']:.2f}×); fort ot_assignment (points) "
                  f"{r['fort_points_s']:.3f} s ({r['pot_s'] / r['fort_points_s']:.2f}×); optimal cost POT "
                  f"{r['pot_cost']:.10g}, fort {r['fort_cost_matrix']:.10g} (rel. diff {r['cost_rel_diff']:.1e})"
                  + (f"; POT warning: {r['pot_warning']}" if r.get("pot_warning") else ""))


if __name__ == "__main__":
    main()
