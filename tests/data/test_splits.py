"""Splits: the spec's GROVER digests, and the properties every split must have."""

import re
from pathlib import Path

import pytest

from bbmn.chem.scaffold import murcko_scaffold
from bbmn.chem.standardize import profile
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.splits import (METHODS, deterministic_scaffold_split, make_split, split_digest,
                              split_table)
from tests.conftest import TEST_DATA

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "batmannet.md"
FILES = {"bbbp": ("bbbp.csv", "smiles"), "bace": ("bace.csv", "mol"), "clintox": ("clintox.csv", "smiles"),
         "sider": ("sider.csv", "smiles"), "tox21": ("tox21.csv", "smiles"),
         "toxcast": ("toxcast.csv.gz", "smiles"), "freesolv": ("freesolv.csv", "smiles"),
         "esol": ("esol.csv", "smiles"), "lipo": ("lipo.csv", "smiles"), "qm7": ("qm7.csv", "smiles"),
         "qm8": ("qm8.csv", "smiles")}
# spec section 12, copied here so the test does not depend on the spec file being present
DIGESTS = """
bbbp 0 1631 203 205 249d522f84e3cbf2 ef95746d7b001d3d
bbbp 1 1631 203 205 3ce97452fed8226c 42e216d38ea4e6f0
bbbp 2 1631 203 205 ce0d80d1cfebae18 0699759688cdfec2
bace 0 1210 151 152 1075aebbd2c0dcb3 5fa1aa87ac79b558
bace 1 1210 151 152 b731fac35395a670 8f5a510158bfec34
bace 2 1210 151 152 80db1ef0155a113a 1b66a6b8b5db7b5f
clintox 0 1182 147 149 569c5d477fdf83a1 973d0cdad5c46ee3
clintox 1 1182 147 149 419c037a9ab00174 933abc5588a4f3d9
clintox 2 1182 147 149 01e43388e10b3bb4 e7278ec35bbaf7a8
sider 0 1141 142 144 5a56647e34631470 f57c081428d28b1b
sider 1 1141 142 144 8a975bdc495f0c12 dd65f157587490f4
sider 2 1141 142 144 2473110bef2be59c 65561822bf1cbc2d
tox21 0 6258 782 783 617a9be45d9c52fe 007dbf30efaf0dda
tox21 1 6258 782 783 9060b7fc60256dae 5219ee2f9084ea51
tox21 2 6258 782 783 5d35997b8ba1e417 db033642c520818f
toxcast 0 6860 857 859 27d4f1f738a6a85d d7da5fd263d92f99
toxcast 1 6860 857 859 b1de1c8be8bbe74e 2ad628fc288043d4
toxcast 2 6860 857 859 d67b3f0eb11da37e f416f5a50ff582f9
freesolv 0 513 64 65 7cf3c0d695022f42 5955efa5c9783fbe
freesolv 1 513 64 65 e263a4f1e50ac9cb 321bbd8d04656403
freesolv 2 513 64 65 f3b9a98f8bcf102f 3272174a563c5ec0
esol 0 902 112 114 ba647711c6c01094 fc13a829b551ac4b
esol 1 902 112 114 1038d25b3cd23d1b e3bb04bc6005e761
esol 2 902 112 114 827aaabfaec4ec7f 468be8fd819b487a
lipo 0 3360 420 420 0f9b5ec70faebd0e dccd4e057891640e
lipo 1 3360 420 420 fe324b6774bb9275 a305b054f291ebfd
lipo 2 3360 420 420 7a25703ae3502101 e60dbac07664d8be
qm7 0 5464 683 683 4894186bf2427d51 bacad91f60e8f8f9
qm7 1 5464 683 683 ef8fa20977490f80 9ca5ecf69356f199
qm7 2 5464 683 683 a9841c21806e045b 42fc28f1020ad49a
qm8 0 17428 2178 2180 24e23b2dcfb4c442 5bcee258d3e9161a
qm8 1 17428 2178 2180 8fdf54c0283b6756 08cd6bd4372dc02e
qm8 2 17428 2178 2180 5be6d896ab3839dc 32a77e7921ecb9b2
"""
EXPECTED = {}
for line in DIGESTS.strip().splitlines():
    ds, seed, tr, va, te, vd, td = line.split()
    EXPECTED.setdefault(ds, {})[int(seed)] = (int(tr), int(va), int(te), vd, td)


