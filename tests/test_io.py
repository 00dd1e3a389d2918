"""Atomic writes: a final name appears only complete; a killed writer's temporary is cleared."""

import pytest

from bbmn.io import atomic_path, write_json


def test_the_final_name_appears_only_when_the_block_succeeds(tmp_path):
    final = tmp_path / "sub" / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not final.exists() and list(final.parent.iterdir()) == []
    write_json(final, {"a": 1})
    assert final.read_text() == '{\n  "a": 1\n}\n' and list(final.parent.iterdir()) == [final]


def test_a_directory_is_replaced_whole(tmp_path):
    final = tmp_path / "model"
    for content in ("one", "two"):
        with atomic_path(final) as tmp:
            tmp.mkdir()
            (tmp / "weights").write_text(content)
    assert (final / "weights").read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_killed_writers_temporaries_are_removed_by_the_next_writer(tmp_path):
    (tmp_path / ".cache.parquet.k1ll3d0x.tmp").write_text("half a file")
    (tmp_path / ".cache.parquet.d1r3ct0r.tmp").mkdir()
    keep = [tmp_path / ".other.parquet.k1ll3d0x.tmp", tmp_path / ".cache.parquet.old",
            tmp_path / ".cache.parquet.toolongname.tmp", tmp_path / "cache.parquet.k1ll3d0x.tmp"]
    for path in keep:
        path.write_text("not ours")
    with atomic_path(tmp_path / "cache.parquet") as tmp:
        tmp.write_text("whole")
    assert sorted(tmp_path.iterdir()) == sorted([*keep, tmp_path / "cache.parquet"])
