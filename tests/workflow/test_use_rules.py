"""rules/use.smk with the tiny preset: the leakage check, the filtered corpus, predict, embed and
the Model Registry entry of an ensemble."""

import csv
import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, TEST_DATA
from tests.workflow.test_workflow import snakemake

USE = f"""
leakage:
  drop_from_corpus: true
predict:
  - {{name: bbbp_new, input: {TEST_DATA / 'bbbp_150.csv'}, dataset: bbbp, keep: [p_np]}}
embed:
  - {{name: zinc_pre, input: {TEST_DATA / 'zinc_200.smi'}}}
register:
  - {{name: bbbp-batmannet, dataset: bbbp}}
"""
TARGETS = ["results/leakage/zinc200/summary.md", "results/predictions/bbbp_new.csv",
           "results/embeddings/zinc_pre.parquet", "results/registered/bbbp-batmannet/registration.json"]


def workdir(tmp_path, use=USE):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "use.yaml").write_text(use)
    return tmp_path


def test_pretraining_reads_the_filtered_corpus_only_when_asked(tmp_path):
    d = workdir(tmp_path)
    plain = snakemake(d, "-n", "--config", "preset=tiny").stdout
    assert "results/leakage/zinc200/summary.md" in plain  # a default target
    assert "input: results/data/cache/zinc200.parquet\n" in plain and "noleak" not in plain
    dropped = snakemake(d, "-n", "--configfile", str(d / "use.yaml"), "--config", "preset=tiny").stdout
    assert "input: results/data/cache/zinc200.noleak.parquet\n" in dropped
    for rule in ("leakage_filter", "predict", "embed", "inchikeys", "register"):
        assert f"rule {rule}:" in dropped


def test_a_predict_entry_with_an_unknown_dataset_is_one_line(tmp_path):
    d = workdir(tmp_path, "predict: [{name: x, input: x.csv, dataset: bbbq}]\n")
    done = snakemake(d, "-n", "--configfile", str(d / "use.yaml"), "--config", "preset=tiny", check=False)
    assert done.returncode != 0
    assert "config key predict.x.dataset: 'bbbq' is not in the datasets registry" in done.stdout + done.stderr


@pytest.mark.slow
def test_tiny_run_of_the_use_rules(tmp_path):
    d = workdir(tmp_path)
    done = snakemake(d, *TARGETS, "--configfile", str(d / "use.yaml"), "--config", "preset=tiny", check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = d / "results"
    with open(results / "leakage" / "zinc200" / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert {(r["dataset"], r["seed"], r["part"]) for r in summary} == {
        (n, s, p) for n in ("bbbp", "esol") for s in ("0", "1") for p in ("val", "test")}
    filtered = json.loads((results / "leakage" / "zinc200" / "filter.json").read_text())
    assert filtered["molecules"] == 200 and filtered["kept"] + filtered["dropped"] == 200
    pretrain = json.loads((results / "pretrain" / "zinc200" / "summary.json").read_text())
    assert pretrain["steps"] == 20
    with open(results / "predictions" / "bbbp_new.csv", newline="") as fh:
        predictions = list(csv.DictReader(fh))
    assert len(predictions) == 150 and list(predictions[0])[-3:] == ["p_np_input", "p_np", "p_np_std"]
    assert [int(r["row"]) for r in predictions] == list(range(150))
    embeddings = pq.read_table(results / "embeddings" / "zinc_pre.parquet")
    assert embeddings.num_rows == 200 and embeddings.schema.field("embedding").type.list_size == 200
    assert (results / "logs" / "predict" / "bbbp_new.log").is_file()
    registration = json.loads((results / "registered" / "bbbp-batmannet" / "registration.json").read_text())
    assert registration["version"] == 1 and registration["uri"] == "sqlite:///mlflow.db"
    assert registration["members"] == [f"results/finetune/bbbp/pretrained/seed{s}/model.pt" for s in (0, 1)]
    mlflow.set_tracking_uri(f"sqlite:///{d / 'mlflow.db'}")
    try:  # the registered ensemble scores like the predict rule's ensemble
        model = mlflow.pyfunc.load_model("models:/bbbp-batmannet/1")
        smiles = [r["input"] for r in predictions[:5]]
        got = model.predict(pd.DataFrame({"smiles": smiles}))
    finally:
        mlflow.set_tracking_uri(None)
    assert np.allclose(got["p_np"].to_numpy(float), [float(r["p_np"]) for r in predictions[:5]])
