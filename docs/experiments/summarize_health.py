"""Print a workflow run's representation health as two Markdown tables (docs/evidence.md).

1. Fine-tuning runs: per dataset and kind, the pooled views at the kept epoch (mean over seeds):
   between-molecule spread, effective rank and share of the heads' input variance, atom / bond.
2. Probe encoders (frozen, before any fine-tuning): per encoder, over the datasets it was probed
   on, the mean spread, effective rank and pair cosine of the views and the mean cosine between
   two atoms of a molecule after the last block; with the mean test score per dataset beside it.

    python docs/experiments/summarize_health.py RESULTS_DIR   (e.g. results, or the evidence run's)

The scores themselves, with the paired rows and tests, are in RESULTS_DIR/tables/ (`bbmn table`).
"""

import json
import sys
from pathlib import Path

import numpy as np

KINDS = ("pretrained", "scratch", "graph_pretrained", "graph_scratch")


def mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def finetune_health(results: Path) -> None:
    if not (results / "finetune").is_dir():
        print("(no fine-tuning runs yet)")
        return
    print("| dataset | kind | seeds | spread atom / bond | effective rank atom / bond | input share atom / bond |")
    print("|---|---|--:|---|---|---|")
    for dataset in sorted(p.name for p in (results / "finetune").iterdir() if p.is_dir()):
        for kind in KINDS:
            runs = [json.loads(f.read_text()) for f in sorted((results / "finetune" / dataset / kind).glob("seed*/metrics.json"))]
            kept = [r["health"]["best_epoch"] for r in runs if r.get("health", {}).get("best_epoch")]
            if not kept:
                continue

            def pair(key):
                a, b = (mean(h[v].get(key) for h in kept) for v in ("atom", "bond"))
                return f"{a:.3f} / {b:.3f}" if key != "effective_rank" else f"{a:.1f} / {b:.1f}"

            print(f"| {dataset} | {kind} | {len(kept)} | {pair('spread')} | {pair('effective_rank')} | "
                  f"{pair('input_share')} |")


def probe_health(results: Path) -> None:
    probe = results / "probe"
    datasets = sorted(p.name for p in probe.iterdir() if p.is_dir())
    encoders = sorted({e.name for d in datasets for e in (probe / d).iterdir() if e.is_dir()},
                      key=lambda e: (e != "random", e != "pretrained", int(e[4:]) if e[4:].isdigit() else 0))
    print("| encoder | spread atom / bond | effective rank atom / bond | pair cosine atom / bond "
          "| atom cosine after last block | " + " | ".join(datasets) + " |")
    print("|---" * (5 + len(datasets)) + "|")
    for encoder in encoders:
        health = [json.loads(f.read_text())["health"] for f in sorted(probe.glob(f"*/{encoder}/health.json"))]
        scores = []
        for d in datasets:
            test = [json.loads(f.read_text())["test"]["value"] for f in sorted((probe / d / encoder).glob("seed*/metrics.json"))]
            scores.append(f"{np.mean(test):.3f}" if test else "–")
        if not health:
            continue

        def pair(key, fmt):
            return " / ".join(format(mean(h[v][key] for h in health), fmt) for v in ("atom", "bond"))

        last = mean(h["stage_cosine"]["atom"][-1] for h in health)
        print(f"| {encoder} | {pair('spread', '.3f')} | {pair('effective_rank', '.1f')} | "
              f"{pair('mean_pair_cosine', '.3f')} | {last:.3f} | " + " | ".join(scores) + " |")


if __name__ == "__main__":
    results = Path(sys.argv[1])
    finetune_health(results)
    print()
    probe_health(results)
