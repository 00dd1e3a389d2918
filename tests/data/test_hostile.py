"""Hostile input: the corpus in tests/data/hostile/ through the CLI, and property-based tests.

Every file gets either a clear one-line error (exit status 2, no traceback) or a result whose rows
are all accounted for (kept + rejected = input rows, each reject with a reason). Molecules that
clean keeps must featurize and go through both models.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bbmn.chem.standardize import profile
from bbmn.cli.main import main
from bbmn.data.cache import GraphCache, featurize
from bbmn.data.clean import REJECT_REASONS, CleanConfig, clean, parse_label
from bbmn.data.masking import Masking
from bbmn.errors import BbmnError
from bbmn.models.batmannet import BatmanNet, reconstruction_loss
from bbmn.models.finetune import BatmanNetFinetune
from tests.conftest import TEST_DATA
from tests.models.test_finetune import SMALL

HOSTILE = TEST_DATA / "hostile"


def bbmn(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``bbmn args`` in-process: exit status, stdout, stderr."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def clean_cli(capsys, tmp_path, name, *extra):
    return bbmn(capsys, "clean", HOSTILE / name, "--out", tmp_path / "c.parquet", "--rejects",
                tmp_path / "r.csv", "--summary", tmp_path / "s.json", "--standardize", "as_given",
                "--labels", "y", "--task", "classification", *extra)


def rejects(tmp_path) -> dict[int, str]:
    with open(tmp_path / "r.csv", newline="") as fh:
        return {int(r["row"]): r["reason"] for r in csv.DictReader(fh)}


def assert_accounted(tmp_path, rows: int) -> dict:
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["input_rows"] == rows and summary["kept"] + summary["rejected"] == rows
    assert pq.read_metadata(tmp_path / "c.parquet").num_rows == summary["kept"]
    assert len(rejects(tmp_path)) == summary["rejected"]
    return summary


@pytest.mark.parametrize("name,extra,message", [
    ("empty.csv", (), "input file is empty (0 bytes)"),
    ("missing_smiles_column.csv", (), "SMILES column 'smiles' not found"),
    ("duplicate_columns.csv", (), "label column 'y' appears 2 times"),
    ("latin1.csv", (), "is not valid utf-8-sig text"),
    ("utf16.csv", (), "is not valid utf-8-sig text"),
    ("labels.csv", ("--smiles-col", "SMILES"), "SMILES column 'SMILES' not found"),
    ("no_such_file.csv", (), "input file not found"),
])
def test_unusable_files_are_one_line_errors(capsys, tmp_path, name, extra, message):
    code, _, err = clean_cli(capsys, tmp_path, name, *extra)
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bbmn clean: error: ") and message in last
    assert not (tmp_path / "c.parquet").exists() and not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("name,extra,rows,kept,reasons", [
    ("latin1.csv", ("--encoding", "latin-1"), 3, 3, {}),
    ("utf16.csv", ("--encoding", "utf-16"), 3, 3, {}),
    ("bom.csv", (), 2, 2, {}),
    ("quoted_newlines.csv", (), 3, 3, {}),
    ("ragged.csv", (), 4, 2, {1: "malformed_row", 2: "malformed_row"}),
    ("nul_byte.csv", (), 2, 1, {0: "control_character"}),
    ("header_only.csv", (), 0, 0, {}),
    # "yes", "2", "-1", "inf", "TRUE", "0.5", "NA" are not 0/1; "", "nan" are missing; "1.0", " 1 ", "1e0" are 1
    ("labels.csv", (), 14, 7, {2: "invalid_label", 6: "invalid_label", 7: "invalid_label",
                               8: "invalid_label", 11: "invalid_label", 12: "invalid_label",
                               13: "invalid_label"}),
])
def test_awkward_files_are_read_and_every_row_accounted_for(capsys, tmp_path, name, extra, rows, kept, reasons):
    code, out, err = clean_cli(capsys, tmp_path, name, *extra)
    assert code == 0, err
    summary = assert_accounted(tmp_path, rows)
    assert summary["kept"] == kept and rejects(tmp_path) == reasons
    assert json.loads(out.strip().splitlines()[-1])["kept"] == kept


def test_labels_are_read_strictly(capsys, tmp_path):
    assert clean_cli(capsys, tmp_path, "labels.csv")[0] == 0
    labels = {r["row"]: r["y"] for r in pq.read_table(tmp_path / "c.parquet").to_pylist()}
    assert labels[0] == 1.0 and labels[1] == 0.0 and labels[3] == 1.0 and labels[9] == 1.0 and labels[10] == 1.0
    assert math.isnan(labels[4]) and math.isnan(labels[5])  # "" and "nan": missing, row kept


def test_a_file_without_molecules_stops_at_the_split_with_one_line(capsys, tmp_path):
    assert clean_cli(capsys, tmp_path, "header_only.csv")[0] == 0
    assert bbmn(capsys, "featurize", tmp_path / "c.parquet", "--out", tmp_path / "cache.parquet")[0] == 0
    code, _, err = bbmn(capsys, "split", tmp_path / "c.parquet", "--out", tmp_path / "s.json")
    assert code == 2 and err.strip().splitlines()[-1] == "bbmn split: error: nothing to split: the dataset has no molecules"


@pytest.mark.parametrize("standardize", ["as_given", "standard"])
def test_odd_molecules_featurize_and_go_through_both_models(capsys, tmp_path, standardize):
    """One atom, ions without bonds, a noble gas, 300 atoms, isotopes, H2: all kept, all featurized,
    and finite losses from the pre-training and the fine-tuning model, in one batch and alone."""
    code, _, err = bbmn(capsys, "clean", HOSTILE / "odd_molecules.csv", "--out", tmp_path / "c.parquet",
                        "--rejects", tmp_path / "r.csv", "--summary", tmp_path / "s.json",
                        "--standardize", standardize, "--labels", "y", "--task", "classification")
    assert code == 0, err
    assert assert_accounted(tmp_path, 7)["kept"] == 7
    assert bbmn(capsys, "featurize", tmp_path / "c.parquet", "--out", tmp_path / "cache.parquet")[0] == 0
    graphs = GraphCache(tmp_path / "cache.parquet").read()
    assert len(graphs) == 7 and max(graphs.atom_ptr[1:] - graphs.atom_ptr[:-1]) == 300
    torch.manual_seed(0)
    pretrain_model = BatmanNet(**SMALL, decoder_blocks=1)
    finetune_model = BatmanNetFinetune(1, "classification", **SMALL)
    for idx in [list(range(7)), *([i] for i in range(7))]:
        arrays = graphs.take(idx)
        batch = Masking(0.6, dynamic=True, seed=0)(arrays.to_batch(), epoch=0)
        loss = reconstruction_loss(pretrain_model(batch), batch)
        loss.total.backward()
        outputs = finetune_model(arrays.to_batch(), torch.zeros(len(idx), 200))
        assert all(o.shape == (len(idx), 1) and torch.isfinite(o).all() for o in outputs)
        assert math.isfinite(float(loss.total.detach()))
        assert math.isfinite(float(finetune_model.loss(outputs, torch.ones(len(idx), 1)).total.detach()))


@pytest.fixture(scope="module")
def one_class(tmp_path_factory):
    """The one-class-test dataset cleaned, featurized, with descriptors (its split is hand-made)."""
    d = tmp_path_factory.mktemp("one_class")
    assert main(["clean", str(HOSTILE / "one_class_test.csv"), "--out", str(d / "c.parquet"),
                 "--rejects", str(d / "r.csv"), "--labels", "active", "--task", "classification",
                 "--standardize", "as_given"]) == 0
    assert main(["featurize", str(d / "c.parquet"), "--out", str(d / "cache.parquet")]) == 0
    assert main(["descriptors", str(d / "c.parquet"), "--out", str(d / "d.parquet")]) == 0
    return d


@pytest.mark.parametrize("model", ["finetune", "ecfp-rf"])
def test_a_one_class_test_part_is_reported_not_scored(capsys, tmp_path, one_class, model, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("BBMN_PLAIN_MALLOC", "1")  # no re-exec of the test process
    split = HOSTILE / "one_class_test.split.json"
    if model == "finetune":
        args = ["finetune", one_class / "cache.parquet", "--descriptors", one_class / "d.parquet",
                "--epochs", "1", "--threads", "1", "--hidden", "32", "--encoder-blocks", "2"]
    else:
        args = ["baseline", "ecfp-rf", one_class / "c.parquet", "--n-estimators", "5"]
    code, out, err = bbmn(capsys, *args, "--split", split, "--out", tmp_path / "run", "--dataset", "one_class",
                          "--metric", "roc_auc")
    assert code == 0, err[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert math.isnan(metrics["test"]["value"])
    assert metrics["test"]["skipped"] == {"active": "one class only (1)"}
    assert not math.isnan(metrics["val"]["value"])  # validation has both classes
    assert (tmp_path / "run" / "predictions.csv").read_text().count("\n") == 1 + 4


# ------------------------------------------------------------------------ property-based tests
@contextlib.contextmanager
def cleaned(text: str, cfg: CleanConfig) -> Iterator[tuple[dict, Path]]:
    """Write ``text`` to a CSV in a fresh directory and clean it: (summary, directory)."""
    with tempfile.TemporaryDirectory(prefix="bbmn-hostile-") as d:
        d = Path(d)
        (d / "in.csv").write_text(text, encoding="utf-8", newline="")
        yield clean(d / "in.csv", d / "c.parquet", d / "r.csv", None, cfg), d


#: examples per property; BBMN_FUZZ_EXAMPLES=5000 for a long hunt
FUZZ = settings(max_examples=int(os.environ.get("BBMN_FUZZ_EXAMPLES", "100")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(rows=st.lists(st.tuples(st.text(max_size=40), st.text(max_size=6)), max_size=25),
       task=st.sampled_from(["classification", "regression"]))
def test_random_cells_are_kept_or_rejected_never_an_exception(rows, task):
    lines = []
    for smiles, label in rows:
        with tempfile.SpooledTemporaryFile(mode="w+", newline="") as fh:
            csv.writer(fh).writerow([smiles, label])
            fh.seek(0)
            lines.append(fh.read())
    cfg = CleanConfig(label_cols=["y"], task=task, standardize=profile("as_given"), chunk_rows=7)
    with cleaned("smiles,y\n" + "".join(lines), cfg) as (summary, d):  # well-formed: never an error
        assert summary["input_rows"] == len(rows) and summary["kept"] + summary["rejected"] == len(rows)
        with open(d / "r.csv", newline="") as fh:
            got = list(csv.DictReader(fh))
        assert {r["reason"] for r in got} <= set(REJECT_REASONS)
        kept_rows = pq.read_table(d / "c.parquet", columns=["row"]).column("row").to_pylist()
        assert sorted(kept_rows + [int(r["row"]) for r in got]) == list(range(len(rows)))


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_are_an_error_or_fully_accounted(data):
    with tempfile.TemporaryDirectory(prefix="bbmn-bytes-") as d:
        d = Path(d)
        (d / "in.csv").write_bytes(data)
        try:
            summary = clean(d / "in.csv", d / "c.parquet", d / "r.csv", None, CleanConfig(smiles_col="smiles"))
        except BbmnError as exc:
            assert "\n" not in str(exc) and not (d / "c.parquet").exists()
            return
        assert summary["kept"] + summary["rejected"] == summary["input_rows"]
        assert pq.read_metadata(d / "c.parquet").num_rows == summary["kept"]


def _seed_smiles() -> list[str]:
    with open(TEST_DATA / "bbbp_sample.csv", newline="") as fh:
        labelled = [r["smiles"] for r in csv.DictReader(fh)][:60]
    corpus = (TEST_DATA / "zinc_200.smi").read_text().split()[:60]
    return labelled + corpus


SEED_SMILES = _seed_smiles()
ALPHABET = list("CNOSPFIcnosp()[]=#@+-.0123456789%/\\H*") + ["Cl", "Br", "[nH]", "[C@@H]", "[O-]", "[N+]"]
MUTATION = st.tuples(st.sampled_from(["insert", "delete", "replace", "swap"]), st.integers(0, 500),
                     st.sampled_from(ALPHABET))


def mutate(smiles: str, mutations: list[tuple[str, int, str]]) -> str:
    s = list(smiles)
    for op, at, token in mutations:
        i = at % (len(s) + 1)
        if op == "insert":
            s.insert(i, token)
        elif s and op == "delete":
            del s[i % len(s)]
        elif s and op == "replace":
            s[i % len(s)] = token
        elif len(s) > 1 and op == "swap":
            j = i % (len(s) - 1)
            s[j], s[j + 1] = s[j + 1], s[j]
    return "".join(s)


@FUZZ
@given(molecules=st.lists(st.tuples(st.sampled_from(SEED_SMILES), st.lists(MUTATION, max_size=4)),
                          min_size=1, max_size=20),
       standardize=st.sampled_from(["as_given", "standard"]))
def test_mutated_smiles_that_clean_keeps_all_featurize(molecules, standardize):
    smiles = [mutate(s, m) for s, m in molecules]
    text = "smiles\n" + "".join(f'"{s}"\n' for s in smiles)
    with cleaned(text, CleanConfig(standardize=profile(standardize), chunk_rows=8)) as (summary, d):
        assert summary["input_rows"] == len(smiles) and summary["kept"] + summary["rejected"] == len(smiles)
        result = featurize(d / "c.parquet", d / "cache.parquet")
        assert result["failed"] == 0 and result["molecules"] == summary["kept"]  # nothing dropped silently


@FUZZ
@given(text=st.text(max_size=12), task=st.sampled_from(["classification", "regression", None]))
def test_a_label_cell_is_a_number_missing_or_a_value_error(text, task):
    try:
        value = parse_label(text, task)
    except ValueError:
        return
    assert math.isnan(value) or math.isfinite(value)
    if task == "classification" and not math.isnan(value):
        assert value in (0.0, 1.0)
