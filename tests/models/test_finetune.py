"""The fine-tuning model: shapes, readouts, loss, prediction, and what a pre-trained checkpoint gives."""

from pathlib import Path

import pytest
import torch

from bbmn.chem.features import ATOM_DIM
from bbmn.data.graph import featurize_smiles
from bbmn.errors import BbmnError
from bbmn.models.batmannet import BatmanNet, count_parameters
from bbmn.models.finetune import BatmanNetFinetune, combine_heads, finetune_loss
from bbmn.models.views import mean_pool

ZINC = [line.split()[0] for line in
        (Path(__file__).parents[1] / "data" / "zinc_200.smi").read_text().splitlines()]
#: drug-like molecules, a single atom, a salt, a bond with stereo
SMILES = ZINC[:5] + ["C", "[Na+].[Cl-]", "C/C=C/C(=O)[O-]"]
SMALL = dict(hidden=32, heads=2, depth=3, encoder_blocks=2)


def small(num_tasks=2, task_type="classification", seed=0, **kwargs):
    torch.manual_seed(seed)
    return BatmanNetFinetune(num_tasks, task_type, **{**SMALL, **kwargs})


def inputs(smiles=SMILES, descriptor_dim=200, seed=0):
    batch = featurize_smiles(smiles).to_batch()
    return batch, torch.randn(len(smiles), descriptor_dim, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------- shapes, sizes

@pytest.mark.parametrize("num_tasks", [1, 3])
@pytest.mark.parametrize("task_type", ["classification", "regression"])
def test_both_heads_give_one_output_per_molecule_and_task(num_tasks, task_type):
    model = small(num_tasks, task_type)
    batch, desc = inputs()
    a, b = model(batch, desc)
    assert a.shape == b.shape == (len(SMILES), num_tasks)
    assert not torch.equal(a, b)  # two heads with their own weights
    views = model.views(batch)
    assert [v.shape for v in views] == [(len(SMILES), 32)] * 2


def test_descriptors_are_optional_but_checked():
    model = small(descriptor_dim=0)
    batch, _ = inputs()
    assert model(batch)[0].shape == (len(SMILES), 2)
    with_desc = small()
    with pytest.raises(ValueError, match=r"descriptors of shape \(8, 200\)"):
        with_desc(batch, torch.zeros(len(SMILES), 199))
    batch.descriptors = torch.zeros(len(SMILES), 200)  # taken from the batch when not passed
    assert with_desc(batch)[0].shape == (len(SMILES), 2)


def test_parameter_count_of_the_default_model():
    """Encoders as in pre-training (1,706,576) minus both pre-training aggregate-to-self stages
    (120,701 each), plus two atom readouts (h+39 -> 4h -> h, PReLU, LayerNorm: 96,301 each) and
    two heads (300 -> 200 -> T with a PReLU: 60,201 + 201 T each)."""
    model = BatmanNetFinetune(1, "classification")
    assert count_parameters(model) == 1_706_576 - 2 * 120_701 + 2 * 96_301 + 2 * (60_201 + 201) == 1_778_580
    assert count_parameters(model.atom_view_head) == 60_201 + 201


def test_pretraining_only_arguments_are_accepted_and_others_refused():
    config = BatmanNet(**SMALL).config  # what a pre-trained checkpoint stores
    model = BatmanNetFinetune(1, "regression", **config)
    assert model.config["hidden"] == 32 and "mask_ratio" not in model.config
    with pytest.raises(TypeError, match="hiden"):
        BatmanNetFinetune(1, "regression", hiden=32)
    with pytest.raises(ValueError, match="task type"):
        BatmanNetFinetune(1, "ranking")
    assert BatmanNetFinetune.from_config(model.config).config == model.config


# ----------------------------------------------------------------------------------- readouts

def test_mean_pool_matches_a_loop():
    x = torch.randn(7, 3)
    index = torch.tensor([0, 0, 2, 2, 2, 3, 0])
    pooled = mean_pool(x, index, 5)
    for g in range(5):
        rows = x[index == g]
        expected = rows.mean(0) if len(rows) else torch.zeros(3)
        assert torch.allclose(pooled[g], expected)


def test_readouts_sum_neighbour_atoms_and_incoming_edges():
    """The two views, recomputed with literal loops over atoms and edges."""
    model = small().eval()
    batch, _ = inputs(["CC(=O)N", "c1ccccc1O"])
    from bbmn.models.batmannet import edge_inputs
    from bbmn.nn.message_passing import AtomNeighbourSum, EdgeNeighbourSum

    with torch.no_grad():
        atoms, _ = model.node_encoder.hidden_states(
            batch.x, AtomNeighbourSum.full(batch.edge_index, batch.num_nodes))
        edges, _ = model.edge_encoder.hidden_states(
            edge_inputs(batch), EdgeNeighbourSum.full(batch.edge_index, batch.rev_edge, batch.num_nodes))
        src, dst = batch.edge_index.tolist()
        from_atoms = torch.zeros_like(atoms)
        from_bonds = torch.zeros(batch.num_nodes, edges.shape[1])
        for e, (u, v) in enumerate(zip(src, dst)):
            from_atoms[v] += atoms[u]
            from_bonds[v] += edges[e]
        atom_view = model.node_encoder.readout(from_atoms, batch.x)
        bond_view = model.edge_encoder.atom_readout(from_bonds, batch.x)
        views = model.views(batch)
    for got, per_atom in zip(views, (atom_view, bond_view)):
        for mol in range(2):
            rows = per_atom[batch.ptr[mol]:batch.ptr[mol + 1]]
            assert torch.allclose(got[mol], rows.mean(0), atol=1e-5)


def test_a_molecule_scores_the_same_alone_or_in_a_batch():
    model = small().eval()
    batch, desc = inputs()
    with torch.no_grad():
        together = model.predict(batch, desc)
        alone = model.predict(featurize_smiles(SMILES[2:3]).to_batch(), desc[2:3])
    assert torch.allclose(together[2], alone[0], atol=1e-5)


# -------------------------------------------------------------------------------- loss, predict

def test_loss_is_the_mean_over_present_labels_only():
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    nan = float("nan")
    y = torch.tensor([[1.0, nan, 0.0], [nan] * 3, [0.0, 1.0, 1.0], [1.0, 1.0, nan]])
    present = ~torch.isnan(y)
    loss = finetune_loss((a, b), y, "classification", disagreement=0.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert loss.count == 7
    assert torch.allclose(loss.head_a, bce(a[present], y[present]))
    assert torch.allclose(loss.head_b, bce(b[present], y[present]))
    assert torch.allclose(loss.total, loss.head_a + loss.head_b)
    loss.total.backward()
    assert (a.grad[~present] == 0).all() and (a.grad[present] != 0).all()


def test_regression_loss_is_mse_on_the_given_targets():
    a, b = torch.randn(5, 2), torch.randn(5, 2)
    y = torch.randn(5, 2)
    y[1, 0] = float("nan")
    present = ~torch.isnan(y)
    loss = finetune_loss((a, b), y, "regression", disagreement=0.0)
    assert torch.allclose(loss.head_a, ((a - y)[present] ** 2).mean())
    assert torch.allclose(loss.head_b, ((b - y)[present] ** 2).mean())


def test_disagreement_adds_c_times_the_mse_between_heads():
    a, b = torch.randn(6, 2), torch.randn(6, 2)
    y = torch.randint(0, 2, (6, 2)).float()
    y[0, 1] = float("nan")
    present = ~torch.isnan(y)
    without = finetune_loss((a, b), y, "classification", disagreement=0.0)
    with_c = finetune_loss((a, b), y, "classification", disagreement=0.25)
    mse = ((a - b)[present] ** 2).mean()
    assert torch.allclose(with_c.disagreement, mse)
    assert torch.allclose(with_c.total - without.total, 0.25 * mse)
    same = finetune_loss((a, a.clone()), y, "classification", disagreement=1.0)
    assert float(same.disagreement) == 0.0
    model = small(disagreement=0.25)  # the model uses its own weight
    assert torch.allclose(model.loss((a, b), y).total, with_c.total)


def test_no_present_label_gives_a_zero_loss_not_nan():
    a = torch.randn(2, 1, requires_grad=True)
    loss = finetune_loss((a, a * 2), torch.full((2, 1), float("nan")), "regression")
    assert loss.count == 0 and float(loss.total.detach()) == 0.0
    loss.total.backward()  # still differentiable


def test_prediction_is_the_mean_of_the_two_heads():
    batch, desc = inputs()
    for task_type in ("classification", "regression"):
        model = small(task_type=task_type).eval()
        with torch.no_grad():
            a, b = model(batch, desc)
            pred = model.predict(batch, desc)
        expected = (a.sigmoid() + b.sigmoid()) / 2 if task_type == "classification" else (a + b) / 2
        assert torch.allclose(pred, expected)
        assert torch.allclose(combine_heads((a, b), task_type), expected)
    assert ((pred := small().eval().predict(batch, desc)) > 0).all() and (pred < 1).all()


# ------------------------------------------------------------------------------------ loading

def make_pretrained(directory: Path) -> Path:
    """A real `bbmn pretrain` model.pt (small sizes, two steps) in ``directory``."""
    from bbmn.chem.standardize import profile
    from bbmn.data.cache import featurize
    from bbmn.data.clean import CleanConfig, clean
    from bbmn.train.pretrain import PretrainConfig, pretrain

    clean(Path(__file__).parents[1] / "data" / "zinc_200.smi", directory / "c.parquet",
          directory / "r.csv", None, CleanConfig(standardize=profile("standard"), dedupe=True))
    featurize(directory / "c.parquet", directory / "cache.parquet")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{directory / 'mlflow.db'}")
    try:
        pretrain(directory / "cache.parquet", directory / "run", PretrainConfig(
            batch_size=8, epochs=1, max_steps=2, threads=1, model={**SMALL, "decoder_blocks": 1}))
    finally:
        mp.undo()
    return directory / "run" / "model.pt"


@pytest.fixture(scope="module")
def pretrained_checkpoint(tmp_path_factory):
    return make_pretrained(tmp_path_factory.mktemp("pretrain"))


#: what does not transfer: the atom-from-atom readout's first Linear (h+39 wide instead of 2h; its
#: bias has the same shape and loads), the whole atom-from-bond readout, and both heads
FRESH = (["node_encoder.readout.ffn.expand.weight"]
         + [f"edge_encoder.atom_readout.{n}" for n in (
             "ffn.expand.weight", "ffn.expand.bias", "ffn.act.slope", "ffn.contract.weight",
             "ffn.contract.bias", "norm.weight", "norm.bias")]
         + [f"{h}.{n}" for h in ("atom_view_head", "bond_view_head")
            for n in ("1.weight", "1.bias", "2.slope", "3.weight", "3.bias")])


def test_pretrained_weights_load_by_name_and_shape(pretrained_checkpoint):
    checkpoint = torch.load(pretrained_checkpoint, weights_only=True)
    state = checkpoint["model"]
    model = BatmanNetFinetune(1, "classification", **checkpoint["model_config"])
    report = model.load_pretrained(pretrained_checkpoint)
    assert report.fresh == FRESH
    assert report.mismatched == ["node_encoder.readout.ffn.expand.weight"]
    # everything else of the model came from the checkpoint, value for value
    own = model.state_dict()
    assert sorted(report.loaded + report.fresh) == sorted(own)
    for name in report.loaded:
        assert torch.equal(own[name], state[name]), name
    loaded = set(report.loaded)
    assert {n for n in own if n.startswith(("node_encoder.blocks.", "edge_encoder.blocks.",
                                            "node_encoder.embed.", "edge_encoder.embed."))} <= loaded
    assert {"node_encoder.readout.ffn.contract.weight", "node_encoder.readout.ffn.act.slope",
            "node_encoder.readout.norm.weight", "node_encoder.readout.ffn.expand.bias"} <= loaded
    # the decoders and the edge branch's pre-training (bond-from-bond) readout are not used
    assert report.unused and all(n.startswith(("node_decoder.", "edge_decoder.", "edge_encoder.readout."))
                                 for n in report.unused)
    assert any(n.startswith("edge_encoder.readout.") for n in report.unused)


def test_scratch_and_pretrained_models_share_the_fresh_weights(pretrained_checkpoint):
    """Same code and seed: a pre-trained run differs from a scratch run only by what was loaded."""
    checkpoint = torch.load(pretrained_checkpoint, weights_only=True)
    scratch = small(1, seed=3)
    warm = small(1, seed=3)
    report = warm.load_pretrained(checkpoint)  # a loaded dict works as well as a path
    a, b = scratch.state_dict(), warm.state_dict()
    for name in report.fresh:
        assert torch.equal(a[name], b[name]), name
    assert not any(torch.equal(a[n], b[n]) for n in report.loaded if n.endswith("weight")
                   and "norm" not in n)


def test_loading_refuses_what_does_not_fit(pretrained_checkpoint, tmp_path):
    other_size = BatmanNetFinetune(1, "classification", hidden=48, heads=2, encoder_blocks=2)
    with pytest.raises(BbmnError, match="do not fit this model"):
        other_size.load_pretrained(pretrained_checkpoint)
    checkpoint = torch.load(pretrained_checkpoint, weights_only=True)
    with pytest.raises(BbmnError, match="kind 'something-else'"):
        small().load_pretrained({**checkpoint, "kind": "something-else"})
    with pytest.raises(BbmnError, match="checkpoint not found"):
        small().load_pretrained(tmp_path / "missing.pt")


def test_raw_atom_features_are_what_the_readouts_concatenate():
    model = small()
    assert model.node_encoder.readout.ffn.expand.in_features == 32 + ATOM_DIM
    assert model.edge_encoder.atom_readout.ffn.expand.in_features == 32 + ATOM_DIM
    assert not hasattr(model.edge_encoder, "readout")  # no edge-level readout


def test_positional_code_switch_changes_the_views_and_nothing_else():
    batch, desc = inputs()
    plain, coded = small(seed=3).eval(), small(seed=3, add_positions=True).eval()
    coded.load_state_dict(plain.state_dict())
    with torch.no_grad():
        a, b = plain.views(batch), coded.views(batch)
    assert not torch.allclose(a[0], b[0])
    # one-atom molecules have position 0 only, whose code is the table's first real row
    assert coded.config["add_positions"] and not plain.config["add_positions"]


def test_view_norm_is_saved_with_the_weights():
    model = small(view_norm="standardize")
    batch, desc = inputs()
    views = model.raw_views(batch)[0].detach()
    model.atom_view_norm.set_statistics(views)
    normed = model.atom_view_norm(views)
    assert torch.allclose(normed.mean(0), torch.zeros(views.shape[1]), atol=1e-5)
    assert torch.allclose(normed.std(0, unbiased=False), torch.ones(views.shape[1]), atol=1e-2)
    rebuilt = BatmanNetFinetune.from_config(model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.atom_view_norm(views), normed)
    with pytest.raises(ValueError, match="unknown view normalization"):
        small(view_norm="l2")


def test_batchnorm_views_take_a_training_batch_of_one_molecule():
    model = small(view_norm="batchnorm").train()
    batch, desc = inputs(SMILES[:1])
    a, b = model(batch, desc)  # BatchNorm1d alone would refuse a batch of one in training
    assert a.shape == (1, 2) and torch.isfinite(a).all() and torch.isfinite(b).all()


def test_an_atoms_only_pretraining_loads_its_encoder_and_leaves_the_other_fresh(tmp_path):
    from bbmn.models.batmannet import BatmanNet
    from bbmn.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = BatmanNet(**{**SMALL, "decoder_blocks": 1}, branches="atoms")
    save_checkpoint(tmp_path / "model.pt", kind="batmannet-pretrained", model_config=net.config,
                    model=net.state_dict())
    model = BatmanNetFinetune(1, "classification", **net.config)
    report = model.load_pretrained(tmp_path / "model.pt")
    assert any(n.startswith("node_encoder.blocks.") for n in report.loaded)
    assert not any(n.startswith("edge_encoder.") for n in report.loaded)
    assert any(n.startswith("edge_encoder.blocks.") for n in report.fresh)
