"""The streaming loop predict and embed share: counting, order, chunks, empty inputs, aborts,
the progress bar."""

import io
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bbmn.chem.standardize import profile
from bbmn.inference.stream import Tally, row_columns, stream_file

#: rows 0-3 form the first chunk and rows 4-7 the second (chunk_rows 4): failures in both
ROWS = ["CCO", "not_a_smiles", "c1ccccc1", "", "CC(=O)O", "C(C)(C)(C)(C)C", "not_a_smiles", "CCN"]


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("smiles,id\n" + "".join(f"{s},m{i}\n" for i, s in enumerate(ROWS)) + "C,m8,extra\n")
    return path


def identity(prepared):
    return pa.table(row_columns(prepared, ["id"]))


@pytest.mark.parametrize("workers", [0, 1])
def test_failures_are_counted_over_chunks_in_order_of_first_sight(src, tmp_path, workers):
    out = tmp_path / "out.parquet"
    tally = stream_file(src, out, identity, profile("standard"), metadata={"step": "test"}, keep=["id"],
                        chunk_rows=4, batch_size=2, workers=workers)
    assert (tally.rows, tally.ok, tally.failed) == (9, 4, 5)
    assert list(tally.reasons.items()) == [("invalid_smiles", 2), ("empty_smiles", 1),
                                           ("sanitize_failed", 1), ("malformed_row", 1)]
    assert tally.counts() == {"rows": 9, "ok": 4, "failed": 5, "reasons": tally.reasons}
    table = pq.read_table(out)
    assert table.column("row").to_pylist() == list(range(9))
    assert table.column("id").to_pylist() == [f"m{i}" for i in range(8)] + [""]
    assert pq.ParquetFile(out).num_row_groups == 3
    assert json.loads(table.schema.metadata[b"bbmn"]) == {"step": "test"}


def test_an_input_without_rows_gives_the_columns_and_no_rows(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("smiles,id\n")
    tally = stream_file(src, tmp_path / "out.csv", identity, profile("standard"), metadata={}, fmt="csv",
                        keep=["id"])
    assert tally == Tally()
    assert (tmp_path / "out.csv").read_text().splitlines() == ["row,input,smiles,status,detail,id"]


def test_a_failing_chunk_leaves_no_output(src, tmp_path):
    def fail_on_second(prepared):
        if prepared.rows[0] > 0:
            raise RuntimeError("model failed")
        return identity(prepared)

    with pytest.raises(RuntimeError, match="model failed"):
        stream_file(src, tmp_path / "out.parquet", fail_on_second, profile("standard"), metadata={},
                    keep=["id"], chunk_rows=4, batch_size=4)
    assert list(tmp_path.iterdir()) == [src]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stderr, shown", [(Terminal(), True), (io.StringIO(), False)], ids=["tty", "pipe"])
def test_a_bar_counts_the_rows_on_a_terminal_only(src, tmp_path, monkeypatch, stderr, shown):
    monkeypatch.setattr(sys, "stderr", stderr)
    stream_file(src, tmp_path / "out.parquet", identity, profile("standard"), metadata={"step": "predict"},
                keep=["id"], chunk_rows=4, batch_size=2)
    assert ("predict in.csv: 9mol" in stderr.getvalue()) is shown
