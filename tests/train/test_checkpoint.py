"""Checkpoints are data: plain values and tensors in, the same out; a file that would have to run
code to load is refused with one line, and the code does not run."""

import os
import random

import numpy as np
import pytest
import torch

from bbmn.errors import BbmnError
from bbmn.inference.predict import load_model_file
from bbmn.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


class Payload:
    """Unpickling this calls os.system: what a hostile model.pt could carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_model_file_with_a_pickle_payload_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"kind": "batmannet-finetuned", "model": {"w": torch.zeros(2)}, "card": Payload(marker)}, path)
    with pytest.raises(BbmnError, match=r"refusing to load .*model\.pt.*could run code") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    with pytest.raises(BbmnError, match="refusing to load"):
        load_model_file(path)
    assert not marker.exists()


def test_rng_states_round_trip_through_a_data_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", rng=rng_state(), step=7)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    state = load_checkpoint(tmp_path / "c.pt")
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected and state["step"] == 7


def test_an_unreadable_or_foreign_checkpoint_is_set_aside_not_resumed(tmp_path, caplog):
    from bbmn.train.checkpoint import resumable_state

    latest = tmp_path / "latest.pt"
    torch.save({"fingerprint": "a", "rng": np.random.get_state()}, latest)  # an older bbmn's format
    assert resumable_state(latest, "a") is None and not latest.exists()
    assert "cannot be resumed" in caplog.text and len(list(tmp_path.glob("latest.*.stale.pt"))) == 1
    save_checkpoint(latest, fingerprint="b", step=3)
    assert resumable_state(latest, "b")["step"] == 3
    assert resumable_state(latest, "c", set_aside=False) is None and latest.exists()  # other ranks only read
