"""bbmn clean: row accounting on hostile input, strict labels, duplicates, clear errors."""

import csv
import gzip
import json

import pyarrow.parquet as pq
import pytest

from bbmn.chem.standardize import profile
from bbmn.data.clean import CleanConfig, clean, parse_label
from bbmn.errors import BbmnError

HOSTILE_ROWS = [
    ("CCO", "1"),                       # fine
    ("", "0"),                          # empty SMILES
    ("not a smiles", "1"),              # garbage
    ("C(C)(C)(C)(C)C", "0"),            # valence error
    ("CCN", "yes"),                     # label not a number
    ("CCC", ""),                        # missing label: kept, NaN
    ("CCCl", "1.0"),                    # "1.0" is a fine 0/1 label
    ("CCBr", "2"),                      # not 0/1
    ("[Na+].[O-]C(=O)c1ccccc1", "1"),   # a salt: kept as given
    ("c1ccccc1C(=O)O", "nan"),          # NaN label
    ("CCO", "0"),                       # duplicate molecule, conflicting label: kept, reported
    ("Cé", "1"),                        # non-ASCII
    ("[Fe+2]", "0"),                    # a metal ion
    ("C" * 400, "1"),                   # a huge molecule
    ("c1cccc1", "0"),                   # aromaticity that cannot be kekulized
]


def write_csv(path, rows, header=("smiles", "label")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def run(tmp_path, src, **cfg):
    out, rej, summ = tmp_path / "out.parquet", tmp_path / "rejects.csv", tmp_path / "summary.json"
    result = clean(src, out, rej, summ, CleanConfig(**cfg))
    with open(rej) as fh:
        rejects = list(csv.DictReader(fh))
    return result, pq.read_table(out).to_pylist(), rejects, json.loads(summ.read_text())


@pytest.mark.parametrize("workers", [1, 2])
def test_every_row_is_kept_or_rejected_with_a_reason(tmp_path, workers):
    src = tmp_path / "hostile.csv"
    write_csv(src, HOSTILE_ROWS)
    result, kept, rejects, summary = run(tmp_path, src, label_cols=["label"], task="classification",
                                         standardize=profile("as_given"), workers=workers, chunk_rows=4)
    assert result["input_rows"] == len(HOSTILE_ROWS)
    assert len(kept) + len(rejects) == len(HOSTILE_ROWS) == summary["kept"] + summary["rejected"]
    kept_rows = {r["row"] for r in kept}
    rejected = {int(r["row"]): r["reason"] for r in rejects}
    assert kept_rows.isdisjoint(rejected) and kept_rows | set(rejected) == set(range(len(HOSTILE_ROWS)))
    assert rejected == {1: "empty_smiles", 2: "invalid_smiles", 3: "sanitize_failed",
                        4: "invalid_label", 7: "invalid_label", 11: "invalid_smiles",
                        14: "sanitize_failed"}
    assert summary["reasons"] == {"empty_smiles": 1, "invalid_smiles": 2, "sanitize_failed": 2,
                                  "invalid_label": 2}
    by_row = {r["row"]: r for r in kept}
    assert by_row[5]["label"] is None or by_row[5]["label"] != by_row[5]["label"]  # NaN
    assert by_row[6]["label"] == 1.0
    assert by_row[8]["smiles"] == "O=C([O-])c1ccccc1.[Na+]"  # as_given keeps the salt
    assert all(r["detail"] for r in rejects)
    # duplicates are reported with the conflicting labels, not dropped
    dup = summary["duplicates"]
    assert dup["duplicated_molecules"] == 1 and dup["conflicting_label_molecules"] == 1
    assert dup["examples"][0]["rows"] == [0, 10]


def test_standard_profile_strips_salts_and_neutralizes(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, [("[Na+].[O-]C(=O)c1ccccc1",), ("C[NH3+].[Cl-]",), ("OC(=O)c1ccccc1",)], header=("smiles",))
    _, kept, rejects, _ = run(tmp_path, src, standardize=profile("standard"), dedupe=True)
    assert [r["smiles"] for r in kept] == ["O=C(O)c1ccccc1", "CN"]
    assert rejects[0]["row"] == "2" and rejects[0]["reason"] == "duplicate"
    assert "row 0" in rejects[0]["detail"]


def test_max_heavy_atoms(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, [("C" * 30,), ("CCO",)], header=("smiles",))
    _, kept, rejects, _ = run(tmp_path, src, standardize=profile("standard", max_heavy_atoms=20))
    assert [r["smiles"] for r in kept] == ["CCO"] and rejects[0]["reason"] == "too_many_atoms"


def test_quoted_newlines_bom_and_malformed_rows(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes("\ufeffsmiles,name\nCCO,\"two\nlines\"\nCCN,x,extra\n\nCCC,ok\n".encode())
    result, kept, rejects, _ = run(tmp_path, src)
    assert result["input_rows"] == 3  # the blank line is not a row
    assert [r["row"] for r in kept] == [0, 2]
    assert rejects[0]["row"] == "1" and rejects[0]["reason"] == "malformed_row"


def test_smi_and_gzip(tmp_path):
    src = tmp_path / "in.smi.gz"
    with gzip.open(src, "wt") as fh:
        fh.write("CCO ethanol\n\nc1ccccc1\tbenzene\nxx\n")
    result, kept, rejects, _ = run(tmp_path, src, dedupe=True)
    assert result["input_rows"] == 3 and len(kept) == 2 and rejects[0]["reason"] == "invalid_smiles"


@pytest.mark.parametrize("content,cfg,message", [
    (b"", {}, "empty"),
    (b"smiles\n", {}, None),  # header only: fine, zero rows
    (b"smi,label\nCCO,1\n", {}, "SMILES column 'smiles' not found"),
    (b"smiles,label\nCCO,1\n", {"label_cols": ["lab"], "task": "regression"}, "label column 'lab' not found"),
    (b"smiles,label,label\nCCO,1,1\n", {"label_cols": ["label"], "task": "regression"}, "appears 2 times"),
    ("smiles\nCCO\nC\u00e9\n".encode("latin-1"), {}, "not valid utf-8-sig"),
    (b"smiles,label\nCCO,1\n", {"label_cols": ["label"]}, "without a task type"),
])
def test_clear_errors(tmp_path, content, cfg, message):
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    if message is None:
        result, kept, rejects, _ = run(tmp_path, src, **cfg)
        assert result["input_rows"] == 0 and kept == [] and rejects == []
        return
    with pytest.raises(BbmnError, match=message):
        run(tmp_path, src, **cfg)
    assert not (tmp_path / "out.parquet").exists()  # nothing that looks complete


def test_latin1_file_reads_with_its_encoding(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes("smiles,name\nCCO,caf\u00e9\n".encode("latin-1"))
    result, kept, _, _ = run(tmp_path, src, encoding="latin-1")
    assert len(kept) == 1


@pytest.mark.parametrize("text,task,expected", [
    ("1", "classification", 1.0), ("0.0", "classification", 0.0), (" 1 ", "classification", 1.0),
    ("", "classification", None), ("NaN", "regression", None), ("-3.5e2", "regression", -350.0),
])
def test_parse_label(text, task, expected):
    value = parse_label(text, task)
    assert (value != value) if expected is None else value == expected


@pytest.mark.parametrize("text,task", [("yes", "classification"), ("2", "classification"),
                                       ("inf", "regression"), ("1,5", "regression")])
def test_parse_label_rejects(text, task):
    with pytest.raises(ValueError):
        parse_label(text, task)
