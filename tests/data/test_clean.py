"""bbmn clean: row and line accounting on hostile input, strict labels, duplicates, control
characters, the corpus filters, clear errors."""

import csv
import gzip
import json

import pyarrow.parquet as pq
import pytest

from bbmn.chem.standardize import profile
from bbmn.data.clean import CleanConfig, clean, filter_reason, parse_label
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
    assert all(r["line"] == r["row"] + 2 for r in kept)  # the header is line 1
    assert all(int(r["line"]) == int(r["row"]) + 2 for r in rejects)
    assert summary["accounting"] == "16 lines = 1 header + 15 rows; 15 rows = 8 kept + 7 rejected"
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
    assert dup["examples"][0]["rows"] == [0, 10] and dup["examples"][0]["lines"] == [2, 12]


def test_standard_profile_strips_salts_and_neutralizes(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, [("[Na+].[O-]C(=O)c1ccccc1",), ("C[NH3+].[Cl-]",), ("OC(=O)c1ccccc1",)], header=("smiles",))
    _, kept, rejects, _ = run(tmp_path, src, standardize=profile("standard"), dedupe=True)
    assert [r["smiles"] for r in kept] == ["O=C(O)c1ccccc1", "CN"]
    assert rejects[0]["row"] == "2" and rejects[0]["reason"] == "duplicate"
    assert rejects[0]["line"] == "4" and rejects[0]["detail"] == "same canonical SMILES as line 2"


def test_max_heavy_atoms(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, [("C" * 30,), ("CCO",)], header=("smiles",))
    _, kept, rejects, _ = run(tmp_path, src, standardize=profile("standard", max_heavy_atoms=20))
    assert [r["smiles"] for r in kept] == ["CCO"] and rejects[0]["reason"] == "too_many_atoms"


def test_quoted_newlines_bom_and_malformed_rows(tmp_path):
    """A quoted field over two lines: its record's line is the first of them, and the next
    record's line is one further on (one continuation line)."""
    src = tmp_path / "in.csv"
    src.write_bytes("\ufeffsmiles,name\nCCO,\"two\nlines\"\nCCN,x,extra\n\nCCC,ok\n".encode())
    result, kept, rejects, _ = run(tmp_path, src)
    assert result["input_rows"] == 3  # the blank line is not a row
    assert [(r["row"], r["line"]) for r in kept] == [(0, 2), (2, 6)]
    assert rejects[0]["row"] == "1" and rejects[0]["line"] == "4" and rejects[0]["reason"] == "malformed_row"
    assert (result["input_lines"], result["header_lines"], result["blank_lines"],
            result["continuation_lines"]) == (6, 1, 1, 1)
    assert result["accounting"] == ("6 lines = 1 header + 1 blank + 1 continuation + 3 rows; "
                                    "3 rows = 2 kept + 1 rejected")


def test_a_quoted_smiles_over_two_lines_is_one_reject_naming_its_first_line(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b'smiles\nCCO\n"CC\nN"\nCCC\n')
    result, kept, rejects, _ = run(tmp_path, src)
    assert [(r["row"], r["line"]) for r in kept] == [(0, 2), (2, 5)]
    assert (rejects[0]["row"], rejects[0]["line"], rejects[0]["input"]) == ("1", "3", "CC\nN")
    assert rejects[0]["reason"] == "control_character" and "LF" in rejects[0]["detail"]


def test_smi_and_gzip(tmp_path):
    src = tmp_path / "in.smi.gz"
    with gzip.open(src, "wt") as fh:
        fh.write("CCO ethanol\n\nc1ccccc1\tbenzene\nxx\n")
    result, kept, rejects, _ = run(tmp_path, src, dedupe=True)
    assert result["input_rows"] == 3 and len(kept) == 2 and rejects[0]["reason"] == "invalid_smiles"
    assert rejects[0]["line"] == "4" and result["blank_lines"] == 1


# The corpus in small: a blank first line, a line of spaces and tabs, trailing blank lines.
BLANKS_SMI = "\nCCO ethanol\nc1ccccc1\n \t \nxx\nCCN\tamine  extra\n\n\n"


@pytest.mark.parametrize("workers,chunk_rows", [(1, 1024), (1, 1), (2, 2)])
def test_smi_line_numbers_are_an_editors_and_blank_lines_are_counted(tmp_path, workers, chunk_rows):
    src = tmp_path / "in.smi"
    src.write_text(BLANKS_SMI)
    result, kept, rejects, summary = run(tmp_path, src, workers=workers, chunk_rows=chunk_rows)
    assert [(r["row"], r["line"], r["input_smiles"]) for r in kept] == [(0, 2, "CCO"), (1, 3, "c1ccccc1"),
                                                                        (3, 6, "CCN")]
    assert [(r["row"], r["line"], r["input"]) for r in rejects] == [("2", "5", "xx")]
    assert (summary["input_lines"], summary["blank_lines"], summary["header_lines"]) == (8, 4, 0)
    assert summary["input_lines"] == summary["blank_lines"] + summary["kept"] + summary["rejected"]
    assert summary["accounting"] == "8 lines = 4 blank + 4 rows; 4 rows = 3 kept + 1 rejected"
    assert result == summary | {"seconds": result["seconds"]}


