"""Checkpoints are data: plain values and tensors in, the same out; a file that would have to run
code to load is refused with one line, and the code does not run."""

import os
import random

import numpy as np
import pytest
import torch

from bbmn.errors import BbmnError
from bbmn.inference.predict import load_model_file
from bbmn.train.checkpoint import (load_checkpoint, load_optimizer_state, optimizer_state, rng_state,
                                   save_checkpoint, set_rng_state)


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


class _Net(torch.nn.Module):
    """Two layers of different shapes, registered in either order (as a refactor might)."""

    def __init__(self, swapped: bool):
        super().__init__()
        torch.manual_seed(0)
        first, second = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
        for name, layer in ([("b", second), ("a", first)] if swapped else [("a", first), ("b", second)]):
            self.add_module(name, layer)

    def forward(self, x):
        return self.b(self.a(x)).sum()


def _stepped(swapped: bool):
    net = _Net(swapped)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.ones(5, 3)).backward()
    optimizer.step()
    return net, optimizer


def test_optimizer_state_follows_parameter_names_when_modules_are_registered_in_another_order(tmp_path):
    net, optimizer = _stepped(swapped=False)
    save_checkpoint(tmp_path / "latest.pt", optimizer=optimizer_state(optimizer, net))
    other = _Net(swapped=True)
    assert [n for n, _ in other.named_parameters()] != [n for n, _ in net.named_parameters()]
    resumed = torch.optim.Adam(other.parameters(), lr=0.1)
    load_optimizer_state(resumed, other, load_checkpoint(tmp_path / "latest.pt")["optimizer"])
    for name, param in other.named_parameters():
        original = dict(net.named_parameters())[name]
        assert torch.equal(resumed.state[param]["exp_avg"], optimizer.state[original]["exp_avg"]), name


def test_an_unnamed_optimizer_state_of_another_order_is_refused_not_misapplied(tmp_path):
    net, optimizer = _stepped(swapped=False)
    old_style = optimizer.state_dict()  # what bbmn wrote before it kept parameter names
    other = _Net(swapped=True)
    resumed = torch.optim.Adam(other.parameters(), lr=0.1)
    with pytest.raises(BbmnError, match=r"latest\.pt: its optimizer state does not fit .*start the run afresh"):
        load_optimizer_state(resumed, other, old_style, tmp_path / "latest.pt")
    same = _Net(swapped=False)
    resumed = torch.optim.Adam(same.parameters(), lr=0.1)
    load_optimizer_state(resumed, same, old_style)  # the same order still resumes
    assert torch.equal(resumed.state[same.a.weight]["exp_avg"], optimizer.state[net.a.weight]["exp_avg"])


def test_an_optimizer_state_of_other_parameters_is_refused(tmp_path):
    net, optimizer = _stepped(swapped=False)
    saved = optimizer_state(optimizer, net)
    saved["param_names"] = [n.replace("a.", "c.") for n in saved["param_names"]]
    same = _Net(swapped=False)
    resumed = torch.optim.Adam(same.parameters(), lr=0.1)
    with pytest.raises(BbmnError, match=r"optimizer state is for other parameters .*'a\.bias'"):
        load_optimizer_state(resumed, same, saved)
