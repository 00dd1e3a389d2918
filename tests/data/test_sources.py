"""Parse-time checks of registered files: missing files and wrong checksums name the key; a local
path is hashed instead of registered with its checksum."""

import copy
import hashlib
import json
import os

import pytest
import yaml

from bbmn.config import prepare_config
from bbmn.data.sources import DigestCache, check_sources


def where(config, cache):
    return {name: source.where for name, source in check_sources(config, cache).items()}
from bbmn.errors import BbmnError
from tests.conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BASE = yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A one-dataset, one-corpus config whose mirror is ``tmp_path/mirror``."""
    monkeypatch.delenv("BBMN_DATA_MIRROR", raising=False)
    mirror = tmp_path / "mirror"
    (mirror / "sets").mkdir(parents=True)
    files = {"mine": b"smiles,y\nCCO,1.5\n", "corpus": b"CCO\nCCN\n"}
    for name, content in files.items():
        (mirror / "sets" / f"{name}.csv").write_bytes(content)
    config = copy.deepcopy(BASE)
    config["data"] = {"mirrors": [str(mirror)], "download": False}
    config["results"] = str(tmp_path / "results")
    config["datasets"]["mine"] = {"file": "sets/mine.csv", "sha256": hashlib.sha256(files["mine"]).hexdigest(),
                                  "labels": ["y"], "task": "regression", "metric": "rmse",
                                  "url": "https://example.org/mine.csv"}
    config["corpora"]["corp"] = {"file": "sets/corpus.csv", "sha256": hashlib.sha256(files["corpus"]).hexdigest()}
    config["run"] = {"datasets": ["mine"], "corpus": "corp", "prepare": "run"}
    return prepare_config(config, SCHEMA), mirror, tmp_path / "digests.json"


def test_mirror_copies_with_the_registered_checksum_pass(setup):
    config, mirror, cache = setup
    assert where(config, cache) == {"mine": str(mirror / "sets" / "mine.csv"),
                                    "corp": str(mirror / "sets" / "corpus.csv")}
    assert check_sources(config, cache)["mine"].sha256 == config["datasets"]["mine"]["sha256"]


def test_a_mirror_copy_with_another_checksum_names_the_key_and_file(setup):
    config, mirror, cache = setup
    (mirror / "sets" / "mine.csv").write_bytes(b"smiles,y\nCCO,9.9\n")
    with pytest.raises(BbmnError) as info:
        check_sources(config, cache)
    message = str(info.value)
    assert message.startswith("config key datasets.mine.sha256: the mirror copy ")
    assert str(mirror / "sets" / "mine.csv") in message and "\n" not in message


def test_a_missing_file_names_the_key_unless_it_can_be_downloaded(setup):
    config, mirror, cache = setup
    (mirror / "sets" / "corpus.csv").unlink()
    with pytest.raises(BbmnError, match=r"^config key corpora.corp.file: 'sets/corpus.csv' is in none of "
                                        r"the mirrors .* and the entry has no url"):
        check_sources(config, cache)
    (mirror / "sets" / "mine.csv").unlink()
    config["corpora"]["corp"]["url"] = "https://example.org/corpus.csv"
    with pytest.raises(BbmnError, match=r"^config key datasets.mine.file: .* downloads are off"):
        check_sources(config, cache)
    config["data"]["download"] = True
    assert where(config, cache) == {"mine": "download", "corp": "download"}


def test_a_file_already_fetched_is_left_to_the_fetch_rule(setup):
    config, mirror, cache = setup
    (mirror / "sets" / "mine.csv").unlink()
    fetched = os.path.join(config["results"], "data", "raw", "mine", "mine.csv")
    os.makedirs(os.path.dirname(fetched))
    open(fetched, "w").close()
    assert where(config, cache)["mine"] == "fetched"


def test_prepare_all_checks_every_registered_dataset(setup):
    config, mirror, cache = setup
    config["run"]["prepare"] = "all"
    with pytest.raises(BbmnError, match=r"^config key datasets.bbbp.file: 'moleculenet/bbbp.csv'"):
        check_sources(config, cache)


def test_digests_are_cached_by_size_mtime_and_inode(setup):
    config, mirror, cache = setup
    check_sources(config, cache)
    stored = json.loads(cache.read_text())
    file = str((mirror / "sets" / "mine.csv").resolve())
    assert stored[file]["sha256"] == config["datasets"]["mine"]["sha256"]
    # the cache is trusted while the file's key is unchanged: a planted digest is believed ...
    stored[file]["sha256"] = "0" * 64
    cache.write_text(json.dumps(stored))
    with pytest.raises(BbmnError, match="has sha256 0000"):
        check_sources(config, cache)
    # ... and a changed mtime makes it hash the file again
    st = os.stat(file)
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    check_sources(config, cache)
    assert json.loads(cache.read_text())[file]["sha256"] == config["datasets"]["mine"]["sha256"]


def test_a_corrupt_digest_cache_is_ignored(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "cache.json").write_text("{not json")
    cache = DigestCache(tmp_path / "cache.json")
    assert cache.sha256(tmp_path / "f") == hashlib.sha256(b"x").hexdigest()
    cache.save()
    assert json.loads((tmp_path / "cache.json").read_text())


def local(config, path, **more):
    """The dataset ``mine`` registered by a local path instead of a mirror file and checksum."""
    entry = {k: v for k, v in config["datasets"]["mine"].items() if k not in ("file", "sha256", "url")}
    config["datasets"]["mine"] = {**entry, "path": str(path), **more}
    return config


def test_a_local_path_is_hashed_instead_of_registered(setup, tmp_path, monkeypatch):
    config, mirror, cache = setup
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.csv").write_bytes(b"smiles,y\nCCO,1.5\n")
    local(config, "mine.csv")
    found = check_sources(config, cache)["mine"]
    assert found.where == "mine.csv" and found.sha256 == hashlib.sha256(b"smiles,y\nCCO,1.5\n").hexdigest()
    (tmp_path / "mine.csv").write_bytes(b"smiles,y\nCCO,2.5\n")
    assert check_sources(config, cache)["mine"].sha256 == hashlib.sha256(b"smiles,y\nCCO,2.5\n").hexdigest()


def test_a_missing_local_path_is_one_line_naming_the_key(setup, tmp_path, monkeypatch):
    config, mirror, cache = setup
    monkeypatch.chdir(tmp_path)
    local(config, "nope.csv")
    with pytest.raises(BbmnError, match=r"^config key datasets.mine.path: nope.csv not found \(relative "
                                        rf"to the working directory {tmp_path}\)$"):
        check_sources(config, cache)
    local(config, tmp_path)
    with pytest.raises(BbmnError, match=r"^config key datasets.mine.path: .* is not a file$"):
        check_sources(config, cache)


def test_a_sha256_beside_a_local_path_pins_it(setup, tmp_path):
    config, mirror, cache = setup
    (tmp_path / "mine.csv").write_bytes(b"smiles,y\nCCO,1.5\n")
    local(config, tmp_path / "mine.csv", sha256="0" * 64)
    with pytest.raises(BbmnError, match=r"^config key datasets.mine.sha256: .* has sha256 [0-9a-f]{64}, the "
                                        r"entry says 0{64}"):
        check_sources(config, cache)


@pytest.mark.parametrize("entry,message", [
    ({"path": "a.csv", "file": "a.csv", "sha256": "0" * 64}, "config key datasets.mine: give path"),
    ({"path": "a.csv", "url": "https://example.org/a.csv"}, "config key datasets.mine.url: a local path"),
    ({"file": "a.csv"}, "config key datasets.mine.sha256: a mirror or downloaded file needs its sha256"),
    ({}, "config key datasets.mine: needs path (a local file) or file and sha256"),
], ids=["both", "path-with-url", "file-without-sha256", "neither"])
def test_an_entry_has_a_path_or_a_file_with_its_sha256(entry, message):
    config = copy.deepcopy(BASE)
    config["datasets"]["mine"] = {"labels": ["y"], "task": "regression", "metric": "rmse", **entry}
    with pytest.raises(BbmnError) as info:
        prepare_config(config, SCHEMA)
    assert str(info.value).startswith(message)