def test_smi_header_is_line_1(tmp_path):
    src = tmp_path / "in.smi"
    src.write_text("smiles name\n\nCCO a\n")
    _, kept, _, summary = run(tmp_path, src, smi_header=True)
    assert [(r["row"], r["line"]) for r in kept] == [(0, 3)]
    assert summary["accounting"] == "3 lines = 1 header + 1 blank + 1 rows; 1 rows = 1 kept + 0 rejected"


def test_a_file_of_blank_lines_counts_them(tmp_path):
    src = tmp_path / "in.smi"
    src.write_text("\n  \n\t\n")
    result, kept, rejects, _ = run(tmp_path, src)
    assert kept == rejects == [] and (result["input_lines"], result["blank_lines"], result["input_rows"]) == (3, 3, 0)


@pytest.mark.parametrize("suffix,text", [(".smi", "CCO\n\x00C nul\nC\x0cC\n"),
                                         (".csv", "smiles\nCCO\n\x00C\nC\x0cC\n")])
def test_a_control_character_is_a_reject_naming_its_line_never_dropped(tmp_path, suffix, text):
    """RDKit reads "\\x00C" as methane; here it is a reject with the raw input and the character."""
    src = tmp_path / f"in{suffix}"
    src.write_bytes(text.encode())
    _, kept, rejects, summary = run(tmp_path, src)
    assert [r["smiles"] for r in kept] == ["CCO"]
    first_line = 2 if suffix == ".smi" else 3
    assert [(int(r["line"]), r["input"], r["reason"]) for r in rejects] == [
        (first_line, "\x00C", "control_character"), (first_line + 1, "C\x0cC", "control_character")]
    assert rejects[0]["detail"] == "control character (NUL, U+0000) at character 1 of '\\x00C'"
    assert rejects[1]["detail"] == "control character (FF, U+000C) at character 2 of 'C\\x0cC'"
    assert summary["reasons"] == {"control_character": 2}


def test_padding_around_a_smiles_is_no_control_character(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b'smiles\n" CCO\t"\n')
    _, kept, rejects, _ = run(tmp_path, src)
    assert [(r["input_smiles"], r["smiles"]) for r in kept] == [(" CCO\t", "CCO")] and rejects == []


# (SMILES, reason with the corpus filters on, or None when kept); standard profile
CORPUS_ROWS = [
    ("CCO", None),
    ("C", "too_few_atoms"),                  # methane
    ("CC", "too_few_atoms"),                 # ethane
    ("[Xe]", "too_few_atoms"),               # a lone noble-gas atom
    ("[Na+].[Cl-]", "too_few_atoms"),        # the largest fragment of a salt: one ion
    ("F[Xe]F", "unsupported_element"),       # three heavy atoms, one outside the featurizer
    ("C[Sn](C)(C)C", "unsupported_element"),  # tetramethyltin
    ("CCC*", "unsupported_element"),         # a dummy atom (no heavy atom itself)
    ("CC[Se]C", None),                       # Se is one of the featurizer's elements
    ("[2H]C([2H])([2H])CO", None),           # isotopes: still C, H, O
]


@pytest.mark.parametrize("workers", [1, 2])
def test_corpus_filters_reject_with_their_reason(tmp_path, workers):
    src = tmp_path / "corpus.smi"
    src.write_text("".join(f"{s}\n" for s, _ in CORPUS_ROWS))
    _, kept, rejects, summary = run(tmp_path, src, dedupe=True, min_heavy_atoms=3, elements="featurizer",
                                    workers=workers, chunk_rows=3)
    expected = {line: reason for line, (_, reason) in enumerate(CORPUS_ROWS, start=1) if reason}
    assert {int(r["line"]): r["reason"] for r in rejects} == expected
    assert [r["line"] for r in kept] == [n for n in range(1, len(CORPUS_ROWS) + 1) if n not in expected]
    details = {int(r["line"]): r["detail"] for r in rejects}
    assert details[2] == "1 heavy atom(s) < min_heavy_atoms=3"
    assert details[6] == "Xe: not among the 22 elements of elements=featurizer"
    assert details[8].startswith("*:")
    assert summary["filters"] == {"min_heavy_atoms": 3, "elements": "featurizer"}
    assert summary["reasons"] == {"too_few_atoms": 4, "unsupported_element": 3}


def test_labelled_sets_are_not_filtered_unless_asked(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, [("C", "1.5"), ("[Xe]", "0.1"), ("CCO", "2")])
    labelled = {"label_cols": ["label"], "task": "regression"}
    _, kept, rejects, _ = run(tmp_path, src, **labelled)
    assert len(kept) == 3 and rejects == []
    _, kept, rejects, _ = run(tmp_path, src, **labelled, min_heavy_atoms=2)
    assert [r["input_smiles"] for r in kept] == ["CCO"] and {r["reason"] for r in rejects} == {"too_few_atoms"}


@pytest.mark.parametrize("smiles,min_heavy_atoms,elements,reason", [
    ("CCC", 3, "featurizer", None), ("CC", 3, "any", "too_few_atoms"), ("CC", 0, "featurizer", None),
    ("[He]", 0, "featurizer", "unsupported_element"), ("[He]", 0, "any", None),
    ("[HH]", 1, "any", "too_few_atoms"),  # hydrogen is no heavy atom
])
def test_filter_reason(smiles, min_heavy_atoms, elements, reason):
    from rdkit import Chem
    dropped = filter_reason(Chem.MolFromSmiles(smiles), min_heavy_atoms, elements)
    assert (dropped and dropped[0]) == reason


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
