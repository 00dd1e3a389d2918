"""The pre-training ablation table and figure, from metric files and pre-training configs."""

import json
import math

import pandas as pd
import pytest

from bbmn.errors import BbmnError
from bbmn.eval.ablation import load_variants, mask_ratio_family, write_ablation
from bbmn.eval.plots import plot_ablation

#: (variant, mask ratio, decoder blocks, branches, dynamic masks, BBBP scores per seed)
VARIANTS = [(None, 0.6, 2, None, True, [0.90, 0.92]),  # the main run; a config without `branches`
            ("mask30", 0.3, 2, "both", True, [0.88, 0.86]),
            ("mask90", 0.9, 2, "both", True, [0.80, 0.84]),
            ("atoms_only", 0.6, 2, "atoms", True, [0.85, 0.87]),
            ("static", 0.6, 2, "both", False, [0.89, math.nan])]


def write_runs(root):
    files = []
    for variant, ratio, decoder, branches, dynamic, scores in VARIANTS:
        pretrain = root / (variant or "main") / "pretrain"
        pretrain.mkdir(parents=True)
        model = {"decoder_blocks": decoder, **({"branches": branches} if branches else {})}
        (pretrain / "config.json").write_text(json.dumps({"mask_ratio": ratio, "dynamic_mask": dynamic,
                                                          "model": model}))
        for seed, value in enumerate(scores):
            for dataset, metric, v in (("bbbp", "roc_auc", value), ("esol", "rmse", 1.0 + seed)):
                run = root / (variant or "main") / dataset / f"seed{seed}"
                run.mkdir(parents=True)
                (run / "metrics.json").write_text(json.dumps({
                    "dataset": dataset, "seed": seed, "metric": metric, "variant": variant,
                    "test": {"value": v}, "checkpoint": {"path": str(pretrain / "model.pt")}}))
                files.append(run / "metrics.json")
    return files


def test_the_table_has_one_row_per_variant_with_its_real_settings(tmp_path):
    files = write_runs(tmp_path / "runs")
    written = write_ablation(list(reversed(files)), tmp_path / "tables")
    frame = pd.read_csv(written["ablation.csv"])
    bbbp = frame[frame.dataset == "bbbp"].set_index("variant")
    assert list(bbbp.index) == ["default", "static", "atoms_only", "mask90", "mask30"]  # default first
    assert bbbp.loc["default", "mean"] == pytest.approx(0.91) and bbbp.loc["default", "std"] == pytest.approx(0.01)
    assert bbbp.loc["default", "branches"] == "both"  # read from a config written before the switch
    assert bbbp.loc["static", "masking"] == "static" and bbbp.loc["static", "n_seeds"] == 1
    assert bbbp.loc["atoms_only", "branches"] == "atoms"
    text = (tmp_path / "tables" / "ablation.md").read_text()
    assert "| mask30 | 0.3 | 2 | both | dynamic | 0.870 (0.010) | 1.500 (0.500) |" in text
    assert "| static | 0.6 | 2 | both | static | 0.890 (0.000) [1/2 seeds] |" in text


def test_the_mask_ratio_curve_takes_the_variants_that_change_only_the_ratio(tmp_path):
    variants = load_variants(write_runs(tmp_path))
    assert [v.settings["mask_ratio"] for v in mask_ratio_family(variants)] == [0.3, 0.6, 0.9]
    written = plot_ablation(write_runs(tmp_path / "again"), tmp_path / "ablation.png")
    assert (tmp_path / "ablation.png").stat().st_size > 1000 and written["svg"].endswith(".svg")


def test_a_run_twice_or_without_a_pretrained_model_is_a_clear_error(tmp_path):
    files = write_runs(tmp_path)
    with pytest.raises(BbmnError, match="two metric files for variant mask30 on bbbp seed 0"):
        load_variants([f for f in files if "mask30" in str(f)] * 2)
    scratch = json.loads(files[0].read_text()) | {"checkpoint": None}
    files[0].write_text(json.dumps(scratch))
    with pytest.raises(BbmnError, match="not a run fine-tuned from a pre-trained model"):
        load_variants(files[:1])


def test_a_model_file_without_its_run_gives_its_settings_from_the_card(tmp_path):
    from bbmn.eval.ablation import pretraining_settings
    from bbmn.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "model.pt", kind="batmannet-pretrained",
                    card={"training_config": {"mask_ratio": 0.45, "dynamic_mask": False,
                                              "model": {"decoder_blocks": 1, "branches": "bonds"}}})
    assert pretraining_settings(tmp_path / "model.pt") == {
        "mask_ratio": 0.45, "decoder_blocks": 1, "branches": "bonds", "masking": "static"}
    save_checkpoint(tmp_path / "old.pt", kind="batmannet-pretrained",
                    model_config={"mask_ratio": 0.6, "decoder_blocks": 2})
    assert pretraining_settings(tmp_path / "old.pt") == {
        "mask_ratio": 0.6, "decoder_blocks": 2, "branches": "both", "masking": None}
