"""``bbmn pretrain``: masked pre-training on a graph cache; resumes from its last checkpoint.

Under ``torchrun --nproc_per_node N`` it trains data-parallel (gloo on CPUs, NCCL on GPUs).
The last line printed is a JSON summary (params, steps, molecules_per_s, peak_rss_mb, ...).
"""

from __future__ import annotations

import argparse
import json

from bbmn.cli.device_args import add_device_args


def _model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (spec defaults)")
    g.add_argument("--hidden", type=int, default=100, help="hidden size h")
    g.add_argument("--heads", type=int, default=2, help="attention heads per block")
    g.add_argument("--depth", type=int, default=3, help="message-passing depth")
    g.add_argument("--encoder-blocks", type=int, default=6, help="blocks per encoder branch")
    g.add_argument("--decoder-blocks", type=int, default=2, help="blocks per decoder branch")
    g.add_argument("--dropout", type=float, default=0.1, help="dropout rate")
    g.add_argument("--positions", choices=("molecule", "batch"), default="molecule",
                   help="positional code index: within the molecule, or the reference's batch-wide one")
    g.add_argument("--mask-token", choices=("zero", "learned"), default="zero",
                   help="what masked items carry into the decoder besides the positional code")
    g.add_argument("--residual", action=argparse.BooleanOptionalAction, default=False,
                   help="every block adds its input back (GROVER's res_connection; the reference: no)")
    g.add_argument("--branches", choices=("both", "atoms", "bonds"), default="both",
                   help="which branches pre-train (one alone: the single-branch ablation)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="masked pre-training of BatmanNet on a graph cache",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("cache", help="graph cache of the corpus (bbmn featurize)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, model.pt, summary.json)")
    p.add_argument("--batch-size", type=int, default=32, help="molecules per step (per process)")
    p.add_argument("--epochs", type=int, default=16, help="passes over the training part")
    p.add_argument("--max-steps", type=int, default=0, help="optimizer steps at most (0 = no limit)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop with a usable model after this much time (0 = no limit)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share of the corpus")
    p.add_argument("--val-batches", type=int, default=0, help="validation batches at most (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--init-lr", type=float, default=2e-4, help="learning rate at step 0")
    p.add_argument("--max-lr", type=float, default=4e-4, help="learning rate after warm-up")
    p.add_argument("--final-lr", type=float, default=1e-4, help="learning rate at the last step")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="warm-up length in epochs")
    p.add_argument("--weight-decay", type=float, default=1e-7, help="Adam weight decay")
    p.add_argument("--mask-ratio", type=float, default=0.6, help="masked share of atoms and of edges")
    p.add_argument("--static-mask", action="store_true",
                   help="the same mask for a molecule every epoch (the reference's behaviour)")
    _model_arguments(p)
    add_device_args(p, bf16=True)
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (faster steps after a one-off compile)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = default)")
    p.add_argument("--log-every", type=int, default=50, help="steps between progress lines")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--validate-every", type=int, default=0,
                   help="also validate every this many steps (0 = at epoch ends only)")
    p.add_argument("--snapshot-steps", type=int, nargs="*", default=[],
                   help="keep the model after these steps as snapshots/step-N.pt (0 = the initialization)")
    p.add_argument("--deterministic", action="store_true",
                   help="torch deterministic algorithms only (reproducible on GPUs; CPU runs are anyway)")
    p.add_argument("--variant", help="name of this pre-training variant (an ablation), for tags and tables")
    p.add_argument("--variant-overrides", type=json.loads, default={}, metavar="JSON",
                   help="the settings the variant changes, as JSON (recorded and tagged)")
    p.add_argument("--register", default="", metavar="NAME",
                   help="register the final model.pt in the MLflow Model Registry as NAME, its card "
                        "as the version's tags (default: no)")
    p.add_argument("--tracking-parent", help="parent run record written by `bbmn track init`")
    p.add_argument("--tracking-required", action="store_true",
                   help="fail if the MLflow store cannot be used (default: skip tracking)")
    p.set_defaults(run=run)


def model_config(args: argparse.Namespace) -> dict:
    return dict(hidden=args.hidden, heads=args.heads, depth=args.depth,
                encoder_blocks=args.encoder_blocks, decoder_blocks=args.decoder_blocks,
                dropout=args.dropout, positions=args.positions, mask_token=args.mask_token,
                residual=args.residual, branches=args.branches)


def run(args: argparse.Namespace) -> int:
    from bbmn.train.runtime import reexec_with_malloc_tunables

    reexec_with_malloc_tunables()  # ~25% faster steps on CPU; BBMN_PLAIN_MALLOC=1 turns it off
    from bbmn.train.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps,
        max_minutes=args.max_minutes, val_fraction=args.val_fraction, val_batches=args.val_batches,
        seed=args.seed, init_lr=args.init_lr, max_lr=args.max_lr, final_lr=args.final_lr,
        warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay, mask_ratio=args.mask_ratio,
        dynamic_mask=not args.static_mask, model=model_config(args), device=args.device,
        bf16=args.bf16, compile=args.compile, threads=args.threads, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, deterministic=args.deterministic,
        validate_every=args.validate_every, snapshot_steps=sorted(set(args.snapshot_steps)),
        register=args.register,
        variant=args.variant, variant_overrides=args.variant_overrides)
    summary = pretrain(args.cache, args.out, cfg, args.tracking_parent, args.tracking_required)
    if summary["rank"] == 0:  # one summary line per run, not per data-parallel rank
        print(json.dumps({k: v for k, v in summary.items() if k not in ("final", "rank")}))
    return 0 if summary["ended"] != "signal" else 3
