"""Report figures: written as PNG and SVG from run files, readable, and failing clearly on bad input."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bbmn.cli.main import main
from bbmn.errors import BbmnError
from bbmn.eval import plots
from bbmn.kinds import row_order

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


def test_comparison_bars_are_our_rows_in_order_then_the_published_ones(runs):
    cells = plots.comparison_cells(plots.load_results(runs["esol"]))["esol"]
    cells["ecfp_rf"].values[1] = float("nan")  # a seed that could not be scored
    bars = plots.comparison_bars(cells, {row: row for row in cells}, "esol")
    ours = [b for b in bars if b.hatch is None]
    assert [b.key for b in ours] == sorted(cells, key=row_order)
    assert [(b.mean, b.std) for b in ours] == [(cells[b.key].mean, cells[b.key].std) for b in ours]
    assert [(b.scored, b.seeds) for b in ours] == [(2, 2), (2, 2), (1, 2)]
    published = bars[len(ours):]
    assert published and all(b.hatch == "//" and b.label.endswith("(published)") and b.seeds is None
                             for b in published)
    assert plots.Bar("k", "l", 0.8, float("nan"), "C0").bottom == 0.8
    assert plots.Bar("k", "l", 0.8, 0.1, "C0").bottom == pytest.approx(0.7)


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


def test_cli_plot_writes_and_fails_in_one_line(runs, tmp_path, capsys):
    assert main(["plot", "roc", *map(str, runs["clintox"]), "--out", str(tmp_path / "roc.png")]) == 0
    assert (tmp_path / "roc.png").is_file() and (tmp_path / "roc.svg").is_file()
    assert main(["plot", "roc", *map(str, runs["esol"]), "--out", str(tmp_path / "r2.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bbmn plot: error:") and "classification" in err[0]
    assert not (tmp_path / "r2.png").exists()
