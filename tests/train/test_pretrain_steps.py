"""steps.jsonl: the training loss every logged step, for the report's pre-training curve."""

import json

from bbmn.eval.plots import plot_pretrain, read_pretrain_history
from bbmn.train.pretrain import pretrain
from tests.train.test_pretrain import small, zinc_cache  # noqa: F401 (fixture)


def test_logged_steps_are_written_and_a_rerun_keeps_no_stale_lines(tmp_path, zinc_cache):  # noqa: F811
    out = tmp_path / "run"
    config = small(epochs=1, log_every=2, max_steps=6, val_batches=2)
    pretrain(zinc_cache, out, config)
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [2, 4, 6]
    assert all(s["train_loss"] > 0 and s["lr"] > 0 and 0 < s["epoch"] <= 1 for s in steps)
    with open(out / "steps.jsonl", "a") as fh:  # a line from beyond what the checkpoint holds
        fh.write(json.dumps({"step": 99, "train_loss": 1.0, "lr": 1e-4}) + "\n")
    pretrain(zinc_cache, out, config)
    assert [json.loads(line)["step"] for line in (out / "steps.jsonl").read_text().splitlines()] == [2, 4, 6]
    epochs, logged = read_pretrain_history(out)
    assert len(epochs) == 1 and len(logged) == 3
    written = plot_pretrain(out, tmp_path / "curves")
    svg = open(written["svg"]).read()
    assert "atom.element" in svg and "train (logged steps)" in svg
