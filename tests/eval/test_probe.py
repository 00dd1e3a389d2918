"""The linear probe on tiny data: run files, selection on validation only, external embeddings."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bbmn.baselines.common import metrics_record
from bbmn.data.cache import featurize
from bbmn.data.splits import split_table
from bbmn.errors import BbmnError
from bbmn.eval.health import encoder_health
from bbmn.eval.metrics import score
from bbmn.eval.plots import read_predictions
from bbmn.eval.probe import (ProbeConfig, encoder_embeddings, finite_parts, fit_probe, random_encoder,
                             read_labelled_cache, run_probe, split_dataset)
from bbmn.io import read_json, sha256_file
from bbmn.kinds import PROBE_KINDS
from tests.baselines.helpers import TEST_DATA, prepare

SMALL = {"hidden": 16, "heads": 2, "depth": 2, "encoder_blocks": 2, "seed": 0}
CFG = ProbeConfig(threads=1, batch_size=64)
#: source lines RDKit cannot read, put first: the cache's source rows then start at 3, so features
#: taken by cache position instead of by source row would be off by three molecules
BAD_LINES = ["not_a_smiles,1", "C1CC,0", "xyz,1"]
#: split seeds whose validation and test parts hold both classes (bbbp_150's seed 0 test part does not)
SEEDS = {"bbbp_150": (1, 2), "esol_100": (0, 1)}
_BUILT: dict = {}


def probe_files(tmp_path_factory, name: str) -> dict:
    """Clean (as given) -> featurize -> balanced scaffold splits of :data:`SEEDS`, once per session.
    ``bbbp_150`` gets :data:`BAD_LINES` first (153 source rows, 150 molecules)."""
    key = (str(tmp_path_factory.getbasetemp()), name)
    if key not in _BUILT:
        d = tmp_path_factory.mktemp(name)
        csv = None
        if name == "bbbp_150":
            lines = (TEST_DATA / f"{name}.csv").read_text().splitlines()
            csv = d / "source.csv"
            csv.write_text("\n".join([lines[0], *BAD_LINES, *lines[1:]]) + "\n")
        first, second = SEEDS[name]
        clean, split_a = prepare(d, name, seed=first, csv=csv)
        split_b = d / f"{name}.seed{second}.json"
        split_table(clean, split_b, "balanced_scaffold", second)
        featurize(clean, d / "cache.parquet")
        _BUILT[key] = {"dir": d, "clean": clean, "cache": d / "cache.parquet", "splits": [split_a, split_b],
                       "seeds": [first, second]}
    return _BUILT[key]


@pytest.fixture(scope="module")
def bbbp(tmp_path_factory):
    return probe_files(tmp_path_factory, "bbbp_150")


@pytest.fixture(scope="module")
def esol(tmp_path_factory):
    return probe_files(tmp_path_factory, "esol_100")


def baseline_keys(data) -> list[str]:
    """The keys of the baselines' metrics.json for this dataset."""
    s = score("roc_auc", np.array([[0.0], [1.0]]), np.array([[0.2], [0.8]]))
    return list(metrics_record(data, seed=0, model="m", label="l", metric="roc_auc", selected={}, val=s,
                               test=s, seconds=1.0))


def test_random_probe_writes_the_baseline_schema_per_split(tmp_path, bbbp):
    out = tmp_path / "probe"
    records = run_probe(bbbp["cache"], bbbp["splits"], out, "bbbp", "roc_auc", CFG, random_init=SMALL)
    assert [r["seed"] for r in records] == bbbp["seeds"]
    cache = read_labelled_cache(bbbp["cache"])
    assert cache.rows[0] == 3  # the three unreadable lines are not molecules
    for seed, split, record in zip(bbbp["seeds"], bbbp["splits"], records):
        run = out / f"seed{seed}"
        metrics = read_json(run / "metrics.json")
        assert metrics == record
        data = split_dataset(cache, split, "bbbp")
        assert list(metrics)[:len(baseline_keys(data))] == baseline_keys(data)
        assert (metrics["row"], metrics["label"]) == (PROBE_KINDS["random"].key, PROBE_KINDS["random"].label)
        assert (metrics["model"], metrics["init"]) == ("linear_probe", "random")
        assert metrics["representation"] == "blocks"
        assert metrics["add_positions"] is False and metrics["split"]["seed"] == seed
        assert metrics["encoder"]["kind"] == "random" and metrics["encoder"]["config"]["hidden"] == 16
        selected = metrics["selected"]
        assert [g["C"] for g in selected["grid"]] == list(CFG.c_grid)
        best = max(g["val"] for g in selected["grid"])
        assert selected["C"] == next(g["C"] for g in selected["grid"] if g["val"] == best)
        assert metrics["val"]["value"] == best and 0.0 <= metrics["test"]["value"] <= 1.0
        assert set(metrics["health"]) == {"atom", "bond", "stage_cosine", "features"}
        assert len(metrics["health"]["stage_cosine"]["atom"]) == SMALL["encoder_blocks"] + 1
        preds = pd.read_csv(run / "predictions.csv")
        assert preds["row"].tolist() == read_json(split)["test"]
        assert list(preds.columns) == ["row", "smiles", "p_np", "p_np_pred"]
        assert preds["p_np_pred"].between(0, 1).all()
    assert records[0]["health"] == records[1]["health"] == read_json(out / "health.json")["health"]
    assert read_json(out / "config.json")["c_grid"] == list(CFG.c_grid)


