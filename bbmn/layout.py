"""Where a workflow run puts the files that code outside the rules also reads.

The rules (``rules/common.smk``) and ``bbmn train`` (:mod:`bbmn.train_one`) both name a dataset's
fine-tuning runs and its Model Registry record; the templates live here once. ``results`` is the
run's results directory (config key ``results``).
"""

from __future__ import annotations


def kind_dir(results: str, name: str, kind: str) -> str:
    """A dataset's fine-tuning runs of one kind: ``seed<N>/`` each (an ensemble for bbmn predict)."""
    return f"{results}/finetune/{name}/{kind}"


def finetune_dir(results: str, name: str, kind: str, seed) -> str:
    """One fine-tuning run's directory (metrics.json, predictions.csv, model.pt)."""
    return f"{kind_dir(results, name, kind)}/seed{seed}"


def registered_dir(results: str, name: str) -> str:
    """A register entry's packaged ensemble (``mlflow_model/``) and ``registration.json``."""
    return f"{results}/registered/{name}"


def registration_record(results: str, name: str) -> str:
    """What ``bbmn register`` did for a register entry (name, version, model id, tags)."""
    return f"{registered_dir(results, name)}/registration.json"
