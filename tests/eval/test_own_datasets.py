"""A user's own datasets (issue 15.1): registered in config alone, they are columns of the tables,
panels of the comparison figure and columns of the report's pages; the paper's datasets come
first in the paper's order, the others follow in the run's config order (``run.datasets``)."""

import re

import numpy as np
import pandas as pd
import pytest

from bbmn.cli.main import main
from bbmn.errors import BbmnError
from bbmn.eval import pages, plots
from bbmn.eval.records import write_metrics
from bbmn.eval.reference import in_table_order
from bbmn.eval.tables import load_results, write_tables

#: Registry entries (config.yaml's `datasets:`) of the paper's sets and of two sets of a user's own.
REGISTRY = {"bbbp": {"task": "classification", "metric": "roc_auc"},
            "esol": {"task": "regression", "metric": "rmse"},
            "mytox": {"task": "classification", "metric": "roc_auc"},
            "abctox": {"task": "classification", "metric": "roc_auc"},
            "myreg": {"task": "regression", "metric": "mae"}}
#: run.datasets: the user's sets first, and not by name (mytox before abctox).
RUN_ORDER = ["mytox", "myreg", "bbbp", "abctox", "esol"]
ROWS = {"batmannet_pretrained": "BatmanNet (pre-trained)", "batmannet_scratch": "BatmanNet (scratch)"}


def run_metrics(root, dataset, row, seed, value):
    """A run's metrics.json as fine-tuning writes it, task type and metric from the registry."""
    entry = REGISTRY[dataset]
    path = root / dataset / row / f"seed{seed}" / "metrics.json"
    write_metrics(path, {
        "dataset": dataset, "seed": seed, "row": row, "label": ROWS[row], "metric": entry["metric"],
        "task_type": entry["task"], "tasks": ["y"], "split": {"method": "balanced_scaffold"},
        "test": {"metric": entry["metric"], "value": value, "per_task": [value]}})
    return path


@pytest.fixture
def files(tmp_path):
    """Two rows x two seeds on every dataset of :data:`RUN_ORDER`."""
    rng = np.random.default_rng(0)
    return [run_metrics(tmp_path / "runs", dataset, row, seed, float(rng.uniform(0.6, 0.9)))
            for dataset in RUN_ORDER for row in ROWS for seed in (0, 1)]


def columns(frame: pd.DataFrame) -> list[str]:
    """A table's dataset columns in order, as its CSV lists them."""
    return list(dict.fromkeys(frame["dataset"]))


def panel_titles(svg: str) -> list[str]:
    """The comparison figure's panel titles in drawing order (its SVG keeps text as text)."""
    return list(dict.fromkeys(re.findall(r"BBBP|ESOL|mytox|myreg|abctox", svg)))


def test_paper_order_first_then_the_run_order_then_by_name():
    assert in_table_order({"zeta", "mytox", "esol", "bbbp", "abctox"}, ["mytox", "bbbp"]) == [
        "bbbp", "esol", "mytox", "abctox", "zeta"]
    assert in_table_order(["qm8", "bace", "bbbp"]) == ["bbbp", "bace", "qm8"]


def test_own_datasets_are_columns_of_their_task_types_table(tmp_path, files):
    written = write_tables(files, tmp_path / "tables", datasets=RUN_ORDER)
    classification = pd.read_csv(written["classification.csv"])
    assert columns(classification) == ["bbbp", "mytox", "abctox", "mean"]
    ours = classification[(classification.kind == "result") & (classification.dataset == "mytox")]
    assert set(ours.row) == set(ROWS) and (ours.n_seeds == 2).all() and ours["mean"].notna().all()
    # the published rows have no number for a user's set: their cells and means are empty
    published = classification[classification.kind.isin(["reference", "difference"])]
    assert (published[published.dataset.isin(["mytox", "abctox", "mean"])].text == "–").all()
    assert (published[published.dataset == "bbbp"].text != "–").all()
    assert columns(pd.read_csv(written["regression.csv"])) == ["esol", "myreg"]
    md = (tmp_path / "tables" / "classification.md").read_text()
    assert "| Model | BBBP (ROC-AUC) | mytox (ROC-AUC) | abctox (ROC-AUC) | Mean |" in md
    assert "| Model | ESOL (RMSE) | myreg (MAE) |" in (tmp_path / "tables" / "regression.md").read_text()
    assert re.search(r"BBBP.*mytox.*abctox", (tmp_path / "tables" / "classification.tex").read_text())


