"""End to end: `snakemake --cores 2` with the tiny preset, in a scratch working directory."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import REPO, TEST_DATA

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake(workdir, *args, check=True):
    """Run the workflow in ``workdir`` with the tiny preset; ``args`` may add --config entries."""
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
           str(workdir), "--cores", "2", *args]
    if "--config" not in args:
        cmd += ["--config", "preset=tiny"]
    # The rules call `bbmn`: the interpreter's own scripts folder must be on PATH even when the
    # venv was not activated (CI runs `.venv/bin/python -m pytest`).
    path = os.pathsep.join([str(SNAKEMAKE.parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "BBMN_DATA_MIRROR": str(TEST_DATA)}
    return subprocess.run(cmd, capture_output=True, text=True, check=check, env=env)


def tiny_workflow(tmp_path_factory, name: str, *overrides: str) -> Path:
    """A finished tiny-preset run in a fresh working directory with the repository's config.yaml;
    ``overrides`` are --config entries over the preset (a user's change to the config)."""
    workdir = tmp_path_factory.mktemp(name)
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    done = snakemake(workdir, *(("--config", "preset=tiny", *overrides) if overrides else ()), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return tiny_workflow(tmp_path_factory, "wf")


@pytest.mark.slow
def test_tiny_workflow_builds_the_data(tiny_run):
    data = tiny_run / "results" / "data"
    for name, n in (("bbbp", 292), ("esol", 100)):
        summary = json.loads((data / "clean" / f"{name}.summary.json").read_text())
        assert summary["input_rows"] == n and summary["kept"] + summary["rejected"] == n
        assert pq.read_metadata(data / "cache" / f"{name}.parquet").num_rows == summary["kept"]
        assert pq.read_metadata(data / "descriptors" / f"{name}.parquet").num_rows == summary["kept"]
        for seed in (0, 1):
            split = json.loads((data / "splits" / name / "balanced_scaffold" / f"seed{seed}.json").read_text())
            assert split["train_size"] + split["val_size"] + split["test_size"] == summary["kept"]
    assert pq.read_metadata(data / "cache" / "zinc200.parquet").num_rows == 200
    assert (tiny_run / "results" / "logs" / "clean" / "bbbp.log").is_file()


@pytest.mark.slow
def test_tiny_workflow_pretrains_and_tracks(tiny_run):
    summary = json.loads((tiny_run / "results" / "pretrain" / "zinc200" / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["ended"] == "done" and summary["params"] == 2_442_191
    assert (tiny_run / "results" / "pretrain" / "zinc200" / "model.pt").is_file()
    from mlflow.tracking import MlflowClient

    record = json.loads((tiny_run / "results" / "tracking" / "parent_run.json").read_text())
    client = MlflowClient(f"sqlite:///{tiny_run / 'mlflow.db'}")
    parent = client.get_run(record["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["preset"] == "tiny"
    children = client.search_runs([record["experiment_id"]],
                                  f"tags.mlflow.parentRunId = '{record['parent_run_id']}'")
    stages = sorted(c.data.tags["stage"] for c in children)
    # 1 pre-training, 2 datasets x 2 seeds x 5 fine-tuning kinds, 2 x 2 ECFP-RF,
    # 2 x 2 x {pre-trained, random} probes, the tables
    assert stages == ["baseline"] * 4 + ["finetune"] * 20 + ["pretrain"] + ["probe"] * 8 + ["table"]
    pretrain_run = next(c for c in children if c.data.tags["stage"] == "pretrain")
    assert pretrain_run.data.metrics["val_loss"] > 0
    finetunes = [c for c in children if c.data.tags["stage"] == "finetune"]
    assert {(c.data.tags["dataset"], c.data.tags["kind"]) for c in finetunes} == {
        (d, f"batmannet_{k}") for d in ("bbbp", "esol")
        for k in ("pretrained", "scratch", "descriptors_only", "graph_pretrained", "graph_scratch")}
    # representation health reaches MLflow: fine-tuning views and the probed encoders' blocks
    assert all("health.best_epoch.atom.input_share" in c.data.metrics for c in finetunes
               if c.data.tags["kind"] != "batmannet_descriptors_only")
    probes = [c for c in children if c.data.tags["stage"] == "probe"]
    assert all("health.stage_cosine.atom.6" in c.data.metrics for c in probes)


@pytest.mark.slow
def test_tiny_workflow_writes_the_tables(tiny_run):
    tables = tiny_run / "results" / "tables"
    classification = pd.read_csv(tables / "classification.csv")
    results = classification[classification.kind == "result"]
    assert set(results.row) == {"batmannet_pretrained", "batmannet_scratch", "batmannet_descriptors_only",
                                "batmannet_graph_pretrained", "batmannet_graph_scratch",
                                "probe_pretrained", "probe_random", "ecfp_rf"}
    assert set(results.dataset) == {"bbbp", "mean"}
    bbbp = results[results.dataset == "bbbp"]
    assert (bbbp.n_seeds == 2).all() and bbbp["mean"].between(0, 1).all() and bbbp["std"].notna().all()
    assert {"GROVER-base (48M params, 10M mols)", "GROVER-large (100M params)"} <= set(classification.row)
    paired = classification[classification.kind == "paired"]
    assert {"batmannet_pretrained-vs-batmannet_scratch", "probe_pretrained-vs-probe_random",
            "batmannet_graph_pretrained-vs-batmannet_graph_scratch"} <= set(paired.row)
    gain = paired[(paired.row == "batmannet_pretrained-vs-batmannet_scratch") & (paired.dataset == "bbbp")]
    assert gain["text"].iloc[0].endswith(("0/2", "1/2", "2/2"))  # seeds on which pre-training is better
    regression = pd.read_csv(tables / "regression.csv")
    esol = regression[(regression.kind == "result") & (regression.dataset == "esol")]
    assert len(esol) == 8 and (esol["mean"] > 0).all() and esol["mean"].map(math.isfinite).all()
    markdown = (tables / "classification.md").read_text()
    assert "balanced scaffold" in markdown and "seeds 0, 1" in markdown
    assert "| BatmanNet (pre-trained) |" in markdown and "| ECFP4 + RF |" in markdown
    # the controls are rows of the table
    for words in ("descriptors only", "graph only (pre-trained)", "graph only (scratch)",
                  "Linear probe (pre-trained encoder)", "Linear probe (random encoder)"):
        assert words in markdown, words
    assert pd.read_csv(tables / "paired.csv").set_index("table")["pairs"].min() > 0
    probe_table = (tables / "probe" / "classification.md").read_text()
    assert "| Linear probe (random encoder) |" in probe_table
    per_task = pd.read_csv(tables / "per_task.csv")
    assert set(per_task.task) == {"p_np", "logSolubility"}


@pytest.mark.slow
def test_nothing_reruns_and_a_param_change_reruns(tiny_run):
    assert "Nothing to be done" in snakemake(tiny_run, "-n").stdout
    changed = snakemake(tiny_run, "-n", "--config", "preset=tiny", "split={sizes: [0.7, 0.15, 0.15]}")
    assert "split" in changed.stdout and "clean " not in changed.stdout


def test_config_error_is_one_line_before_any_job(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    done = snakemake(tmp_path, "-n", "--config", "preset=tiny", "workers=two", check=False)
    assert done.returncode != 0
    assert "config key workers: 'two' is not of type 'integer'" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_tiny_workflow_draws_the_figures(tiny_run):
    figures = tiny_run / "results" / "figures"
    for name in ("pretrain_zinc200", "comparison", "roc_bbbp", "health"):
        for suffix in ("png", "svg"):
            assert (figures / f"{name}.{suffix}").stat().st_size > 5_000, f"{name}.{suffix}"
    assert not (figures / "roc_esol.png").exists()  # regression: no ROC curve
    tables = (figures / "tables.html").read_text()
    assert tables.count("<table>") == 2 and "BatmanNet (pre-trained)" in tables and "ESOL (RMSE)" in tables
    overview = (figures / "overview.html").read_text()
    assert overview.count("<table>") == 2 and overview.count('src="data:image/png;base64,') == 4


#: A user's dataset registered through config alone: a slice of ClinTox under a name of its own.
@pytest.mark.slow
def test_the_readmes_own_dataset_is_in_the_tables_figures_and_report(tmp_path_factory):
    """Issue 15: the README's example of adding a dataset (a local path: no sha256, no mirror),
    with ESOL beside it, is a column of the regression tables and of the report's pages and a panel
    of the comparison, after the paper's ESOL though run.datasets names it first. One fine-tuning
    kind, no probes, no leakage check: the tables are what is tested."""
    from tests.workflow.test_local_dataset import readme_dataset_example

    ((name, entry),) = readme_dataset_example()["datasets"].items()
    assay = tmp_path_factory.mktemp("assay") / Path(entry["path"]).name
    pd.read_csv(TEST_DATA / "esol_100.csv").rename(
        columns={"smiles": entry["smiles_column"], "logSolubility": entry["labels"][0]}).to_csv(assay, index=False)
    entry = {**entry, "path": str(assay)}
    run = tiny_workflow(tmp_path_factory, "own", f"datasets={{{name}: {json.dumps(entry)}}}",
                        f"run={{datasets: [{name}, esol]}}", "finetune={kinds: [pretrained]}",
                        "probe={encoders: []}", "leakage={check: false}")
    tables, figures = run / "results" / "tables", run / "results" / "figures"
    frame = pd.read_csv(tables / "regression.csv")
    assert list(dict.fromkeys(frame.dataset)) == ["esol", name]
    own = frame[(frame.kind == "result") & (frame.dataset == name)]
    assert set(own.row) == {"batmannet_pretrained", "ecfp_rf"} and own["mean"].notna().all()
    assert (frame[frame.kind == "reference"].set_index("dataset").loc[name, "text"] == "–").all()
    assert f"| Model | ESOL (RMSE) | {name} (RMSE) |" in (tables / "regression.md").read_text()
    assert f"<th>{name} (RMSE)</th>" in (figures / "tables.html").read_text()
    assert f"<th>{name} (RMSE)</th>" in (figures / "overview.html").read_text()
    svg = (figures / "comparison.svg").read_text()
    assert 0 < svg.index("ESOL") < svg.index(name)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tiny_run):
    done = snakemake(tiny_run, "--report", "report.html")
    assert done.returncode == 0, done.stderr[-3000:]
    return tiny_run / "report.html"


@pytest.mark.slow
def test_report_is_one_self_contained_page_with_tables_and_figures(report):
    import re

    page = report.read_text()
    assert "<script src=" not in page and "<link " not in page  # scripts, styles, images inlined
    desc = json.loads(re.search(r'<script id="workflow-desc">\s*var workflow_desc = (.*?);\n', page,
                                flags=re.S).group(1))
    # the landing page: both tables and every figure, embedded
    assert desc.count("<table>") == 2 and "BBBP (ROC-AUC)" in desc and "ESOL (RMSE)" in desc
    assert desc.count('src="data:image/png;base64,') == 4 and "preset <tt" in desc
    results = re.search(r'<script id="results">\s*var results = (.*?);\n', page, flags=re.S).group(1)
    for name in ("pretrain_zinc200.png", "comparison.png", "roc_bbbp.png", "health.png", "tables.html",
                 "overview.html", "classification.csv"):
        assert name in results, name
    for caption in ("population standard deviation", "most common class", "micro average"):
        assert caption in results, caption


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary (apt-get install -y chromium; .ci/run installs it)")
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # after the page's scripts ran: the landing page shows the tables and the figures
    assert dom.stdout.count("<table>") >= 2 and dom.stdout.count('src="data:image/png;base64,') >= 4
    assert "BatmanNet (pre-trained)" in dom.stdout and "Loading Snakemake Report" not in dom.stdout.split("<div id=\"app\">")[-1]
    shot = tmp_path / "report.png"
    done = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,4000",
                           "--virtual-time-budget=10000", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (4000, 1280) and pixels[..., :3].std() > 0.05  # not a blank page
    if os.environ.get("BBMN_SCREENSHOT"):  # keep a copy, e.g. for docs/report-screenshot.png
        shutil.copy(shot, os.environ["BBMN_SCREENSHOT"])


@pytest.mark.slow
def test_ablation_preset_pretrains_each_variant_and_compares_them(tmp_path):
    """Two pre-training variants end to end: each pre-trains with its overrides, is fine-tuned on
    the main run's splits, is tagged in MLflow, and is a row of the ablation table."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    target = "results/tables/ablation.md"
    plan = snakemake(tmp_path, "-n", "--config", "preset=tiny_ablation")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "pretrain_variant        2" in plan.stdout and "ablation                1" in plan.stdout
    done = snakemake(tmp_path, target, "--config", "preset=tiny_ablation", check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "results" / "tables" / "ablation.csv")
    rows = frame.drop_duplicates("variant").set_index("variant")
    assert list(rows.index) == ["default", "mask30", "atoms_only"]
    assert rows.loc["mask30", "mask_ratio"] == 0.3 and rows.loc["default", "mask_ratio"] == 0.6
    assert rows.loc["atoms_only", "branches"] == "atoms" and rows.loc["mask30", "branches"] == "both"
    assert set(frame.dataset) == {"bbbp", "esol"} and (frame.n_seeds == 2).all()
    assert (tmp_path / "results" / "figures" / "ablation.png").is_file()
    variant_model = tmp_path / "results" / "variants" / "mask30" / "pretrain" / "zinc200" / "model.pt"
    assert torch.load(variant_model, weights_only=True)["model_config"]["mask_ratio"] == 0.3
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bbmn")
    tagged = client.search_runs([experiment.experiment_id], "tags.variant = 'mask30'")
    stages = sorted(r.data.tags["stage"] for r in tagged)
    assert stages == ["finetune"] * 4 + ["pretrain"]
    pretrain = next(r for r in tagged if r.data.tags["stage"] == "pretrain")
    assert json.loads(pretrain.data.tags["variant_overrides"]) == {"mask_ratio": 0.3}
