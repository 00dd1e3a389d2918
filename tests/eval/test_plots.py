"""Report figures: written as PNG and SVG from run files, readable, and failing clearly on bad input."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bbmn.cli.main import main
from bbmn.errors import BbmnError
from bbmn.eval import plots

ROWS = {"batmannet_pretrained": "BatmanNet (pre-trained)", "batmannet_scratch": "BatmanNet (scratch)",
        "ecfp_rf": "ECFP4 + RF"}


def _run(root, dataset, row, seed, tasks, task_type, metric, rng, n=40):
    """A run directory as fine-tuning / baselines write it: metrics.json + predictions.csv."""
    out = root / dataset / row / f"seed{seed}"
    out.mkdir(parents=True)
    if task_type == "classification":
        labels = rng.integers(0, 2, size=(n, len(tasks))).astype(float)
        labels[0, -1] = np.nan  # a missing label
        scores = np.clip(0.3 * labels + rng.random((n, len(tasks))) * 0.7, 0, 1)
    else:
        labels = rng.normal(size=(n, len(tasks)))
        scores = labels + rng.normal(scale=0.5, size=labels.shape)
    lines = ["row,smiles," + ",".join(c for t in tasks for c in (t, f"{t}_pred"))]
    for i in range(n):
        cells = [str(i), "C" * (i % 5 + 1)]
        for j in range(len(tasks)):
            cells += ["" if np.isnan(labels[i, j]) else repr(float(labels[i, j])), repr(float(scores[i, j]))]
        lines.append(",".join(cells))
    (out / "predictions.csv").write_text("\n".join(lines) + "\n")
    value = float(rng.uniform(0.6, 0.9)) if metric == "roc_auc" else float(rng.uniform(0.5, 1.5))
    (out / "metrics.json").write_text(json.dumps({
        "dataset": dataset, "seed": seed, "row": row, "label": ROWS[row], "metric": metric,
        "task_type": task_type, "tasks": tasks, "split": {"method": "balanced_scaffold"},
        "test": {"metric": metric, "value": value, "per_task": [value] * len(tasks)}}))
    return out / "metrics.json"


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    files = {"clintox": [], "esol": []}
    for row in ROWS:
        for seed in (0, 1):
            files["clintox"].append(_run(tmp_path / "r", "clintox", row, seed, ["FDA", "TOX"],
                                         "classification", "roc_auc", rng))
            files["esol"].append(_run(tmp_path / "r", "esol", row, seed, ["logS"], "regression", "rmse", rng))
    return files


def _check_figure(written, *texts):
    assert set(written) == {"png", "svg"}
    png = open(written["png"], "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    svg = open(written["svg"]).read()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for text in texts:  # text stays text in the SVG (svg.fonttype none)
        assert text in svg, text


def test_comparison_has_every_model_and_the_reference(runs, tmp_path):
    written = plots.plot_comparison(runs["clintox"] + runs["esol"], tmp_path / "fig" / "comparison.png")
    assert written["png"].endswith("comparison.png") and written["svg"].endswith("comparison.svg")
    _check_figure(written, "ClinTox", "ESOL", "BatmanNet (pre-trained)", "BatmanNet (scratch)",
                  "ECFP4 + RF", "GROVER-large (100M params) (published)", "seeds 0, 1")


def test_comparison_cells_are_mean_and_population_std(runs):
    results = plots.load_results(runs["esol"])
    cell = plots.comparison_cells(results)["esol"]["ecfp_rf"]
    values = [json.loads(p.read_text())["test"]["value"] for p in runs["esol"] if "ecfp_rf" in str(p)]
    assert cell.mean == pytest.approx(np.mean(values)) and cell.std == pytest.approx(np.std(values))


def test_roc_pools_tasks_and_names_each_seed(runs, tmp_path):
    written = plots.plot_roc(runs["clintox"], tmp_path / "roc_clintox")
    _check_figure(written, "ClinTox", "2 tasks pooled", "seed 0: AUC", "seed 1: AUC", "ECFP4 + RF")
    metrics, labels, scores = plots.read_predictions(runs["clintox"][0])
    assert labels.shape == (40, 2) and np.isnan(labels[0, 1])
    fpr, tpr, auc = plots.pooled_roc(labels, scores)
    present = ~np.isnan(labels)
    assert auc == pytest.approx(roc_auc_score(labels[present], scores[present]))
    assert fpr[0] == 0 and tpr[-1] == 1


def test_roc_refuses_regression_and_mixed_datasets(runs, tmp_path):
    with pytest.raises(BbmnError, match="classification dataset"):
        plots.plot_roc(runs["esol"], tmp_path / "roc")
    one_class = plots.pooled_roc(np.ones((5, 1)), np.linspace(0, 1, 5).reshape(5, 1))
    assert one_class is None


def test_roc_names_a_missing_prediction_column(runs, tmp_path):
    path = runs["clintox"][0]
    csv = path.with_name("predictions.csv")
    csv.write_text(csv.read_text().replace("TOX_pred", "other"))
    with pytest.raises(BbmnError, match="TOX_pred"):
        plots.plot_roc([path], tmp_path / "roc")


def test_pretrain_curves_from_history_and_steps(tmp_path):
    run = tmp_path / "pretrain"
    run.mkdir()
    steps = [{"step": s, "epoch": s / 100, "train_loss": 5.0 / (1 + s / 50), "lr": 1e-4} for s in range(50, 501, 50)]
    steps.append(steps[-1])  # a resumed run repeats a step
    (run / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    history = [{"epoch": e, "step": 100 * e * 2.5, "train_loss": 2.0 / e, "val_loss": 2.2 / e,
                "val_acc.atom_element": 0.5 + 0.1 * e, "val_majority.atom_element": 0.6,
                "val_acc.bond_type": 0.6 + 0.05 * e, "val_majority.bond_type": 0.55} for e in (1, 2)]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    epochs, logged = plots.read_pretrain_history(run)
    assert len(epochs) == 2 and [r["step"] for r in logged] == list(range(50, 501, 50))
    _check_figure(plots.plot_pretrain(run, tmp_path / "curves.svg"), "atom_element", "bond_type",
                  "validation", "train (logged steps)")


def test_pretrain_curves_need_a_history(tmp_path):
    with pytest.raises(BbmnError, match="does not exist"):
        plots.plot_pretrain(tmp_path / "nowhere", tmp_path / "x")
    (tmp_path / "run").mkdir()
    with pytest.raises(BbmnError, match="no history.jsonl"):
        plots.plot_pretrain(tmp_path / "run", tmp_path / "x")
    (tmp_path / "run" / "history.jsonl").write_text("{not json\n")
    with pytest.raises(BbmnError, match="line 1"):
        plots.plot_pretrain(tmp_path / "run", tmp_path / "x")


def test_tables_html_from_the_table_step(runs, tmp_path):
    from bbmn.eval.tables import write_tables

    written = write_tables(runs["clintox"] + runs["esol"], tmp_path / "tables")
    out = plots.write_tables_html([written["classification.csv"], written["regression.csv"]],
                                  tmp_path / "figures" / "tables.html")
    text = open(out).read()
    assert text.count("<table>") == 2 and "ClinTox (ROC-AUC)" in text and "ESOL (RMSE)" in text
    assert "GROVER-base" in text and "balanced scaffold split" in text and "nan" not in text


def test_cli_plot_writes_and_fails_in_one_line(runs, tmp_path, capsys):
    assert main(["plot", "roc", *map(str, runs["clintox"]), "--out", str(tmp_path / "roc.png")]) == 0
    assert (tmp_path / "roc.png").is_file() and (tmp_path / "roc.svg").is_file()
    assert main(["plot", "roc", *map(str, runs["esol"]), "--out", str(tmp_path / "r2.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bbmn plot: error:") and "classification" in err[0]
    assert not (tmp_path / "r2.png").exists()


def test_overview_inlines_tables_and_figures(runs, tmp_path):
    from bbmn.eval.tables import write_tables

    tables = write_tables(runs["clintox"] + runs["esol"], tmp_path / "tables")
    roc = plots.plot_roc(runs["clintox"], tmp_path / "roc_clintox")["png"]
    comparison = plots.plot_comparison(runs["clintox"] + runs["esol"], tmp_path / "comparison")["png"]
    out = plots.write_overview_html([tables["classification.csv"], tables["regression.csv"]],
                                    [comparison, roc], tmp_path / "overview.html")
    text = open(out).read()
    assert text.count("<table>") == 2 and text.count('src="data:image/png;base64,') == 2
    assert "ROC curves of the test predictions" in text and "(comparison.png)" in text
    with pytest.raises(BbmnError, match="not a PNG"):
        plots.write_overview_html([tables["classification.csv"]], [tables["classification.md"]], tmp_path / "x.html")
