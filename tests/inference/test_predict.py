"""bbmn predict: the fine-tuning run's own test predictions, ensembles, failed rows, formats."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from bbmn.cli.main import main
from bbmn.errors import BbmnError
from bbmn.inference.predict import Predictor, model_files, predict_file
from tests.inference.runs import finetuned_runs, part_inputs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return finetuned_runs(tmp_path_factory)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_inputs(path, smiles, header="smiles"):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([header, "id"])
        writer.writerows([s, f"m{i}"] for i, s in enumerate(smiles))
    return path


@pytest.mark.parametrize("run, split, task", [("bbbp1", "split1", "p_np"),
                                              ("esol0", "split0", "logSolubility")])
def test_predictions_equal_the_runs_own_test_predictions(runs, tmp_path, run, split, task):
    """The test part's molecules as written in the source file (salts, charges and all) go
    through predict's cleaning and featurization and get the run's predictions.csv values."""
    files = runs[f"{run[:-1]}_files"]
    rows, smiles = part_inputs(files, split)
    out = tmp_path / "pred.csv"
    summary = predict_file([runs[run]], write_inputs(tmp_path / "in.csv", smiles), out, keep=["id"])
    assert summary["rows"] == summary["ok"] == len(rows) and summary["models"] == 1
    got = read_csv(out)
    assert list(got[0]) == ["row", "input", "smiles", "status", "detail", "id", task]
    expected = read_csv(runs[run] / "predictions.csv")
    assert [g["smiles"] for g in got] == [e["smiles"] for e in expected]
    assert np.allclose([float(g[task]) for g in got], [float(e[f"{task}_pred"]) for e in expected],
                       rtol=1e-5, atol=1e-6)
    assert [g["id"] for g in got] == [f"m{i}" for i in range(len(rows))]


def test_a_kept_column_named_like_a_task_is_renamed(runs, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("smiles,p_np\nCCO,1\nxx,0\n")
    predict_file([runs["bbbp0"]], src, tmp_path / "p.csv", keep=["p_np"])
    got = read_csv(tmp_path / "p.csv")
    assert list(got[0])[-2:] == ["p_np_input", "p_np"] and [g["p_np_input"] for g in got] == ["1", "0"]


def test_failed_rows_come_back_in_place_with_their_reason(runs, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("smiles,id\nCCO,a\nnot_a_smiles,b\n,c\nC1CC,d\nc1ccccc1O,e\nCCN,f,extra\n"
                   "C(C)(C)(C)(C)C,g\n[Na+].[O-]C(=O)c1ccccc1,h\n")
    out = tmp_path / "pred.csv"
    summary = predict_file([runs["bbbp0"]], src, out, keep=["id"])
    got = read_csv(out)
    assert len(got) == summary["rows"] == 8 and [int(r["row"]) for r in got] == list(range(8))
    assert [r["status"] for r in got] == ["ok", "invalid_smiles", "empty_smiles", "invalid_smiles",
                                          "ok", "malformed_row", "sanitize_failed", "ok"]
    assert [r["id"] for r in got] == ["a", "b", "c", "d", "e", "", "g", "h"]
    for r in got:
        if r["status"] == "ok":
            assert 0 < float(r["p_np"]) < 1 and r["detail"] == ""
        else:
            assert r["p_np"] == "" and r["detail"] and r["smiles"] == ""
    assert summary["reasons"] == {"invalid_smiles": 2, "empty_smiles": 1, "malformed_row": 1,
                                  "sanitize_failed": 1}
    # bbbp is read as given: the salt keeps its ions (the recorded profile), unless asked otherwise
    assert got[7]["smiles"] == "O=C([O-])c1ccccc1.[Na+]"
    predict_file([runs["bbbp0"]], src, out, standardize="standard")
    assert read_csv(out)[7]["smiles"] == "O=C(O)c1ccccc1"


def test_an_ensemble_gives_the_mean_and_spread_of_its_members(runs, tmp_path):
    rows, smiles = part_inputs(runs["bbbp_files"], "split0")
    src = write_inputs(tmp_path / "in.csv", smiles[:12] + ["xx"])
    assert model_files([runs["root"] / "bbbp" / "pretrained"]) == [
        runs["bbbp0"] / "model.pt", runs["bbbp1"] / "model.pt"]
    predict_file([runs["root"] / "bbbp" / "pretrained"], src, tmp_path / "ens.parquet", chunk_rows=5)
    ens = pq.read_table(tmp_path / "ens.parquet").to_pandas()
    assert list(ens.columns[-2:]) == ["p_np", "p_np_std"] and len(ens) == 13
    members = []
    for seed in (0, 1):
        predict_file([runs[f"bbbp{seed}"]], src, tmp_path / f"m{seed}.parquet")
        members.append(pq.read_table(tmp_path / f"m{seed}.parquet").column("p_np").to_numpy())
    members = np.stack(members)
    assert np.allclose(ens["p_np"], members.mean(0), equal_nan=True)
    assert np.allclose(ens["p_np_std"], members.std(0), equal_nan=True)
    assert (ens["p_np_std"][:12] > 0).all() and np.isnan(ens["p_np"][12])
    meta = json.loads(pq.read_schema(tmp_path / "ens.parquet").metadata[b"bbmn"])
    assert [m["seed"] for m in meta["members"]] == [0, 1] and meta["tasks"] == ["p_np"]


def test_chunking_and_workers_do_not_change_a_single_bit(runs, tmp_path):
    _, smiles = part_inputs(runs["esol_files"], "split0", "train")
    src = tmp_path / "in.smi"
    src.write_text("".join(f"{s}\n" for s in smiles[:40]))
    predict_file([runs["esol0"]], src, tmp_path / "a.csv", batch_size=8)
    predict_file([runs["esol0"]], src, tmp_path / "b.csv", batch_size=8, chunk_rows=5, workers=2)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    # another batch size sums in another order: the same values up to float32 rounding
    predict_file([runs["esol0"]], src, tmp_path / "c.csv", batch_size=3)
    a = [float(r["logSolubility"]) for r in read_csv(tmp_path / "a.csv")]
    c = [float(r["logSolubility"]) for r in read_csv(tmp_path / "c.csv")]
    assert np.allclose(a, c, rtol=1e-5, atol=1e-6)


def test_models_that_do_not_belong_together_are_refused(runs, tmp_path):
    with pytest.raises(BbmnError, match="an ensemble needs the same tasks"):
        Predictor.from_paths([runs["bbbp0"], runs["esol0"]])
    with pytest.raises(BbmnError, match="not a fine-tuned model"):
        Predictor.from_paths([runs["pretrained"]])
    with pytest.raises(BbmnError, match="no fine-tuned model at"):
        Predictor.from_paths([tmp_path])
    saved = torch.load(runs["bbbp0"] / "model.pt", weights_only=True)
    torch.save({**saved, "featurizer_version": 99}, tmp_path / "model.pt")
    with pytest.raises(BbmnError, match="featurizer version 99"):
        Predictor.from_paths([tmp_path / "model.pt"])


def test_a_run_records_how_its_molecules_were_cleaned(runs):
    from bbmn.chem.features import FEATURIZER_VERSION
    from bbmn.chem.standardize import profile

    saved = torch.load(runs["bbbp0"] / "model.pt", weights_only=True)
    assert saved["standardize"] == profile("as_given").as_dict()
    assert saved["featurizer_version"] == FEATURIZER_VERSION
    assert Predictor.from_paths([runs["bbbp0"]]).options_source.startswith("as recorded by")


def test_cli_prints_a_summary_and_errors_are_one_line(runs, tmp_path, capsys):
    src = write_inputs(tmp_path / "in.csv", ["CCO", "c1ccccc1", "?"])
    assert main(["predict", str(src), "--model", str(runs["esol0"]), "--out",
                 str(tmp_path / "p.parquet"), "--keep", "id"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == 3 and summary["failed"] == 1
    assert pq.read_table(tmp_path / "p.parquet").column("id").to_pylist() == ["m0", "m1", "m2"]
    assert main(["predict", str(src), "--model", str(runs["esol0"]), "--out", str(tmp_path / "q.csv"),
                 "--smiles-col", "SMILES"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bbmn predict: error: SMILES column 'SMILES' not found") and "Traceback" not in err
    assert not (tmp_path / "q.csv").exists()
