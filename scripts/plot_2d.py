"""Samples of each method against held-out data, one row per data set (numpy + matplotlib).

usage: /usr/bin/python3 scripts/plot_2d.py OUT_DIR DATASET [DATASET ...]
Reads OUT_DIR/<ds>-test.npy and OUT_DIR/<ds>-<method>-samples.npy (methods mle, fort-ot, fort-cnf
and, when present for every data set, fort-cnf-strong); writes OUT_DIR/samples.png.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

out, datasets = sys.argv[1], sys.argv[2:]
import os

methods = [("test", "held-out data"), ("mle", "MLE"), ("fort-ot", "FORT, OT targets"), ("fort-cnf", "FORT, CNF targets"),
           ("fort-cnf-strong", "FORT, CNF targets\n(stronger teacher)")]
# A method is drawn when every data set has its samples (the last one is optional).
methods = [(m, t) for m, t in methods
           if m == "test" or all(os.path.exists(f"{out}/{ds}-{m}-samples.npy") for ds in datasets)]
fig, axes = plt.subplots(len(datasets), len(methods), figsize=(3.2 * len(methods), 3.2 * len(datasets)), squeeze=False)
for r, ds in enumerate(datasets):
    ref = np.load(f"{out}/{ds}-test.npy")
    lo, hi = np.percentile(ref, 0.5, axis=0), np.percentile(ref, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    for c, (m, title) in enumerate(methods):
        x = ref if m == "test" else np.load(f"{out}/{ds}-{m}-samples.npy")
        ax = axes[r][c]
        ax.hist2d(x[:, 0], x[:, 1], bins=120, range=[[lo[0] - pad[0], hi[0] + pad[0]], [lo[1] - pad[1], hi[1] + pad[1]]],
                  cmap="viridis")
        ax.set_xticks([]); ax.set_yticks([])
        if r == 0:
            ax.set_title(title)
        if c == 0:
            ax.set_ylabel(ds)
fig.tight_layout()
fig.savefig(f"{out}/samples.png", dpi=80)
