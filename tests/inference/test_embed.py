"""bbmn embed: one row per input row, deterministic, independent of chunking, streamed."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from bbmn.cli.main import main
from bbmn.data.graph import featurize_smiles
from bbmn.errors import BbmnError
from bbmn.inference.embed import Encoder, embed_file, read_embeddings
from bbmn.models.finetune import BatmanNetFinetune
from bbmn.train.checkpoint import load_checkpoint
from tests.conftest import TEST_DATA
from tests.inference.runs import finetuned_runs

ZINC = [line.split()[0] for line in (TEST_DATA / "zinc_200.smi").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return finetuned_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """80 ZINC molecules with three rows that cannot be embedded among them."""
    path = tmp_path_factory.mktemp("embed") / "in.csv"
    smiles = ZINC[:40] + ["not_a_smiles", "", "C(C)(C)(C)(C)C"] + ZINC[40:77]
    path.write_text("smiles,id\n" + "".join(f"{s},id{i}\n" for i, s in enumerate(smiles)))
    return path


def test_one_row_per_input_row_with_reasons_and_nan_embeddings(runs, inputs, tmp_path):
    out = tmp_path / "e.parquet"
    summary = embed_file(runs["pretrained"], inputs, out, keep=["id"], chunk_rows=16, batch_size=8)
    table = pq.read_table(out)
    assert table.num_rows == summary["rows"] == 80 and summary["failed"] == 3
    assert table.column_names == ["row", "input", "smiles", "status", "detail", "id", "embedding"]
    assert table.column("row").to_pylist() == list(range(80))
    assert table.column("id").to_pylist() == [f"id{i}" for i in range(80)]
    assert table.column("status").to_pylist()[40:43] == ["invalid_smiles", "empty_smiles", "sanitize_failed"]
    assert table.schema.field("embedding").type.list_size == 64  # two views of h = 32
    assert pq.ParquetFile(out).num_row_groups == 5  # streamed: one row group per 16-row chunk
    values, status = read_embeddings(out)
    assert np.isnan(values[40:43]).all() and np.isfinite(values[status == "ok"]).all()
    meta = json.loads(pq.read_schema(out).metadata[b"bbmn"])
    assert meta["kind"] == "batmannet-pretrained" and meta["standardize_source"].startswith("profile standard")


def test_deterministic_and_the_same_bits_in_one_chunk_or_many(runs, inputs, tmp_path):
    embed_file(runs["pretrained"], inputs, tmp_path / "a.parquet", batch_size=8)
    embed_file(runs["pretrained"], inputs, tmp_path / "b.parquet", batch_size=8)
    embed_file(runs["pretrained"], inputs, tmp_path / "c.parquet", batch_size=8, chunk_rows=3, workers=2)
    a, _ = read_embeddings(tmp_path / "a.parquet")
    assert pq.ParquetFile(tmp_path / "c.parquet").num_row_groups == 10  # chunks of 8 (3 rounded up)
    for other in ("b", "c"):
        assert np.array_equal(a, read_embeddings(tmp_path / f"{other}.parquet")[0], equal_nan=True)


def test_one_batch_or_many_agree_to_float32_rounding(runs, inputs, tmp_path):
    """Different batch sizes put a molecule at another position in its batch, and PyTorch's CPU
    kernels sum in a position-dependent order: equal up to float32 rounding, not bit for bit."""
    embed_file(runs["pretrained"], inputs, tmp_path / "one.parquet", batch_size=1000)
    embed_file(runs["pretrained"], inputs, tmp_path / "many.parquet", batch_size=3)
    one, _ = read_embeddings(tmp_path / "one.parquet")
    many, _ = read_embeddings(tmp_path / "many.parquet")
    ok = ~np.isnan(one[:, 0])
    assert np.allclose(one[ok], many[ok], rtol=1e-5, atol=1e-5)
    assert np.abs(one[ok] - many[ok]).max() < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pretrained", "finetuned"])
def test_compiled_encoders_embed_what_the_eager_ones_do(runs, inputs, tmp_path, kind):
    model = runs["pretrained"] if kind == "pretrained" else runs["bbbp0"] / "model.pt"
    embed_file(model, inputs, tmp_path / "eager.parquet", batch_size=40)
    embed_file(model, inputs, tmp_path / "compiled.parquet", batch_size=40, compile=True)
    eager, _ = read_embeddings(tmp_path / "eager.parquet")
    compiled, _ = read_embeddings(tmp_path / "compiled.parquet")
    ok = ~np.isnan(eager[:, 0])
    assert ok.sum() == 77 and np.array_equal(ok, ~np.isnan(compiled[:, 0]))
    assert np.allclose(compiled[ok], eager[ok], rtol=1e-4, atol=1e-5)


def test_separate_layout_holds_the_same_views(runs, inputs, tmp_path):
    embed_file(runs["pretrained"], inputs, tmp_path / "c.parquet", layout="concat")
    embed_file(runs["pretrained"], inputs, tmp_path / "s.parquet", layout="separate")
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.column_names[-2:] == ["atom_view", "bond_view"]
    assert np.array_equal(read_embeddings(tmp_path / "c.parquet")[0],
                          read_embeddings(tmp_path / "s.parquet")[0], equal_nan=True)


def test_pretrained_views_use_trained_weights_only(runs):
    """No freshly initialized module takes part: the seed before loading changes nothing."""
    graphs = featurize_smiles(ZINC[:10])
    torch.manual_seed(1)
    a = Encoder(runs["pretrained"]).views(graphs)
    torch.manual_seed(2)
    b = Encoder(runs["pretrained"]).views(graphs)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.allclose(a[0], a[1])  # two different views


def test_finetuned_views_are_what_the_heads_read(runs, tmp_path):
    src = tmp_path / "in.smi"
    src.write_text("".join(f"{s}\n" for s in ZINC[:12]))
    embed_file(runs["bbbp0"] / "model.pt", src, tmp_path / "e.parquet", layout="separate")
    table = pq.read_table(tmp_path / "e.parquet")
    saved = load_checkpoint(runs["bbbp0"] / "model.pt")
    model = BatmanNetFinetune.from_config(saved["model_config"])
    model.load_state_dict(saved["model"])
    model.eval()
    with torch.no_grad():
        atom, bond = model.views(featurize_smiles(table.column("smiles").to_pylist()).to_batch())
    got, _ = read_embeddings(tmp_path / "e.parquet")
    assert np.allclose(got, torch.cat([atom, bond], 1).numpy(), atol=1e-6)


def test_cli_and_one_line_errors(runs, inputs, tmp_path, capsys):
    assert main(["embed", str(inputs), "--checkpoint", str(runs["pretrained"]), "--out",
                 str(tmp_path / "e.parquet"), "--keep", "id", "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == 80 and summary["dim"] == 64 and summary["molecules_per_s"] > 0
    assert main(["embed", str(inputs), "--checkpoint", str(inputs), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "cannot read model" in capsys.readouterr().err
    with pytest.raises(BbmnError, match="not a BatmanNet model"):
        torch.save({"kind": "other"}, tmp_path / "other.pt")
        Encoder(tmp_path / "other.pt")
    assert not (tmp_path / "x.parquet").exists()
