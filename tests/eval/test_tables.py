"""Tables: mean and population std over seeds, reference rows and differences, all formats."""

import json

import pandas as pd
import pytest

from bbmn.errors import BbmnError
from bbmn.eval.reference import SPEC_BUDGET, budget_text
from bbmn.eval.tables import caption, write_tables


def metric_file(tmp_path, dataset, seed, row, value, metric="roc_auc", tasks=("t",), per_task=None,
                method="balanced_scaffold"):
    label = {"batmannet_pretrained": "BatmanNet (pre-trained)", "batmannet_scratch": "BatmanNet (scratch)"}.get(row, row)
    path = tmp_path / dataset / row / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "dataset": dataset, "seed": seed, "row": row, "label": label, "metric": metric,
        "tasks": list(tasks), "split": {"method": method, "seed": seed},
        "test": {"metric": metric, "value": value, "per_task": per_task or [value], "skipped": {}}}))
    return path


@pytest.fixture
def files(tmp_path):
    out = []
    for seed, (a, b) in enumerate([(0.90, 0.80), (0.92, 0.84), (0.94, 0.82)]):
        out.append(metric_file(tmp_path, "bbbp", seed, "batmannet_pretrained", a))
        out.append(metric_file(tmp_path, "bbbp", seed, "batmannet_scratch", b))
        out.append(metric_file(tmp_path, "bace", seed, "batmannet_pretrained", 0.85, tasks=("x", "y"),
                               per_task=[0.8, 0.9]))
        out.append(metric_file(tmp_path, "bace", seed, "batmannet_scratch", 0.80))
        out.append(metric_file(tmp_path, "esol", seed, "batmannet_pretrained", 1.0 + seed / 10, "rmse"))
    return out


def test_mean_std_and_differences(tmp_path, files):
    written = write_tables(files, tmp_path / "tables")
    frame = pd.read_csv(written["classification.csv"])
    ours = frame[(frame.row == "batmannet_pretrained") & (frame.dataset == "bbbp")].iloc[0]
    assert ours["mean"] == pytest.approx(0.92) and ours["std"] == pytest.approx((0.0008 / 3) ** 0.5)
    assert ours["n_seeds"] == 3 and ours["text"] == "0.920 (0.016)"
    mean = frame[(frame.row == "batmannet_pretrained") & (frame.dataset == "mean")].iloc[0]
    assert mean["mean"] == pytest.approx((0.92 + 0.85) / 2)
    # the reference mean is over the same datasets as ours (BBBP and BACE here)
    ref = frame[(frame.kind == "reference") & frame.row.str.startswith("GROVER-large") & (frame.dataset == "mean")]
    assert ref["mean"].iloc[0] == pytest.approx((0.940 + 0.894) / 2)
    diff = frame[(frame.row == "batmannet_pretrained-vs-GROVER-large") & (frame.dataset == "bbbp")].iloc[0]
    assert diff["mean"] == pytest.approx(0.92 - 0.940) and diff["text"] == "-0.020"
    gain = frame[(frame.row == "batmannet_pretrained-vs-batmannet_scratch") & (frame.dataset == "bbbp")].iloc[0]
    # seed by seed: 0.10, 0.08, 0.12; pre-trained better on all three
    assert gain["kind"] == "paired" and gain["mean"] == pytest.approx(0.10)
    assert gain["text"] == "+0.100 (0.016) 3/3"
    test = frame[(frame.row == "batmannet_pretrained-vs-batmannet_scratch") & (frame.dataset == "mean")].iloc[0]
    assert test["n_seeds"] == 6 and test["mean"] < 0.05 and test["text"].endswith("(6/6 better)")
    paired = pd.read_csv(written["paired.csv"])
    line = paired[(paired.table == "classification")].iloc[0]
    assert (line["pairs"], line["better"], line["worse"]) == (6, 6, 0) and line["wilcoxon_p"] < 0.05
    md = (tmp_path / "tables" / "classification.md").read_text()
    assert "balanced scaffold" in md and "seeds 0, 1, 2" in md and "| BatmanNet (pre-trained) | 0.920 (0.016) |" in md
    groups = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| *")]
    assert groups == ["*paired differences*", "*references*", "*differences*"]
    assert "\\begin{tabular}" in (tmp_path / "tables" / "classification.tex").read_text()
    reg = pd.read_csv(written["regression.csv"])
    esol = reg[(reg.row == "batmannet_pretrained") & (reg.dataset == "esol")].iloc[0]
    assert esol["mean"] == pytest.approx(1.1) and "mean" not in set(reg.dataset)
    per_task = pd.read_csv(written["per_task.csv"])
    assert per_task[(per_task.dataset == "bace") & (per_task.task == "y")]["mean"].iloc[0] == pytest.approx(0.9)