def test_digest_table_matches_the_spec_file():
    if not SPEC.is_file():
        pytest.skip("spec file not beside the checkout")
    text = SPEC.read_text()
    rows = re.findall(r"\| (\w+) \| (\d) \| (\d+) / (\d+) / (\d+) \| (\w+) \| (\w+) \|", text)
    assert len(rows) == 33
    for ds, seed, tr, va, te, vd, td in rows:
        assert EXPECTED[ds][int(seed)] == (int(tr), int(va), int(te), vd, td)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(FILES))
def test_balanced_scaffold_is_grovers_to_the_index(tmp_path, mirror, dataset):
    """Spec section 12: our split of each MoleculeNet file equals GROVER's, for seeds 0, 1, 2."""
    name, column = FILES[dataset]
    clean(mirror / "moleculenet" / name, tmp_path / "c.parquet", tmp_path / "r.csv", None,
          CleanConfig(smiles_col=column, standardize=profile("as_given"), workers=2))
    for seed, (tr, va, te, vd, td) in EXPECTED[dataset].items():
        r = split_table(tmp_path / "c.parquet", tmp_path / f"s{seed}.json", "balanced_scaffold", seed)
        assert (r["train_size"], r["val_size"], r["test_size"]) == (tr, va, te)
        assert (r["val_digest"], r["test_digest"]) == (vd, td), f"{dataset} seed {seed}"


def test_digest_definition():
    # first 16 hex digits of sha256(json.dumps(sorted(indices)))
    import hashlib
    assert split_digest([3, 1, 2]) == hashlib.sha256(b"[1, 2, 3]").hexdigest()[:16]


@pytest.fixture(scope="module")
def bbbp_slice(tmp_path_factory):
    d = tmp_path_factory.mktemp("bbbp")
    clean(TEST_DATA / "bbbp_150.csv", d / "c.parquet", d / "r.csv", None,
          CleanConfig(label_cols=["p_np"], task="classification", standardize=profile("as_given")))
    import pyarrow.parquet as pq
    t = pq.read_table(d / "c.parquet")
    return t.column("row").to_pylist(), t.column("smiles").to_pylist()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_split_properties(bbbp_slice, method, seed):
    rows, smiles = bbbp_slice
    r = make_split(rows, smiles, method, seed)
    parts = [set(r["train"]), set(r["val"]), set(r["test"])]
    assert sum(map(len, parts)) == len(rows) and set().union(*parts) == set(rows)  # disjoint, cover
    assert abs(len(parts[0]) - 0.8 * len(rows)) <= 0.1 * len(rows)
    assert make_split(rows, smiles, method, seed) == r  # same every time
    if method != "random":
        scaffold_of = {row: murcko_scaffold(s, r["include_chirality"]) for row, s in zip(rows, smiles)}
        scaffolds = [{scaffold_of[i] for i in p} for p in parts]
        assert not (scaffolds[0] & scaffolds[1] or scaffolds[0] & scaffolds[2] or scaffolds[1] & scaffolds[2])


def test_seeds_differ_for_seeded_methods(bbbp_slice):
    rows, smiles = bbbp_slice
    for method in ("balanced_scaffold", "random"):
        assert make_split(rows, smiles, method, 0)["test"] != make_split(rows, smiles, method, 1)["test"]
    assert make_split(rows, smiles, "scaffold", 0)["test"] == make_split(rows, smiles, "scaffold", 1)["test"]


def test_deterministic_scaffold_puts_biggest_groups_in_train():
    groups = [[0], [1, 2, 3, 4, 5, 6], [7, 8], [9]]
    train, val, test = deterministic_scaffold_split(groups, 10, (0.8, 0.1, 0.1))
    assert train == [1, 2, 3, 4, 5, 6, 7, 8] and val == [9] and test == [0]
