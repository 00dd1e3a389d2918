# Helpers shared by the rules: the validated config, registry lookups, target lists.
import json
import os
import shlex
import shutil
from pathlib import Path

from bbmn.config import (
    WORKFLOW_KEYS,
    existing_model,
    prepare_config,
    prepared_datasets as _prepared_datasets,
    uses_pretrained_model,
    variant_pretrain,
)
from bbmn.data.clean import CleanConfig
from bbmn.data.sources import (
    DigestCache,
    check_source,
    check_sources,
    default_digest_cache,
)
from bbmn import layout
from bbmn.errors import BbmnError
from bbmn.eval.probe import ProbeConfig
from bbmn.eval.reference import budget_text
from bbmn.kinds import FINETUNE_KINDS
from bbmn.models.options import ENCODER_SIZES, HeadOptions, ModelOptions
from bbmn.options import as_flags, cli_fields
from bbmn.train.config import FinetuneConfig, PretrainConfig

try:
    _prepared = prepare_config(
        config,
        Path(workflow.basedir) / "schemas" / "config.schema.yaml",
        overrides=workflow.config_settings.overwrite_config,
    )
    # registered files: a readable local path (hashed now), present in a mirror with the
    # registry's sha256, or downloadable
    SOURCES = check_sources(_prepared, default_digest_cache())
except BbmnError as _error:
    raise WorkflowError(f"bbmn: {_error}") from None
config.clear()
config.update(_prepared)

# envs/*.post-deploy.sh install bbmn from this checkout into each conda environment.
os.environ.setdefault("BBMN_SOURCE", str(Path(workflow.basedir).parent))

if shutil.which("bbmn") is None:
    raise WorkflowError(
        "bbmn: the `bbmn` command is not on PATH; activate the venv first "
        "(`source .venv/bin/activate`) or run `make run`"
    )

RESULTS = config["results"]
DATA = f"{RESULTS}/data"
LOGS = f"{RESULTS}/logs"
SPLIT = config["split"]
SEEDS = SPLIT["seeds"]
PRETRAIN = config["pretrain"]
FINETUNE = config["finetune"]
PROBE = config["probe"]
BASELINES = config["baselines"]
TRACKING = config["tracking"]
TRACKING_RECORD = f"{RESULTS}/tracking/parent_run.json"
FIGURES = f"{RESULTS}/figures"
VARIANTS = {v["name"]: v for v in PRETRAIN["variants"]}


def registry_entry(name):
    """The registry entry of a labelled dataset or a corpus."""
    if name in config["datasets"]:
        return config["datasets"][name]
    if name in config["corpora"]:
        return config["corpora"][name]
    raise WorkflowError(
        f"bbmn: {name!r} is in neither the datasets nor the corpora registry"
    )


def raw_path(name):
    """Where the fetch rule puts a registered file (its file name is kept)."""
    entry = registry_entry(name)
    return f"{DATA}/raw/{name}/{Path(entry.get('path') or entry['file']).name}"


def source_sha256(name):
    """A registered file's sha256; a local path's as hashed when the workflow started."""
    if name not in SOURCES:  # a target of a dataset the run does not prepare
        section = "datasets" if name in config["datasets"] else "corpora"
        try:
            cache = DigestCache(default_digest_cache())
            SOURCES[name] = check_source(config, section, name, cache)
        except BbmnError as error:
            raise WorkflowError(f"bbmn: {error}") from None
    return SOURCES[name].sha256


def fetch_args(name):
    """bbmn fetch options; passed as params, so a local file's new sha256 reruns fetch, clean
    and everything downstream."""
    entry = registry_entry(name)
    if entry.get("path"):
        return shlex.join(["--sha256", source_sha256(name), "--local", entry["path"]])
    args = ["--sha256", entry["sha256"], "--path", entry["file"]]
    for mirror in config["data"]["mirrors"]:
        args += ["--mirror", mirror]
    if entry.get("url"):
        args += ["--url", entry["url"]]
    if entry.get("member"):
        args += ["--member", entry["member"]]
    if not config["data"]["download"]:
        args.append("--no-download")
    return shlex.join(args)


def clean_args(name):
    """bbmn clean options from the registry: labelled sets keep duplicates, corpora drop them;
    the molecule filters (CleanConfig's) as the entry sets them (corpora by default)."""
    entry = registry_entry(name)
    args = [
        "--smiles-col",
        entry["smiles_column"],
        "--standardize",
        entry["standardize"],
        "--encoding",
        entry["encoding"],
    ]
    if entry.get("format"):
        args += ["--format", entry["format"]]
    if name in config["datasets"]:
        labels = entry["labels"]
        args += [
            "--labels",
            *(["*"] if labels == "*" else labels),
            "--task",
            entry["task"],
        ]
    else:
        args.append("--dedupe")
    filters = {f.name for f in cli_fields(CleanConfig)}
    args += as_flags({k: v for k, v in entry.items() if k in filters}, CleanConfig)
    return shlex.join(args)


