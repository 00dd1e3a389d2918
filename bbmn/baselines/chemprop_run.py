"""chemprop v2's D-MPNN as a baseline, trained and scored on bbmn's split (optional).

chemprop is an install extra (``pip install '.[baselines]'``); without it this baseline is a
one-line error and the rest of bbmn is unaffected.

The point is identical splits. chemprop's own ``--split scaffold_balanced`` is a different
protocol (its own scaffold code and shuffling, so other molecules land in test), so it is not
used: the split file's train, validation and test molecules are written as three CSVs and given
to ``chemprop train`` as its train, val and test files, which chemprop uses as they are.
Everything else is chemprop's default (model, featurizer, batch size, learning rates, its
selection of the epoch with the best validation loss), except the number of epochs, the seeds
(``--pytorch-seed`` and ``--data-seed`` = the run's seed) and the device.

chemprop runs through its own command line in a child process of the same Python (whose
``chemprop`` package is the one checked for), so its Lightning logging and threads stay out of
bbmn's process. The best model then predicts the validation and test molecules
(``chemprop predict``), and both parts are scored with bbmn's
:func:`~bbmn.eval.metrics.score`, never with chemprop's metrics, so the numbers compare with the
other rows of the tables. Tasks are renamed ``t0, t1, ...`` in chemprop's files, so that any task
name survives its command line and CSVs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bbmn.baselines.common import (Dataset, load_dataset, metrics_record, part_labels, start_run,
                                   task_summary, write_part_predictions)
from bbmn.errors import BbmnError
from bbmn.eval.metrics import check_metric, score
from bbmn.eval.records import write_metrics
from bbmn.io import write_json
from bbmn.kinds import BASELINE_KINDS

log = logging.getLogger(__name__)

ROW, LABEL = BASELINE_KINDS["chemprop"].key, BASELINE_KINDS["chemprop"].label
#: ``--device`` values and the Lightning accelerator each one asks chemprop for.
ACCELERATORS = {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}
#: chemprop's default ``--warmup-epochs``; it refuses to train for fewer epochs than that + 1.
WARMUP_EPOCHS = 2
#: Runs chemprop commands one after the other in one process (importing chemprop takes seconds);
#: its arguments are the commands' argument lists separated by "::".
_LAUNCH = """
import os
import sys
if os.environ.get("BBMN_DETERMINISTIC") == "1":  # bbmn baseline chemprop --deterministic
    import torch
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
from chemprop.cli.main import main
command = []
for arg in sys.argv[1:] + ["::"]:
    if arg != "::":
        command.append(arg)
        continue
    print("$ chemprop", " ".join(command), flush=True)
    sys.argv = ["chemprop", *command]
    main()
    command = []
"""


def require_chemprop() -> str:
    """chemprop's version, or a :class:`BbmnError` saying how to install it."""
    if importlib.util.find_spec("chemprop") is None:
        raise BbmnError("the chemprop baseline needs chemprop 2.x: pip install '.[baselines]' "
                        "(from the bbmn checkout)")
    from importlib.metadata import version

    found = version("chemprop")
    if not found.startswith("2."):
        raise BbmnError(f"the chemprop baseline needs chemprop 2.x, found {found}: pip install '.[baselines]'")
    return found


def _write_part(path: Path, data: Dataset, part: str, columns: list[str]) -> None:
    where = data.parts[part]
    frame = pd.DataFrame(data.y[where], columns=columns)
    frame.insert(0, "smiles", [data.smiles[i] for i in where])
    frame.to_csv(path, index=False, na_rep="")


def _chemprop(commands: list[list[str]], log_path: Path, threads: int, deterministic: bool = False) -> None:
    """Run chemprop commands in one child process; output to ``log_path``; a failure quotes its end."""
    env = dict(os.environ)
    env["BBMN_DETERMINISTIC"] = "1" if deterministic else "0"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    argv = [arg for command in commands for arg in ("::", *command)][1:]
    with open(log_path, "w") as fh:
        code = subprocess.run([sys.executable, "-c", _LAUNCH, *argv], stdout=fh, stderr=subprocess.STDOUT,
                              env=env).returncode
    if code != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise BbmnError(f"chemprop failed (exit {code}); see {log_path}: {' | '.join(tail)}")


def _best_epoch(train_dir: Path) -> int | None:
    """The epoch chemprop kept (lowest validation loss), from Lightning's metrics CSV."""
    files = sorted(train_dir.glob("model_0/trainer_logs/version_*/metrics.csv"))
    if not files:
        return None
    frame = pd.read_csv(files[-1])
    if "val_loss" not in frame:
        return None
    frame = frame.dropna(subset=["val_loss"])
    return int(frame.loc[frame["val_loss"].idxmin(), "epoch"]) if len(frame) else None


