"""Print a probe directory's results as one Markdown table: encoder x dataset, test ROC-AUC mean
(population std) over seeds, the mean validation score, and the encoder's health on BBBP.

    python docs/experiments/summarize_probes.py OUT_DIR   (OUT_DIR/<dataset>/<encoder>/seed<S>/)
"""

import json
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
datasets = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "tables")
encoders = sorted({e.name for d in datasets for e in (out / d).iterdir() if e.is_dir()},
                  key=lambda e: (e != "random", int(e[4:]) if e[4:].isdigit() else 0, e))
print("| encoder | " + " | ".join(f"{d} test (val)" for d in datasets)
      + " | effective rank | atom cosine after last block |")
print("|---" * (len(datasets) + 3) + "|")
for e in encoders:
    cells, health = [], None
    for d in datasets:
        runs = [json.loads(f.read_text()) for f in sorted((out / d / e).glob("seed*/metrics.json"))]
        if not runs:
            cells.append("–")
            continue
        test = [r["test"]["value"] for r in runs]
        val = [r["val"]["value"] for r in runs]
        cells.append(f"{np.mean(test):.3f} ({np.std(test):.3f}) ({np.mean(val):.3f})")
        health = health or runs[0].get("health")
    rank = f"{health['features']['effective_rank']:.1f}" if health and "features" in health else "–"
    cosine = f"{health['stage_cosine']['atom'][-1]:.3f}" if health and "stage_cosine" in health else "–"
    print(f"| {e} | " + " | ".join(cells) + f" | {rank} | {cosine} |")
