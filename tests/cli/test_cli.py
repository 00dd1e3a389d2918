"""The CLI, run in-process: the commands of the README, and one-line errors."""

import csv
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


def test_clean_names_lines_counts_blank_lines_and_filters_a_corpus(tmp_path, capsys):
    """The issue's corpus in small: a blank first line, a whitespace-only line, a NUL before a C,
    a lone xenon atom, methane and ethane."""
    src = tmp_path / "corpus.smi"
    src.write_bytes(b"\nCCO\n \t\n\x00C\n[Xe]\nC\nCC\nc1ccccc1 benzene\n")
    args = ["clean", str(src), "--out", str(tmp_path / "c.parquet"), "--rejects", str(tmp_path / "r.csv"),
            "--dedupe", "--min-heavy-atoms", "3", "--elements", "featurizer"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (printed["input_lines"], printed["blank_lines"], printed["input_rows"], printed["kept"]) == (8, 2, 6, 2)
    assert printed["reasons"] == {"control_character": 1, "too_few_atoms": 3}
    with open(tmp_path / "r.csv", newline="") as fh:
        rejects = [(r["line"], r["input"], r["reason"]) for r in csv.DictReader(fh)]
    assert rejects == [("4", "\x00C", "control_character"), ("5", "[Xe]", "too_few_atoms"),
                       ("6", "C", "too_few_atoms"), ("7", "CC", "too_few_atoms")]
    kept = pq.read_table(tmp_path / "c.parquet", columns=["row", "line"]).to_pylist()
    assert kept == [{"row": 0, "line": 2}, {"row": 5, "line": 8}]
    with pytest.raises(SystemExit):
        main([*args[:-1], "noble"])
    assert "invalid choice: 'noble'" in capsys.readouterr().err


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
