"""The model files kept in models/: the digests the configs and models/README.md give, loadable by
this bbmn, and of the sizes the workflow's pretrain.model says (scratch rows compare like with like)."""

import re

import yaml

from bbmn.io import sha256_file
from bbmn.train.checkpoint import encoder_sizes, load_checkpoint
from tests.conftest import REPO

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
README = (REPO / "models" / "README.md").read_text()


def test_every_model_file_is_listed_with_its_digest():
    listed = dict(re.findall(r"\| `([\w.-]+\.pt)` \| `([0-9a-f]{64})` \|", README))
    files = {p.name for p in (REPO / "models").glob("*.pt")}
    assert files and set(listed) == files
    for name, digest in listed.items():
        assert sha256_file(REPO / "models" / name) == digest, name


def test_presets_use_the_kept_model_as_it_is():
    uses = [body["pretrain"]["use_model"] for body in CONFIG["presets"].values()
            if body.get("pretrain", {}).get("use_model", {}).get("path", "").startswith("models/")]
    assert uses, "a preset fine-tunes from a kept model"
    for use in uses:
        path = REPO / use["path"]
        assert sha256_file(path) == use["sha256"]
        model = load_checkpoint(path)
        assert model["kind"] == "batmannet-pretrained" and model["summary"]["steps"] > 0
        sizes = encoder_sizes(path)
        assert {k: v for k, v in CONFIG["pretrain"]["model"].items() if k in sizes} == {
            k: sizes[k] for k in sizes if k in CONFIG["pretrain"]["model"]}