def split_path(name, seed, method=None):
    return f"{DATA}/splits/{name}/{method or SPLIT['method']}/seed{seed}.json"


# One helper per data file; rules pass wildcards, e.g. cache_path("{name}").
def clean_path(name, suffix="parquet"):
    """The cleaned table of a dataset or corpus (suffix rejects.csv, summary.json: its report)."""
    return f"{DATA}/clean/{name}.{suffix}"


def cache_path(name):
    """The graph cache of a dataset or corpus (bbmn featurize)."""
    return f"{DATA}/cache/{name}.parquet"


def descriptors_path(name):
    return f"{DATA}/descriptors/{name}.parquet"


def inchikeys_path(name):
    return f"{DATA}/inchikeys/{name}.parquet"


def pretrain_args(variant=None):
    """bbmn pretrain options from the `pretrain` section (with a variant's overrides); passed as
    params, so a change reruns."""
    p = PRETRAIN if variant is None else variant_pretrain(config, variant)
    values = {
        **p,
        "variant": variant,
        "register": (
            p["register"] if variant is None else ""
        ),  # the main run's model only
        "threads": max(1, p["threads"] // p["nproc"]),
        "snapshot_steps": sorted(p["snapshot_steps"]),
        "deterministic": config["run"]["deterministic"],
    }
    args = as_flags(values, PretrainConfig, workflow_keys=WORKFLOW_KEYS["pretrain"])
    args += as_flags(p["model"], ModelOptions)
    if TRACKING["required"]:
        args.append("--tracking-required")
    if variant is not None:
        overrides = VARIANTS[variant]["overrides"]
        args += ["--variant-overrides", json.dumps(overrides, sort_keys=True)]
    return shlex.join(args)


def tracking_init_args():
    args = [
        "--experiment",
        TRACKING["experiment"],
        "--tag",
        f"preset={config['preset']}",
    ]
    if TRACKING["uri"]:
        args += ["--uri", TRACKING["uri"]]
    if TRACKING["required"]:
        args.append("--required")
    return shlex.join(args)


def pretrain_launcher(resources=None):
    """`bbmn`; `torchrun ... bbmn` for data-parallel pre-training over `nproc` processes; with
    `torchrun_per_gpu`, one process per GPU of the job (its `gpu` resource, set by the profile)
    spread over its `nodes`: on several nodes, srun starts one torchrun per node, which meet
    at the first node of the SLURM allocation."""
    bbmn = "$(command -v bbmn)"
    if not PRETRAIN["torchrun_per_gpu"]:
        if PRETRAIN["nproc"] == 1:
            return "bbmn"
        return f"torchrun --standalone --nproc_per_node {PRETRAIN['nproc']} {bbmn}"
    gpus = int(resources.get("gpu", 0) or 0) if resources else 0
    nodes = int(resources.get("nodes", 1) or 1) if resources else 1
    if gpus < 1 or gpus % nodes:
        raise WorkflowError(
            f"bbmn: pretrain.torchrun_per_gpu needs the pretrain job's `gpu` resource to be a "
            f"positive multiple of its `nodes` (got gpu={gpus}, nodes={nodes}); set them in "
            "the profile, e.g. profiles/slurm/config.yaml"
        )
    if nodes == 1:
        return f"torchrun --standalone --nproc_per_node {gpus} {bbmn}"
    head = (
        '$(scontrol show hostnames "$(squeue -h -j $SLURM_JOB_ID -o %N)" | head -n 1)'
    )
    return (
        f"srun --nodes {nodes} --ntasks-per-node 1 --kill-on-bad-exit=1"
        f" torchrun --nnodes {nodes} --nproc_per_node {gpus // nodes}"
        f" --rdzv_backend c10d --rdzv_id $SLURM_JOB_ID --rdzv_endpoint {head}:29500 {bbmn}"
    )


def pretrain_runtime_minutes():
    """A cluster time limit for pre-training: generous for a budgeted run, a day for the paper's."""
    return 24 * 60 if PRETRAIN["max_steps"] == 0 else 240


USE_MODEL = PRETRAIN["use_model"]
#: fine-tune from an existing model (pretrain.use_model) instead of pre-training one
EXISTING_MODEL = existing_model(config)


def pretrained_model():
    """The pre-trained model the run fine-tunes, probes and embeds: the run's own, or the one of
    pretrain.use_model (downloaded to results/pretrain/external/ when given by URL)."""
    if USE_MODEL["path"]:
        return USE_MODEL["path"]
    if USE_MODEL["url"]:
        return f"{RESULTS}/pretrain/external/model.pt"
    return f"{RESULTS}/pretrain/{config['run']['corpus']}/model.pt"


def check_existing_model():
    """A local pretrain.use_model exists, has its sha256 when given, and the sizes of
    pretrain.model (scratch rows and the random probe encoder are built from those)."""
    if not USE_MODEL["path"]:
        return
    from bbmn.io import sha256_file
    from bbmn.train.checkpoint import encoder_sizes

    path = Path(USE_MODEL["path"])
    if not path.is_file():
        raise WorkflowError(
            f"bbmn: config key pretrain.use_model.path: {path} not found"
        )
    if USE_MODEL["sha256"] and sha256_file(path) != USE_MODEL["sha256"]:
        raise WorkflowError(
            f"bbmn: config key pretrain.use_model: {path} does not have the sha256 given"
        )
    try:
        sizes = encoder_sizes(path)
    except BbmnError as error:
        raise WorkflowError(
            f"bbmn: config key pretrain.use_model.path: {error}"
        ) from None
    differ = {
        key: (sizes[key], value)
        for key, value in PRETRAIN["model"].items()
        if key in sizes and sizes[key] != value
    }
    if differ:
        text = ", ".join(
            f"{k} {a} (pretrain.model: {b})" for k, (a, b) in differ.items()
        )
        raise WorkflowError(
            f"bbmn: config key pretrain.use_model: the model's sizes differ from pretrain.model: "
            f"{text}; set pretrain.model to the model's sizes so that the scratch rows and the "
            "random probe encoder compare like with like"
        )


check_existing_model()


def variant_dir(variant):
    """Where a pre-training variant's runs live: pretrain/<corpus>/ and finetune/<dataset>/seed<S>/."""
    return f"{RESULTS}/variants/{variant}"


def variant_model(variant):
    return f"{variant_dir(variant)}/pretrain/{config['run']['corpus']}/model.pt"


def variant_finetune_dir(variant, name, seed):
    return f"{variant_dir(variant)}/finetune/{name}/seed{seed}"


def ablation_inputs():
    """Fine-tuning metrics the ablation compares: the main run's pre-trained ones (the default
    row), then every variant's, on the run's datasets and seeds."""
    main = (
        [
            f"{finetune_dir(name, 'pretrained', seed)}/metrics.json"
            for name in config["run"]["datasets"]
            for seed in SEEDS
        ]
        if "pretrained" in FINETUNE["kinds"]
        else []
    )
    return main + [
        f"{variant_finetune_dir(variant, name, seed)}/metrics.json"
        for variant in VARIANTS
        for name in config["run"]["datasets"]
        for seed in SEEDS
    ]


def snapshot_path(step, corpus="{corpus}"):
    """A pre-training snapshot: the model after ``step`` steps (pretrain.snapshot_steps)."""
    return f"{RESULTS}/pretrain/{corpus}/snapshots/step-{step}.pt"


def probe_encoders():
    """Encoders the probe reads: pretrained, random, and step<N> per snapshot when asked."""
    snapshots = (
        [f"step{n}" for n in sorted(PRETRAIN["snapshot_steps"])]
        if PROBE["snapshots"] and not EXISTING_MODEL
        else []
    )
    return list(PROBE["encoders"]) + snapshots


def probe_checkpoint(encoder):
    """The model file a probe encoder reads (none for the random encoder)."""
    if encoder == "pretrained":
        return pretrained_model()
    if encoder.startswith("step"):
        return snapshot_path(encoder[4:], config["run"]["corpus"])
    return []


def finetune_args():
    """bbmn finetune options from the `finetune` section (the encoders' dropout is pretrain.model's);
    passed as params, so a change reruns."""
    values = {**FINETUNE, "deterministic": config["run"]["deterministic"]}
    args = as_flags(
        values, FinetuneConfig, HeadOptions, workflow_keys=WORKFLOW_KEYS["finetune"]
    )
    args += as_flags({"dropout": PRETRAIN["model"]["dropout"]}, ModelOptions)
    if TRACKING["required"]:
        args.append("--tracking-required")
    return shlex.join(args)


def finetune_kind_args(kind, checkpoint):
    """What a fine-tuning kind changes (bbmn.kinds.FINETUNE_KINDS): the heads' inputs, and the
    pre-trained checkpoint or the scratch architecture."""
    entry = FINETUNE_KINDS[kind]
    start = (
        f"--checkpoint {checkpoint}"
        if entry.init == "pretrained"
        else shlex.join(encoder_flags())
    )
    return f"--inputs {entry.inputs} {start}"


def encoder_flags():
    """The pre-trained model's encoder sizes, for the runs and probes that start from fresh
    weights: the scratch and random rows compare like with like."""
    sizes = {key: PRETRAIN["model"][key] for key in ENCODER_SIZES}
    return as_flags(sizes, ModelOptions)


def finetune_runtime_minutes():
    return 60 if FINETUNE["epochs"] <= 10 else 12 * 60


def finetune_dir(name, kind, seed):
    """Run directory of one fine-tuning run (metrics.json, predictions.csv, model.pt)."""
    return layout.finetune_dir(RESULTS, name, kind, seed)


def finetune_targets():
    return [
        f"{finetune_dir(name, kind, seed)}/metrics.json"
        for name in config["run"]["datasets"]
        for kind in FINETUNE["kinds"]
        for seed in SEEDS
    ]


def prepared_datasets():
    """The datasets whose caches and splits are built: the run's, or all registered ones."""
    return _prepared_datasets(config)


def probe_datasets():
    names = PROBE["datasets"]
    return prepared_datasets() if names == "all" else names


def probe_dir(name, encoder):
    """Directory of a dataset's probes of one encoder: seed<N>/metrics.json, health.json."""
    return f"{RESULTS}/probe/{name}/{encoder}"


def probe_targets(names=None):
    """metrics.json of every probe seed run, for ``names`` (default: every probed dataset)."""
    return [
        f"{probe_dir(name, encoder)}/seed{seed}/metrics.json"
        for name in (probe_datasets() if names is None else names)
        for encoder in probe_encoders()
        for seed in SEEDS
    ]


def probe_args(encoder, checkpoint):
    """bbmn probe's encoder options: the run's pre-trained model or a snapshot of it, or a random
    encoder of its sizes."""
    if encoder != "random":
        args = ["--checkpoint", checkpoint]
        if encoder.startswith("step"):  # a snapshot: a row of its own
            args += ["--tag", encoder]
    else:
        args = ["--random-init", "--init-seed", "0", *encoder_flags()]
    args += as_flags(PROBE, ProbeConfig, workflow_keys=WORKFLOW_KEYS["probe"])
    if TRACKING["required"]:
        args.append("--tracking-required")
    return shlex.join(args)


def baseline_dir(name, model, seed):
    """Run directory of one baseline run (metrics.json, predictions.csv)."""
    return f"{RESULTS}/baselines/{name}/{model}/seed{seed}"


def baseline_targets():
    return [
        f"{baseline_dir(name, model, seed)}/metrics.json"
        for name in config["run"]["datasets"]
        for model in BASELINES["models"]
        for seed in SEEDS
    ]


def baseline_args(model):
    """bbmn baseline options of one model; passed as params, so a change reruns its jobs."""
    b = BASELINES[model]
    if model == "ecfp_rf":
        args = [
            "--n-estimators",
            b["n_estimators"],
            "--max-features",
            *b["max_features"],
            "--min-samples-leaf",
            *b["min_samples_leaf"],
        ]
    else:
        args = ["--epochs", b["epochs"], "--device", b["device"]]
        if config["run"]["deterministic"]:
            args.append("--deterministic")
    if TRACKING["required"]:
        args.append("--tracking-required")
    return shlex.join(str(a) for a in args)


def baseline_gpus(model):
    return int(
        model == "chemprop" and BASELINES["chemprop"]["device"] in ("cuda", "gpu")
    )


def run_files(name, filename):
    """``filename`` (metrics.json, predictions.csv) of every fine-tuning and baseline run of a
    dataset, as the table step reads them."""
    return [
        f"{finetune_dir(name, kind, seed)}/{filename}"
        for kind in FINETUNE["kinds"]
        for seed in SEEDS
    ] + [
        f"{baseline_dir(name, model, seed)}/{filename}"
        for model in BASELINES["models"]
        for seed in SEEDS
    ]


def report_targets():
    """The report's figures (rules/report.smk): pre-training curves, the per-dataset
    comparison, ROC curves of each classification dataset, the tables as HTML. Called when the
    DAG is built (the rules' outputs exist by then)."""
    classification = [
        name
        for name in config["run"]["datasets"]
        if config["datasets"][name]["task"] == "classification"
    ]
    curves = (
        expand(rules.plot_pretrain.output.png, corpus=config["run"]["corpus"])
        if uses_pretrained_model(config) and not EXISTING_MODEL
        else []
    )
    return (
        curves
        + [rules.plot_comparison.output.png, rules.plot_tables.output[0]]
        + ([rules.plot_health.output.png] if probe_targets() else [])
        + expand(rules.plot_roc.output.png, name=classification)
    )


def all_targets():
    """Caches and splits of the datasets to prepare, descriptors of the ones this run trains
    on, the pre-trained model (when something reads it), the tables, the report and the uses of
    the models (rule all, after every rule is defined)."""
    run = config["run"]
    targets = []
    for name in prepared_datasets():
        targets.append(cache_path(name))
        targets += [split_path(name, seed) for seed in SEEDS]
    targets += [descriptors_path(name) for name in run["datasets"]]
    if uses_pretrained_model(config):
        targets.append(pretrained_model())
    targets.append(rules.table.output.classification_md)
    if probe_encoders() and probe_datasets():
        targets.append(rules.probe_table.output.classification_md)
    targets += report_targets()
    if VARIANTS:
        targets += [rules.ablation.output.table, rules.ablation.output.png]
    targets.append(rules.plot_overview.output[0])
    targets += use_targets()
    return targets


# ---- using the trained models (rules/use.smk): leakage check, predict, embed ----------------
LEAKAGE = config["leakage"]


def leakage_datasets():
    return LEAKAGE["datasets"] or config["run"]["datasets"]


def leakage_inputs():
    """The cleaned tables and split files of the datasets the leakage check reads."""
    names = leakage_datasets()
    return {
        "tables": [clean_path(name) for name in names],
        "splits": [split_path(name, seed) for name in names for seed in SEEDS],
    }


def leakage_args():
    """`--dataset NAME CLEAN SPLIT...` for each checked dataset."""
    args = []
    for name in leakage_datasets():
        args += ["--dataset", name, clean_path(name)]
        args += [split_path(name, seed) for seed in SEEDS]
    return shlex.join(args)


def leakage_dir(corpus=None):
    return f"{RESULTS}/leakage/{corpus or config['run']['corpus']}"


def pretrain_cache(corpus):
    """The corpus cache pre-training reads: without the overlapping molecules when asked."""
    if LEAKAGE["drop_from_corpus"]:
        return cache_path(f"{corpus}.noleak")
    return cache_path(corpus)


def _use_entry(section, name):
    for entry in config[section]:
        if entry["name"] == name:
            if entry.get("dataset") and entry["dataset"] not in config["datasets"]:
                raise WorkflowError(
                    f"bbmn: config key {section}.{name}.dataset: {entry['dataset']!r} "
                    "is not in the datasets registry"
                )
            return entry
    raise WorkflowError(f"bbmn: no {section} entry named {name!r} in the config")


def ensemble_models(section, name):
    """model.pt of each seed run of a predict or register entry's dataset and init (an ensemble)."""
    entry = _use_entry(section, name)
    init = entry.get("init", "pretrained")
    return [
        f"{finetune_dir(entry['dataset'], init, seed)}/model.pt"
        for seed in entry.get("seeds") or SEEDS
    ]


def predict_args(name):
    entry = _use_entry("predict", name)
    args = ["--smiles-col", entry.get("smiles_column", "smiles")]
    if entry.get("keep"):
        args += ["--keep", *entry["keep"]]
    return shlex.join(args)


def embed_checkpoint(name):
    """The entry's fine-tuned run's model.pt, or the run's pre-trained model."""
    entry = _use_entry("embed", name)
    if not entry.get("dataset"):
        return pretrained_model()
    init = entry.get("init", "pretrained")
    return f"{finetune_dir(entry['dataset'], init, entry.get('seed', 0))}/model.pt"


def embed_args(name):
    entry = _use_entry("embed", name)
    args = [
        "--smiles-col",
        entry.get("smiles_column", "smiles"),
        "--layout",
        entry.get("layout", "concat"),
    ]
    if entry.get("keep"):
        args += ["--keep", *entry["keep"]]
    return shlex.join(args)


def registered_dir(name):
    """Where the register rule puts an ensemble's packaged model and registration record."""
    return layout.registered_dir(RESULTS, name)


def use_targets():
    targets = [f"{RESULTS}/predictions/{e['name']}.csv" for e in config["predict"]]
    targets += [f"{RESULTS}/embeddings/{e['name']}.parquet" for e in config["embed"]]
    targets += [
        layout.registration_record(RESULTS, e["name"]) for e in config["register"]
    ]
    # the overlap with the corpus a model was pre-trained on; unknown for an existing model
    if LEAKAGE["check"] and not EXISTING_MODEL:
        targets.append(f"{leakage_dir()}/summary.md")
    return targets
