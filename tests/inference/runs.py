"""Small real fine-tuning runs shared by the inference tests (built once per test session)."""

from __future__ import annotations

import pytest

from bbmn.train.finetune import FinetuneConfig, finetune
from tests.data.test_labelled import labelled_files
from tests.models.test_finetune import SMALL, make_pretrained

_BUILT: dict = {}
#: the Model Registry name the bbbp runs register under
REGISTERED = "bbbp-batmannet"


def finetuned_runs(tmp_path_factory) -> dict:
    """bbbp: two pre-trained runs (split seeds 0 and 1, an ensemble), registered as versions 1 and 2
    of :data:`REGISTERED`; esol: one scratch run."""
    key = str(tmp_path_factory.getbasetemp())
    if key in _BUILT:
        return _BUILT[key]
    root = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    try:
        pretrained = make_pretrained(root)
        bbbp, esol = labelled_files(tmp_path_factory, "bbbp"), labelled_files(tmp_path_factory, "esol")
        runs = {"root": root, "mlflow_uri": f"sqlite:///{root / 'mlflow.db'}", "pretrained": pretrained,
                "bbbp_files": bbbp, "esol_files": esol}
        for seed in (0, 1):
            runs[f"bbbp{seed}"] = root / "bbbp" / "pretrained" / f"seed{seed}"
            finetune(bbbp["cache"], bbbp["descriptors"], bbbp[f"split{seed}"], runs[f"bbbp{seed}"],
                     FinetuneConfig(dataset="bbbp", metric="roc_auc", seed=seed, epochs=2, threads=1,
                                    register=REGISTERED),
                     checkpoint=pretrained)
        runs["esol0"] = root / "esol" / "scratch" / "seed0"
        finetune(esol["cache"], esol["descriptors"], esol["split0"], runs["esol0"],
                 FinetuneConfig(dataset="esol", metric="rmse", seed=0, epochs=2, threads=1,
                                model=dict(SMALL)))
    finally:
        mp.undo()
    _BUILT[key] = runs
    return runs


def part_inputs(files: dict, split: str, part: str = "test") -> tuple[list[int], list[str]]:
    """Source rows of a split part (``split`` = ``split0`` or ``split1``) and their SMILES as
    written in the source file."""
    import pyarrow.parquet as pq

    from bbmn.data.splits import load_split

    table = pq.read_table(files["clean"], columns=["row", "input_smiles"]).to_pydict()
    given = dict(zip(table["row"], table["input_smiles"]))
    rows = load_split(files[split])[part].tolist()
    return rows, [given[r] for r in rows]
