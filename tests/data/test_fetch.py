"""fetch: mirror copy, checksum checks, and the download path (over file:// URLs, no network)."""

import hashlib
import zipfile

import pytest

from bbmn.data.fetch import copy_local, fetch, mirror_dirs
from bbmn.errors import BbmnError


@pytest.fixture
def payload(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "sets").mkdir(parents=True)
    data = b"smiles\nCCO\n"
    (mirror / "sets" / "a.csv").write_bytes(data)
    return mirror, hashlib.sha256(data).hexdigest(), data


def test_copy_from_the_first_mirror_that_has_it(tmp_path, payload):
    mirror, sha, data = payload
    dest = tmp_path / "out" / "a.csv"
    origin = fetch(dest, sha, "sets/a.csv", [tmp_path / "nowhere", mirror])
    assert dest.read_bytes() == data and origin.startswith("mirror")
    assert fetch(dest, sha, "sets/a.csv", [mirror]) == "already present"


def test_checksum_mismatch_publishes_nothing(tmp_path, payload):
    mirror, _, _ = payload
    dest = tmp_path / "a.csv"
    with pytest.raises(BbmnError, match="checksum mismatch"):
        fetch(dest, "0" * 64, "sets/a.csv", [mirror])
    assert not dest.exists() and list(tmp_path.iterdir()) == [mirror]


def test_download_and_archive_member(tmp_path, payload):
    mirror, sha, data = payload
    dest = tmp_path / "b.csv"
    assert fetch(dest, sha, "other/b.csv", [mirror], url=(mirror / "sets" / "a.csv").as_uri()).startswith("download")
    assert dest.read_bytes() == data
    wheel = tmp_path / "pkg.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/a.csv", data)
    dest2 = tmp_path / "c.csv"
    fetch(dest2, sha, None, [], url=wheel.as_uri(), member="pkg/data/a.csv")
    assert dest2.read_bytes() == data
    with pytest.raises(BbmnError, match="cannot extract"):
        fetch(tmp_path / "d.csv", sha, None, [], url=wheel.as_uri(), member="missing.csv")


def test_no_mirror_and_no_download(tmp_path, payload):
    mirror, sha, _ = payload
    with pytest.raises(BbmnError, match="downloads are disabled"):
        fetch(tmp_path / "x.csv", sha, "sets/x.csv", [mirror], url="https://example.invalid/x.csv",
              download=False)
    with pytest.raises(BbmnError, match="download of .* failed"):
        fetch(tmp_path / "x.csv", sha, None, [], url=(tmp_path / "missing.csv").as_uri())


def test_mirror_env_comes_first(monkeypatch, tmp_path):
    monkeypatch.setenv("BBMN_DATA_MIRROR", f"{tmp_path}/a:{tmp_path}/b")
    assert [p.name for p in mirror_dirs(["c"])] == ["a", "b", "c"]


def test_a_local_path_is_copied_only_while_it_has_the_sha256_hashed_at_parse_time(tmp_path, payload):
    mirror, sha, data = payload
    local = mirror / "sets" / "a.csv"
    assert copy_local(tmp_path / "raw" / "a.csv", local, sha) == f"local {local}"
    assert (tmp_path / "raw" / "a.csv").read_bytes() == data
    local.write_bytes(b"smiles\nCCN\n")
    with pytest.raises(BbmnError, match="changed after the workflow started"):
        copy_local(tmp_path / "raw" / "b.csv", local, sha)
    assert not (tmp_path / "raw" / "b.csv").exists()