def test_selection_does_not_look_at_test_labels(bbbp):
    cache = read_labelled_cache(bbbp["cache"])
    X = encoder_embeddings(random_encoder(**SMALL), cache.graphs, 64)
    data = split_dataset(cache, bbbp["splits"][0], "bbbp")
    fit = fit_probe(X, data, "roc_auc", CFG)
    y = data.y.copy()
    y[data.parts["test"]] = 1.0 - y[data.parts["test"]]  # every test label flipped
    flipped = fit_probe(X, dataclasses.replace(data, y=y), "roc_auc", CFG)
    assert flipped.selected() == fit.selected() and np.array_equal(flipped.test_pred, fit.test_pred)
    assert flipped.test.value == pytest.approx(1.0 - fit.test.value)
    y = data.y.copy()
    y[data.parts["val"]] = 1.0 - y[data.parts["val"]]  # the validation labels do choose
    chosen = fit_probe(X, dataclasses.replace(data, y=y), "roc_auc", CFG)
    assert [g["val"] for g in chosen.grid] == pytest.approx([1.0 - g["val"] for g in fit.grid])


def test_regression_probe_predicts_in_label_units(tmp_path, esol):
    records = run_probe(esol["cache"], esol["splits"][:1], tmp_path, "esol", "rmse", CFG, random_init=SMALL)
    metrics = records[0]
    assert metrics["metric"] == "rmse" and metrics["task_type"] == "regression"
    selected = metrics["selected"]
    assert [g["alpha"] for g in selected["grid"]] == list(CFG.alpha_grid)
    best = min(g["val"] for g in selected["grid"])
    assert metrics["val"]["value"] == best and selected["alpha"] in CFG.alpha_grid
    preds = pd.read_csv(tmp_path / "seed0" / "predictions.csv")
    labels = pd.read_csv(TEST_DATA / "esol_100.csv")["logSolubility"]
    assert labels.min() - 1 < preds["logSolubility_pred"].mean() < labels.max() + 1
    rmse = np.sqrt(np.mean((preds["logSolubility"] - preds["logSolubility_pred"]) ** 2))
    assert metrics["test"]["value"] == pytest.approx(rmse, rel=1e-6)
    _, labels, predictions = read_predictions(tmp_path / "seed0" / "metrics.json")  # written in full
    assert score("rmse", labels, predictions).value == metrics["test"]["value"]


def label_embeddings(files: dict, path: Path, noise: float = 0.01, extra_rows: int = 2) -> np.ndarray:
    """An external encoder that knows the answer: column 0 is the label (plus a little noise), the
    rest noise; row i = source row i, NaN for source rows that are not molecules of the cache."""
    cache = read_labelled_cache(files["cache"])
    rng = np.random.default_rng(0)
    n_source = int(cache.rows.max()) + 1 + extra_rows
    table = np.full((n_source, 6), np.nan, np.float32)
    table[cache.rows] = rng.normal(size=(len(cache.rows), 6))
    table[cache.rows, 0] = cache.graphs.y[:, 0] + noise * rng.normal(size=len(cache.rows))
    np.save(path, table)
    return table


