"""``bbmn info`` in-process: a model's card as text and as JSON, a file from before cards, and
what makes a file unusable."""

import json

import pytest
import torch

from bbmn.cli.main import main
from bbmn.io import sha256_file
from tests.train.test_card import tiny_pretrained


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return tiny_pretrained(tmp_path_factory)


def test_the_card_as_text_and_as_json(pretrained, capsys):
    model = pretrained["model"]
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert f"model: {model} (" in out and f"sha256 {sha256_file(model)}" in out
    assert "kind: batmannet-pretrained\nusable by this bbmn: yes\ncard: version 1, created " in out
    assert f"data:\n  corpus.path: {pretrained['cache']}\n  corpus.sha256: {sha256_file(pretrained['cache'])}" in out
    assert "\nmodel_config:\n  hidden: 32\n" in out and "\nfeaturizer:\n  version: 1\n  atom_dim: 39\n" in out
    assert "\nprogress:\n  steps: 2\n" in out and "\n  val_loss: " in out
    assert main(["info", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    card = torch.load(model, weights_only=True)["card"]
    assert info["card"]["data"] == card["data"] and info["card"]["model_config"] == card["model_config"]
    assert info["kind"] == "batmannet-pretrained" and info["usable"] == "yes"


def test_a_file_without_a_card_shows_what_it_holds(pretrained, tmp_path, capsys):
    saved = torch.load(pretrained["model"], weights_only=True)
    del saved["card"]
    torch.save(saved, tmp_path / "old.pt")
    assert main(["info", str(tmp_path / "old.pt")]) == 0
    out = capsys.readouterr().out
    assert "card: missing (written by an older bbmn); derived from the file's contents:" in out
    assert "\nkeys: kind, model, model_config, summary\n" in out and "\n  hidden: 32\n" in out
    assert "\ninput_widths:\n  atom_dim: 39\n  edge_dim: 50\n" in out and "usable by this bbmn: yes" in out
    assert main(["info", str(tmp_path / "old.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["card"] is None and info["derived"]["model_config"] == saved["model_config"]
    assert info["derived"]["parameters"] == sum(t.numel() for t in saved["model"].values())


def test_it_says_why_a_file_cannot_be_used_and_errors_are_one_line(pretrained, tmp_path, capsys):
    saved = torch.load(pretrained["model"], weights_only=True)
    saved["card"]["featurizer"]["version"] = 2
    torch.save(saved, tmp_path / "v2.pt")
    assert main(["info", str(tmp_path / "v2.pt")]) == 0
    assert "usable by this bbmn: no: " in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err == f"bbmn info: error: model not found: {tmp_path / 'missing.pt'}\n"
