# Baselines on the fine-tuning splits (issue 8): ECFP4 + random forest, chemprop D-MPNN.
# One job per dataset x seed x model; each reads the cleaned table and the same split file as
# fine-tuning, and writes a metrics.json that the table step reads beside the fine-tuning runs'.
#
# Settings come from the `baselines` config section; until the schema declares it (with these
# defaults), BASELINE_DEFAULTS below fills every key that is absent.
import shlex

BASELINE_DEFAULTS = {
    "models": ["ecfp_rf"],
    "threads": 2,
    "ecfp_rf": {
        "n_estimators": 500,
        "max_features": ["sqrt", 0.2],
        "min_samples_leaf": [1, 3],
    },
    "chemprop": {"epochs": 50, "device": "auto"},
}


# The `baselines` section over BASELINE_DEFAULTS, nested model settings merged key by key.
BASELINES = {**BASELINE_DEFAULTS, **config.get("baselines", {})}
for _model in ("ecfp_rf", "chemprop"):
    BASELINES[_model] = {**BASELINE_DEFAULTS[_model], **BASELINES[_model]}

# `bbmn baseline` options per model; passed as params, so a change reruns that model's jobs.
_BASELINE_ARGS = {
    "ecfp_rf": [
        "--n-estimators",
        BASELINES["ecfp_rf"]["n_estimators"],
        "--max-features",
        *BASELINES["ecfp_rf"]["max_features"],
        "--min-samples-leaf",
        *BASELINES["ecfp_rf"]["min_samples_leaf"],
    ],
    "chemprop": [
        "--epochs",
        BASELINES["chemprop"]["epochs"],
        "--device",
        BASELINES["chemprop"]["device"],
    ],
}
BASELINE_OPTIONS = {
    model: shlex.join(
        str(a)
        for a in options + (["--tracking-required"] if TRACKING["required"] else [])
    )
    for model, options in _BASELINE_ARGS.items()
}
BASELINE_GPU = int(BASELINES["chemprop"]["device"] in ("cuda", "gpu"))

# metrics.json of every baseline model x run dataset x split seed, for `rule all` and the tables.
BASELINE_TARGETS = [
    f"{RESULTS}/baselines/{name}/{model}/seed{seed}/metrics.json"
    for name in config["run"]["datasets"]
    for model in BASELINES["models"]
    for seed in SEEDS
]


rule baseline:
    input:
        clean=rules.clean.output.table,
        split=lambda wc: split_path(wc.name, wc.seed),
    output:
        metrics=f"{RESULTS}/baselines/{{name}}/{{model}}/seed{{seed}}/metrics.json",
        predictions=f"{RESULTS}/baselines/{{name}}/{{model}}/seed{{seed}}/predictions.csv",
    log:
        f"{LOGS}/baseline/{{name}}/{{model}}/seed{{seed}}.log",
    wildcard_constraints:
        model="ecfp_rf|chemprop",
    conda:
        "../envs/train.yaml"
    threads: BASELINES["threads"]
    resources:
        mem_mb=lambda wc: 4000 if wc.model == "chemprop" else 2000,
        runtime=lambda wc: 480 if wc.model == "chemprop" else 240,
        gpu=lambda wc: BASELINE_GPU if wc.model == "chemprop" else 0,
    params:
        command=lambda wc: wc.model.replace("_", "-"),
        metric=lambda wc: config["datasets"][wc.name]["metric"],
        options=lambda wc: BASELINE_OPTIONS[wc.model],
        tracking=TRACKING_RECORD,
    shell:
        "bbmn baseline {params.command} {input.clean} --split {input.split}"
        " --out $(dirname {output.metrics}) --dataset {wildcards.name} --metric {params.metric}"
        " --seed {wildcards.seed} --threads {threads} {params.options}"
        " --tracking-parent {params.tracking} > {log} 2>&1"