def test_paired_rows_count_lower_rmse_as_better(tmp_path):
    files = []
    for seed, (a, b) in enumerate([(1.0, 1.2), (1.1, 1.2), (1.2, 1.1)]):
        files.append(metric_file(tmp_path, "esol", seed, "batmannet_pretrained", a, "rmse"))
        files.append(metric_file(tmp_path, "esol", seed, "batmannet_scratch", b, "rmse"))
        files.append(metric_file(tmp_path, "esol", seed, "probe_random", 2.0, "rmse"))  # no partner row
    written = write_tables(files, tmp_path / "t")
    reg = pd.read_csv(written["regression.csv"])
    gain = reg[reg.row == "batmannet_pretrained-vs-batmannet_scratch"].iloc[0]
    assert gain["text"] == "-0.067 (0.125) 2/3" and gain["mean"] == pytest.approx(-0.2 / 3)
    assert not reg.row.str.startswith("probe_pretrained-vs").any()
    line = pd.read_csv(written["paired.csv"]).iloc[0]
    assert (line["table"], line["pairs"], line["better"], line["worse"]) == ("regression", 3, 2, 1)
    assert line["median_improvement"] == pytest.approx(0.1)


def test_protocol_mix_and_duplicates_are_errors(tmp_path, files):
    other = metric_file(tmp_path / "o", "bbbp", 0, "batmannet_pretrained", 0.5, method="random")
    with pytest.raises(BbmnError, match="mix split protocols"):
        write_tables(files + [other], tmp_path / "t")
    with pytest.raises(BbmnError, match="two metric files"):
        write_tables(files + [files[0]], tmp_path / "t")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(BbmnError, match="cannot read metric file"):
        write_tables([bad], tmp_path / "t")


def test_an_unscorable_seed_is_left_out_and_marked(tmp_path):
    files = [metric_file(tmp_path, "bbbp", 0, "batmannet_pretrained", float("nan")),
             metric_file(tmp_path, "bbbp", 1, "batmannet_pretrained", 0.8),
             metric_file(tmp_path, "bbbp", 2, "batmannet_pretrained", 0.9)]
    frame = pd.read_csv(write_tables(files, tmp_path / "t")["classification.csv"])
    cell = frame[(frame.row == "batmannet_pretrained") & (frame.dataset == "bbbp")].iloc[0]
    assert cell["mean"] == pytest.approx(0.85) and cell["n_seeds"] == 2
    assert cell["text"] == "0.850 (0.050) [2/3 seeds]"


def test_the_caption_states_the_training_budget():
    assert budget_text(30, 10) == "up to 30 epochs, early stop after 10 epochs without improvement"
    assert budget_text(5, 30) == "5 epochs, no early stopping"  # the patience cannot be reached
    assert budget_text(5, 5) == "5 epochs, no early stopping"
    assert SPEC_BUDGET == "up to 100 epochs, early stop after 30 epochs without improvement"
    assert f"({SPEC_BUDGET})" in caption("regression", "balanced_scaffold", [0, 1, 2])
    assert "(5 epochs, no early stopping)" in caption("regression", "random", [0], budget_text(5, 30))
