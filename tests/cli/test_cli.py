"""The CLI, run in-process: the commands of the README, and one-line errors."""

import json

import pyarrow.parquet as pq
import pytest

from bbmn.cli.main import main


def test_clean_featurize_split_descriptors(tmp_path, test_data, capsys):
    out, rej, cache = tmp_path / "c.parquet", tmp_path / "rej.csv", tmp_path / "cache.parquet"
    assert main(["clean", str(test_data / "tox21_65.csv"), "--smiles-col", "smiles", "--labels", "*",
                 "--task", "classification", "--standardize", "as_given", "--out", str(out),
                 "--rejects", str(rej), "--summary", str(tmp_path / "s.json")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["input_rows"] == 65 and printed["kept"] + printed["rejected"] == 65
    assert printed["reasons"] == {"sanitize_failed": 1}  # tox21 row 1322 (an [AlH3]), row 4 here
    assert main(["featurize", str(out), "--out", str(cache), "--workers", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["molecules"] == 64
    assert pq.read_metadata(cache).num_rows == 64
    assert main(["split", str(out), "--out", str(tmp_path / "split.json"), "--seed", "1"]) == 0
    split = json.loads((tmp_path / "split.json").read_text())
    assert split["train_size"] + split["val_size"] + split["test_size"] == 64
    assert 4 not in split["train"] + split["val"] + split["test"]
    assert main(["descriptors", str(out), "--out", str(tmp_path / "d.parquet")]) == 0
    assert pq.read_metadata(tmp_path / "d.parquet").num_rows == 64


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    assert main(["clean", str(missing), "--out", str(tmp_path / "o.parquet"),
                 "--rejects", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bbmn clean: error: input file not found") and "Traceback" not in err
    (tmp_path / "x.csv").write_text("smi\nCCO\n")
    assert main(["clean", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o.parquet"),
                 "--rejects", str(tmp_path / "r.csv")]) == 2
    assert "SMILES column 'smiles' not found" in capsys.readouterr().err
    assert main(["featurize", str(tmp_path / "x.csv"), "--out", str(tmp_path / "c.parquet")]) == 2
    assert "cannot read Parquet file" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("fetch", "clean", "featurize", "descriptors", "split"):
        assert command in out