def test_external_embeddings_that_hold_the_label_score_perfectly(tmp_path, bbbp, esol):
    label_embeddings(bbbp, tmp_path / "bbbp.npy")
    records = run_probe(bbbp["cache"], bbbp["splits"], tmp_path / "bbbp", "bbbp", "roc_auc", CFG,
                        embeddings=tmp_path / "bbbp.npy", name="oracle")
    for r in records:
        assert r["test"]["value"] > 0.99 and r["val"]["value"] > 0.99
        assert (r["row"], r["label"], r["init"]) == ("probe_external", "Linear probe (oracle)", "external")
        assert r["encoder"]["sha256"] == sha256_file(tmp_path / "bbbp.npy") and r["encoder"]["dim"] == 6
        assert r["encoder"]["non_finite_rows"] == 0 and set(r["health"]) == {"features"}
        assert r["representation"] == "external" and r["add_positions"] is None
    label_embeddings(esol, tmp_path / "esol.npy", noise=0.0)
    (record,) = run_probe(esol["cache"], esol["splits"][:1], tmp_path / "esol", "esol", "rmse", CFG,
                          embeddings=tmp_path / "esol.npy", name="oracle")
    assert record["test"]["value"] < 0.05 and record["selected"]["alpha"] == min(CFG.alpha_grid)


def test_missing_embeddings_are_named_or_dropped(tmp_path, bbbp):
    table = label_embeddings(bbbp, tmp_path / "e.npy")
    test_rows = read_json(bbbp["splits"][0])["test"]
    table[test_rows[:2]] = np.nan
    np.save(tmp_path / "e.npy", table)
    with pytest.raises(BbmnError, match=rf"2 molecules of split .* have non-finite \(NaN\) features: source "
                                        rf"rows {min(test_rows[:2])}, {max(test_rows[:2])}; give --drop-missing"):
        run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "p", "bbbp", "roc_auc", CFG,
                  embeddings=tmp_path / "e.npy", name="x")
    assert not (tmp_path / "p" / f"seed{bbbp['seeds'][0]}" / "metrics.json").exists()
    (record,) = run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "p", "bbbp", "roc_auc",
                          dataclasses.replace(CFG, drop_missing=True), embeddings=tmp_path / "e.npy", name="x")
    assert record["split"]["dropped_rows"] == sorted(test_rows[:2])
    assert record["split"]["test"] == len(test_rows) - 2 and record["encoder"]["non_finite_rows"] == 2
    preds = pd.read_csv(tmp_path / "p" / f"seed{bbbp['seeds'][0]}" / "predictions.csv")
    assert preds["row"].tolist() == test_rows[2:]
    np.save(tmp_path / "short.npy", table[:100])
    with pytest.raises(BbmnError, match="row i of the file must be source data row i"):
        run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "q", "bbbp", "roc_auc", CFG,
                  embeddings=tmp_path / "short.npy", name="x")


def test_zero_variance_features_and_one_class_tasks(bbbp):
    cache = read_labelled_cache(bbbp["cache"])
    data = split_dataset(cache, bbbp["splits"][0], "bbbp")
    X = np.hstack([cache.graphs.y[:, :1] + np.random.default_rng(0).normal(size=(len(cache.rows), 1)),
                   np.ones((len(cache.rows), 3))])  # three constant columns
    fit = fit_probe(X, data, "roc_auc", CFG)
    assert np.isfinite(fit.test_pred).all() and fit.val.value > 0.5
    y = data.y.copy()
    y[data.parts["train"]] = 1.0  # one class in train: the task predicts its prior
    fit = fit_probe(X, dataclasses.replace(data, y=y), "roc_auc", CFG)
    assert fit.constants == {"p_np": "one class in train (1)"} and (fit.test_pred == 1.0).all()
    assert finite_parts(X, data) is data