def run_chemprop(clean: str | Path, split: str | Path, out: str | Path, dataset: str, metric: str,
                 seed: int = 0, epochs: int = 50, device: str = "auto", threads: int = 1,
                 deterministic: bool = False) -> dict:
    """Train chemprop on the split's train part, keep its best epoch on validation, score the test
    part; write the run directory ``out`` and return the metrics record.

    ``out/chemprop/`` holds chemprop's inputs (train/val/test CSVs), its output directory
    (``train/model_0/best.pt``, Lightning's metrics, its own test predictions) and its log.
    ``predictions.csv``, ``config.json``, ``details.json`` and last ``metrics.json`` are written
    beside it, each atomically.
    """
    version = require_chemprop()
    if device not in ACCELERATORS:
        raise BbmnError(f"unknown device {device!r}; use one of {', '.join(ACCELERATORS)}")
    if epochs <= WARMUP_EPOCHS:
        raise BbmnError(f"chemprop needs more epochs than its {WARMUP_EPOCHS} warm-up epochs, got {epochs}")
    start = time.perf_counter()
    data = load_dataset(clean, split, dataset)
    check_metric(metric, data.task_type)
    out = start_run(out)
    work = out / "chemprop"
    shutil.rmtree(work, ignore_errors=True)  # a rerun starts over; chemprop would mix old files in
    work.mkdir(parents=True)
    names = [f"t{j}" for j in range(len(data.tasks))]
    for part in ("train", "val", "test"):
        _write_part(work / f"{part}.csv", data, part, names)
    evaluate = pd.DataFrame({"part": ["val"] * len(data.parts["val"]) + ["test"] * len(data.parts["test"]),
                             "row": data.rows[np.concatenate([data.parts["val"], data.parts["test"]])]})
    evaluate["smiles"] = [data.smiles[i] for i in np.concatenate([data.parts["val"], data.parts["test"]])]
    evaluate.to_csv(work / "evaluate.csv", index=False)
    accelerator = ["--accelerator", ACCELERATORS[device], "--devices", "1", "-n", "0"]
    log_path = work / "chemprop.log"
    model = work / "train" / "model_0" / "best.pt"
    log.info("chemprop %s seed %d: %d epochs on %d train molecules; its output goes to %s", dataset, seed,
             epochs, len(data.parts["train"]), log_path)
    _chemprop([["train", "-i", *(str(work / f"{p}.csv") for p in ("train", "val", "test")), "-s", "smiles",
                "--target-columns", *names, "-t", data.task_type, "-o", str(work / "train"),
                "--epochs", str(epochs), "--pytorch-seed", str(seed), "--data-seed", str(seed),
                "--remove-checkpoints", *accelerator],
               ["predict", "-i", str(work / "evaluate.csv"), "-s", "smiles", "-o", str(work / "evaluate_preds.csv"),
                "--model-paths", str(model), *accelerator]], log_path, threads, deterministic)
    preds = pd.read_csv(work / "evaluate_preds.csv")
    if preds["row"].tolist() != evaluate["row"].tolist() or any(n not in preds for n in names):
        raise BbmnError(f"chemprop's predictions {work / 'evaluate_preds.csv'} do not match its input "
                        f"(rows or task columns differ)")
    val_pred = preds.loc[preds["part"] == "val", names].to_numpy(np.float64)
    test_pred = preds.loc[preds["part"] == "test", names].to_numpy(np.float64)
    val_score = score(metric, part_labels(data, "val"), val_pred, data.tasks)
    test_score = score(metric, part_labels(data, "test"), test_pred, data.tasks)
    seconds = time.perf_counter() - start
    log.info("chemprop %s seed %d: validation %s %.4f, test %.4f (%.0f s)", dataset, seed, metric,
             val_score.value, test_score.value, seconds)
    selected = {"epochs": epochs, "best_epoch": _best_epoch(work / "train"), "monitor": "val_loss"}
    write_part_predictions(out / "predictions.csv", data, "test", test_pred)
    write_json(out / "config.json", {"model": ROW, "dataset": dataset, "metric": metric, "seed": seed,
                                     "clean": str(clean), "split": str(split), "epochs": epochs,
                                     "device": device, "threads": threads, "deterministic": deterministic,
                                     "task_columns": dict(zip(names, data.tasks)),
                                     "versions": {"chemprop": version}})
    write_json(out / "details.json", {"selected": selected, "labels": task_summary(data),
                                      "seconds": round(seconds, 3)})
    record = metrics_record(data, seed=seed, model=ROW, label=LABEL, metric=metric, selected=selected,
                            val=val_score, test=test_score, seconds=seconds)
    return write_metrics(out / "metrics.json", record)
