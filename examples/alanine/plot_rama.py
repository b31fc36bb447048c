#!/usr/bin/python3
"""Ramachandran plots: held-out MD | model samples | model samples reweighted to exp(-u/kT).

usage: plot_rama.py OUT_DIR TEST_XYZ.npy LABEL [LABEL ...]
Reads OUT_DIR/<label>_phipsi.npy and <label>_logw.npy (written by `fort_alanine eval --out-prefix`)
and writes OUT_DIR/ramachandran.png, one row per label.
"""
import os
import sys

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402


def dihedral(x, i, j, k, l):
    b0, b1, b2 = x[:, i] - x[:, j], x[:, k] - x[:, j], x[:, l] - x[:, k]
    u = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    v = b0 - (b0 * u).sum(1, keepdims=True) * u
    w = b2 - (b2 * u).sum(1, keepdims=True) * u
    return np.arctan2((np.cross(u, v) * w).sum(1), (v * w).sum(1))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, test_xyz, labels = sys.argv[1], sys.argv[2], sys.argv[3:]
    x = np.load(test_xyz).reshape(-1, 22, 3)
    md = np.stack([dihedral(x, 4, 6, 8, 14), dihedral(x, 6, 8, 14, 16)], 1)
    bins = np.linspace(-np.pi, np.pi, 61)
    fig, axes = plt.subplots(len(labels), 3, figsize=(10.5, 3.3 * len(labels)), squeeze=False)
    for r, label in enumerate(labels):
        pp = np.load(os.path.join(out, f"{label}_phipsi.npy"))
        lw = np.load(os.path.join(out, f"{label}_logw.npy")).ravel()
        ok = np.isfinite(lw)
        w = np.zeros_like(lw)
        if ok.any():
            w[ok] = np.exp(lw[ok] - lw[ok].max())
        ess = w.sum() ** 2 / max((w ** 2).sum(), 1e-300) / len(w)
        panels = [(md, None, "held-out MD"), (pp, None, f"{label}: samples"),
                  (pp, w, f"{label}: reweighted (ESS {100 * ess:.2f}%)")]
        for c, (a, wt, title) in enumerate(panels):
            ax = axes[r, c]
            if wt is not None and wt.sum() <= 0:
                ax.set_title(title + " (no weight)")
                continue
            h, _, _ = np.histogram2d(a[:, 0], a[:, 1], bins=[bins, bins], weights=wt, density=True)
            # Three decades below each panel's peak: with importance weights spanning hundreds of
            # decades, an automatic log scale would paint every bin that holds any sample alike.
            top = h.max()
            h = np.ma.masked_less(h, top * 1e-3)
            ax.pcolormesh(bins, bins, h.T, norm=LogNorm(vmin=top * 1e-3, vmax=top), cmap="viridis")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("phi")
            ax.set_ylabel("psi")
            ax.set_aspect("equal")
    fig.tight_layout()
    path = os.path.join(out, "ramachandran.png")
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
