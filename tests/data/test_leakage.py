"""Leakage check: corpus molecules in the downstream validation and test parts, by InChIKey."""

import csv
import json

import pyarrow.parquet as pq
import pytest
from rdkit import Chem

from bbmn.chem.standardize import profile
from bbmn.cli.main import main
from bbmn.data.cache import GraphCache, featurize
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.leakage import DatasetParts, check, corpus_keys, filter_cache, inchikeys
from bbmn.data.splits import load_split
from bbmn.errors import BbmnError
from tests.conftest import TEST_DATA
from tests.data.test_labelled import labelled_files


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """ZINC slice + planted copies of BBBP molecules: three of the seed-0 test part (one written
    as its free base where BBBP has a salt, one without its stereo centres), one of the validation
    part, one of the training part (not a leak)."""
    bbbp = labelled_files(tmp_path_factory, "bbbp")
    d = tmp_path_factory.mktemp("leak")
    table = pq.read_table(bbbp["clean"], columns=["row", "smiles"]).to_pydict()
    smiles_of = dict(zip(table["row"], table["smiles"]))
    split = load_split(bbbp["split0"])
    test = [smiles_of[r] for r in split["test"].tolist()]
    salt = next(s for s in test if "." in s)
    stereo = next(s for s in test if "@" in s)
    plain = next(s for s in test if "." not in s and "@" not in s)
    parent = profile("standard")
    from bbmn.chem.standardize import Standardizer

    free_base = Standardizer(parent)(salt).smiles
    flat = Chem.MolToSmiles(Chem.MolFromSmiles(stereo), isomericSmiles=False)
    val = smiles_of[int(split["val"][0])]
    train = smiles_of[int(split["train"][0])]
    zinc = (TEST_DATA / "zinc_200.smi").read_text().splitlines()
    (d / "corpus.smi").write_text("\n".join(zinc + [plain, free_base, flat, val, train]) + "\n")
    clean(d / "corpus.smi", d / "corpus.parquet", d / "rej.csv", None,
          CleanConfig(standardize=parent, dedupe=True))
    featurize(d / "corpus.parquet", d / "cache.parquet")
    corpus_keys(d / "corpus.parquet", d / "keys.parquet", workers=2, chunk_rows=64)
    return {"d": d, "bbbp": bbbp, "plain": plain, "salt": salt, "stereo": stereo, "val": val,
            "train": train}


def test_overlap_is_found_in_the_corpus_form_and_listed_per_molecule(setup):
    d, bbbp = setup["d"], setup["bbbp"]
    result = check(d / "keys.parquet", [DatasetParts("bbbp", bbbp["clean"], [bbbp["split0"], bbbp["split1"]])],
                   d / "out")
    seed0 = {r["part"]: r for r in result["rows"] if r["seed"] == 0}
    assert seed0["test"]["molecules"] == 15 and seed0["test"]["overlap"] == 2  # plain and salt
    assert seed0["test"]["skeleton_overlap"] == 3  # + the stereoisomer
    assert seed0["val"]["overlap"] == 1
    assert seed0["test"]["overlap_pct"] == pytest.approx(100 * 2 / 15, abs=0.01)
    molecules = read_csv(d / "out" / "molecules.csv")
    seed0_test = {m["smiles"] for m in molecules if m["seed"] == "0" and m["part"] == "test"}
    assert seed0_test == {setup["plain"], setup["salt"]}
    assert setup["train"] not in {m["smiles"] for m in molecules if m["seed"] == "0"}
    salt = next(m for m in molecules if m["smiles"] == setup["salt"])
    assert "." not in salt["corpus_smiles"] and int(salt["corpus_row"]) >= 200
    summary = read_csv(d / "out" / "summary.csv")
    assert len(summary) == 4 and {r["part"] for r in summary} == {"val", "test"}
    markdown = (d / "out" / "summary.md").read_text()
    assert "| bbbp | 0 | test | 15 | 2 | 13.33 | 3 | 20.00 |" in markdown


def test_the_filtered_corpus_drops_every_overlapping_molecule_and_nothing_else(setup):
    d = setup["d"]
    out = d / "filtered.parquet"
    summary = filter_cache(d / "cache.parquet", d / "keys.parquet", d / "out" / "molecules.csv", out)
    listed = {m["inchikey"] for m in read_csv(d / "out" / "molecules.csv")}
    assert summary["dropped"] == summary["dropped_keys"] == len(listed) >= 3
    cache = GraphCache(out)
    assert len(cache) == summary["kept"] == 205 - summary["dropped"]
    _, smiles = cache.read_smiles()
    assert not listed & set(inchikeys(smiles))
    assert json.loads(pq.read_schema(out).metadata[b"bbmn"])["leakage_filter"]["dropped_keys"] == len(listed)


def test_inchikeys_standardize_first_and_mark_failures():
    keys = inchikeys(["CCO", "[Na+].CC(=O)[O-]", "xx"], profile("standard"))
    assert keys[0] == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N" and keys[1] == inchikeys(["CC(=O)O"])[0]
    assert keys[2] == ""


def test_cli_and_errors(setup, tmp_path, capsys):
    d, bbbp = setup["d"], setup["bbbp"]
    assert main(["leakage", "check", str(d / "keys.parquet"), "--dataset", "bbbp", str(bbbp["clean"]),
                 str(bbbp["split0"]), "--out-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["overlapping_keys"] == 3
    assert main(["leakage", "check", str(d / "keys.parquet"), "--dataset", "bbbp", str(bbbp["clean"]),
                 "--out-dir", str(tmp_path)]) == 2
    assert "give a name, a cleaned table and at least one split file" in capsys.readouterr().err
    with pytest.raises(BbmnError, match="not a corpus key file"):
        check(bbbp["clean"], [], tmp_path)