def test_both_solvers_find_the_same_probe(bbbp):
    cache = read_labelled_cache(bbbp["cache"])
    X = encoder_embeddings(random_encoder(**SMALL), cache.graphs, 64)
    data = split_dataset(cache, bbbp["splits"][0], "bbbp")
    newton = fit_probe(X, data, "roc_auc", CFG)
    lbfgs = fit_probe(X, data, "roc_auc", dataclasses.replace(CFG, solver="lbfgs"))
    assert (newton.solver, lbfgs.solver) == ("newton-cholesky", "lbfgs")  # 32 features: auto is Newton
    assert newton.value == lbfgs.value  # the same C chosen on validation
    # lbfgs stops at its gradient tolerance: at C = 100 that leaves up to ~0.01 in a probability, and
    # how much depends on the CPU's BLAS (0.0103 on an AVX2 EPYC), so compare predictions at 0.03 and
    # the test score at 0.01
    assert np.abs(newton.test_pred - lbfgs.test_pred).max() < 3e-2
    assert newton.test.value == pytest.approx(lbfgs.test.value, abs=1e-2)
    assert CFG.solver_for(513) == "lbfgs"
    with pytest.raises(BbmnError, match="unknown solver 'sag'"):
        fit_probe(X, data, "roc_auc", dataclasses.replace(CFG, solver="sag"))


def make_checkpoint(path: Path, kind: str) -> torch.nn.Module:
    """A model.pt as bbmn pretrain (kind batmannet-pretrained) or bbmn finetune writes one."""
    from bbmn.models.finetune import BatmanNetFinetune
    from bbmn.train.checkpoint import save_checkpoint

    torch.manual_seed(5)
    sizes = {k: v for k, v in SMALL.items() if k != "seed"}
    if kind == "batmannet-pretrained":
        net = random_encoder(**SMALL)
        torch.nn.init.normal_(net.node_encoder.embed.project.weight)  # not what a seed-0 init gives
        save_checkpoint(path, model_config=net.config, model=net.state_dict(), kind=kind, summary={"steps": 7})
    else:
        net = BatmanNetFinetune(num_tasks=1, task_type="classification", descriptor_dim=0, **sizes)
        save_checkpoint(path, kind=kind, model_config=net.config, model=net.state_dict(), tasks=["p_np"])
    return net


@pytest.mark.parametrize("kind, row", [("batmannet-pretrained", "probe_pretrained"),
                                       ("batmannet-finetuned", "probe_finetuned")])
def test_checkpoint_probe_reads_the_saved_encoder(tmp_path, bbbp, kind, row):
    net = make_checkpoint(tmp_path / "model.pt", kind)
    (record,) = run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "p", "bbbp", "roc_auc", CFG,
                          checkpoint=tmp_path / "model.pt")
    assert record["row"] == row and record["encoder"]["kind"] == kind
    assert record["encoder"]["sha256"] == sha256_file(tmp_path / "model.pt")
    assert record["encoder"]["pretraining_steps"] == (7 if kind == "batmannet-pretrained" else None)
    expected = encoder_health(net, read_labelled_cache(bbbp["cache"]).graphs, 64)
    assert record["health"]["atom"] == pytest.approx(expected["atom"], rel=1e-4)


def test_a_tag_gives_a_snapshot_its_own_row(tmp_path, bbbp):
    make_checkpoint(tmp_path / "step-500.pt", "batmannet-pretrained")
    (record,) = run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "p", "bbbp", "roc_auc", CFG,
                          checkpoint=tmp_path / "step-500.pt", tag="step500")
    assert record["row"] == "probe_pretrained_step500"
    assert record["label"] == "Linear probe (pre-trained encoder, step500)"
    with pytest.raises(BbmnError, match="letters, digits"):
        run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "q", "bbbp", "roc_auc", CFG,
                  checkpoint=tmp_path / "step-500.pt", tag="step 500")


def test_refused_checkpoints_and_sources(tmp_path, bbbp):
    torch.save({"kind": "chemprop", "model": {}}, tmp_path / "other.pt")
    with pytest.raises(BbmnError, match="kind 'chemprop', not a BatmanNet model"):
        run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "p", "bbbp", "roc_auc", CFG,
                  checkpoint=tmp_path / "other.pt")
    with pytest.raises(BbmnError, match="exactly one of"):
        run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "p", "bbbp", "roc_auc", CFG,
                  checkpoint=tmp_path / "other.pt", random_init=SMALL)
    with pytest.raises(BbmnError, match="metric rmse does not fit a classification dataset"):
        run_probe(bbbp["cache"], bbbp["splits"][:1], tmp_path / "p", "bbbp", "rmse", CFG, random_init=SMALL)
    with pytest.raises(BbmnError, match=r"have seeds \[1, 1\]"):
        run_probe(bbbp["cache"], [bbbp["splits"][0]] * 2, tmp_path / "p", "bbbp", "roc_auc", CFG,
                  random_init=SMALL)