def test_a_table_of_own_datasets_only_has_no_published_rows(tmp_path, files):
    mine = [f for f in files if f.parts[-4] in ("mytox", "abctox")]
    frame = pd.read_csv(write_tables(mine, tmp_path / "t", datasets=RUN_ORDER)["classification.csv"])
    assert columns(frame) == ["mytox", "abctox", "mean"]
    assert set(frame.kind) == {"result", "paired"}
    assert "| GROVER" not in (tmp_path / "t" / "classification.md").read_text()


def test_without_the_run_order_own_datasets_follow_by_name(tmp_path, files):
    frame = pd.read_csv(write_tables(files, tmp_path / "t")["classification.csv"])
    assert columns(frame) == ["bbbp", "abctox", "mytox", "mean"]


def test_the_comparison_has_a_panel_per_dataset_in_the_tables_order(tmp_path, files):
    panels = plots.comparison_panels(load_results(files), RUN_ORDER)
    assert list(panels) == ["bbbp", "esol", "mytox", "myreg", "abctox"]
    assert [bar.key for bar in panels["mytox"]] == list(ROWS)  # ours only: nothing published
    assert any(bar.hatch for bar in panels["bbbp"])
    svg = plots.plot_comparison(files, tmp_path / "comparison", RUN_ORDER)["svg"]
    assert panel_titles(open(svg).read()) == ["BBBP", "ESOL", "mytox", "myreg", "abctox"]


def test_the_report_pages_show_own_datasets(tmp_path, files):
    tables = write_tables(files, tmp_path / "tables", datasets=RUN_ORDER)
    csvs = [tables["classification.csv"], tables["regression.csv"]]
    html = open(pages.write_tables_html(csvs, tmp_path / "tables.html")).read()
    headers = re.findall(r"<th>([^<]*)</th>", html)
    assert headers == ["Model", "BBBP (ROC-AUC)", "mytox (ROC-AUC)", "abctox (ROC-AUC)", "Mean",
                       "Model", "ESOL (RMSE)", "myreg (MAE)"]
    comparison = plots.plot_comparison(files, tmp_path / "comparison", RUN_ORDER)["png"]
    overview = open(pages.write_overview_html(csvs, [comparison], tmp_path / "overview.html")).read()
    assert "<th>mytox (ROC-AUC)</th>" in overview and "<th>myreg (MAE)</th>" in overview


def test_the_commands_take_the_run_order(tmp_path, files, capsys):
    paths = list(map(str, files))
    assert main(["table", *paths, "--out-dir", str(tmp_path / "t"), "--datasets", *RUN_ORDER]) == 0
    assert "| BBBP (ROC-AUC) | mytox (ROC-AUC) | abctox (ROC-AUC) |" in (tmp_path / "t" / "classification.md").read_text()
    assert main(["plot", "comparison", *paths, "--out", str(tmp_path / "c.png"), "--datasets", *RUN_ORDER]) == 0
    assert panel_titles((tmp_path / "c.svg").read_text()) == ["BBBP", "ESOL", "mytox", "myreg", "abctox"]


def test_a_task_type_that_does_not_fit_its_metric_is_refused(tmp_path, files):
    path = run_metrics(tmp_path, "mytox", "batmannet_pretrained", 0, 0.7)
    path.write_text(path.read_text().replace('"classification"', '"regression"'))
    with pytest.raises(BbmnError, match=f"{path}.*does not fit"):
        load_results([path])
    path.write_text(path.read_text().replace('"regression"', '"ranking"'))
    with pytest.raises(BbmnError, match="task_type 'ranking'"):
        load_results([path])
