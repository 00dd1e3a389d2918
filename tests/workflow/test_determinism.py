"""With `run.deterministic: true`, two runs of the (smallest) tiny workflow from nothing give the
same data, weights, scores, predictions and tables on a CPU."""

import json

import pyarrow.parquet as pq
import pytest

from tests.workflow.reliability import FINETUNE, PRETRAIN, new_workdir, outcome, reference_run, run


@pytest.mark.slow
def test_two_runs_give_identical_tables(tmp_path_factory):
    first = reference_run(tmp_path_factory)
    second = new_workdir(tmp_path_factory.mktemp("again"))
    done = run(second)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("clean/bbbp.parquet", "cache/bbbp.parquet", "cache/zinc200.parquet",
                 "descriptors/bbbp.parquet"):
        a, b = (pq.read_table(w / "results" / "data" / name) for w in (first, second))
        assert a.equals(b), name
    a, b = outcome(first), outcome(second)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key
    # the switch reached both training steps
    for directory in (PRETRAIN, FINETUNE):
        assert json.loads((second / directory / "config.json").read_text())["deterministic"] is True
