# Fine-tuning of every run dataset x seed x init, and the paper's tables.


rule finetune:
    input:
        cache=cache_path("{name}"),
        descriptors=descriptors_path("{name}"),
        split=lambda wc: split_path(wc.name, wc.seed),
        pretrained=lambda wc: (
            pretrained_model() if FINETUNE_KINDS[wc.kind].init == "pretrained" else []
        ),
    output:
        metrics=f"{finetune_dir('{name}', '{kind}', '{seed}')}/metrics.json",
        predictions=f"{finetune_dir('{name}', '{kind}', '{seed}')}/predictions.csv",
        model=f"{finetune_dir('{name}', '{kind}', '{seed}')}/model.pt",
    log:
        f"{LOGS}/finetune/{{name}}/{{kind}}/seed{{seed}}.log",
    wildcard_constraints:
        kind="|".join(FINETUNE_KINDS),
    conda:
        "../envs/train.yaml"
    threads: FINETUNE["threads"]
    resources:
        mem_mb=3000,
        runtime=finetune_runtime_minutes(),
        gpu=0,
    params:
        metric=lambda wc: config["datasets"][wc.name]["metric"],
        kind=lambda wc, input: finetune_kind_args(wc.kind, input.pretrained),
        options=finetune_args(),
        tracking=TRACKING_RECORD,
    shell:
        "bbmn finetune {input.cache} --descriptors {input.descriptors} --split {input.split}"
        " --out $(dirname {output.metrics}) --dataset {wildcards.name} --metric {params.metric}"
        " --seed {wildcards.seed} {params.kind} {params.options} --threads {threads}"
        " --tracking-parent {params.tracking} > {log} 2>&1"


# A variant's pre-trained model fine-tuned like the main run's (kind pretrained).
use rule finetune as finetune_variant with:
    input:
        cache=cache_path("{name}"),
        descriptors=descriptors_path("{name}"),
        split=lambda wc: split_path(wc.name, wc.seed),
        pretrained=lambda wc: variant_model(wc.variant),
    output:
        metrics=f"{variant_finetune_dir('{variant}', '{name}', '{seed}')}/metrics.json",
        predictions=f"{variant_finetune_dir('{variant}', '{name}', '{seed}')}/predictions.csv",
        model=f"{variant_finetune_dir('{variant}', '{name}', '{seed}')}/model.pt",
    log:
        f"{LOGS}/variants/{{variant}}/finetune/{{name}}/seed{{seed}}.log",
    params:
        kind=lambda wc, input: (
            f"{finetune_kind_args('pretrained', input.pretrained)} --variant {wc.variant}"
        ),


rule table:
    input:
        finetune_targets(),
        probe_targets(config["run"]["datasets"]),
        baseline_targets(),
    output:
        classification_md=f"{RESULTS}/tables/classification.md",
        classification_csv=report(
            f"{RESULTS}/tables/classification.csv",
            caption="../workflow/report/table_files.rst",
            category="Tables",
            subcategory="Files",
        ),
        classification_tex=f"{RESULTS}/tables/classification.tex",
        regression_md=f"{RESULTS}/tables/regression.md",
        regression_csv=report(
            f"{RESULTS}/tables/regression.csv",
            caption="../workflow/report/table_files.rst",
            category="Tables",
            subcategory="Files",
        ),
        regression_tex=f"{RESULTS}/tables/regression.tex",
        per_task=f"{RESULTS}/tables/per_task.csv",
    log:
        f"{LOGS}/table.log",
    conda:
        "../envs/train.yaml"
    params:
        selection=budget_text(FINETUNE["epochs"], FINETUNE["patience"]),
        datasets=config["run"]["datasets"],
        tracking=TRACKING_RECORD,
    shell:
        "bbmn table {input} --out-dir $(dirname {output.classification_md})"
        " --selection '{params.selection}' --datasets {params.datasets}"
        " --tracking-parent {params.tracking} > {log} 2>&1"


rule probe:
    input:
        cache=cache_path("{name}"),
        splits=lambda wc: [split_path(wc.name, seed) for seed in SEEDS],
        pretrained=lambda wc: probe_checkpoint(wc.encoder),
    output:
        metrics=[
            f"{probe_dir('{name}', '{encoder}')}/seed{seed}/metrics.json"
            for seed in SEEDS
        ],
        predictions=[
            f"{probe_dir('{name}', '{encoder}')}/seed{seed}/predictions.csv"
            for seed in SEEDS
        ],
        health=f"{probe_dir('{name}', '{encoder}')}/health.json",
    log:
        f"{LOGS}/probe/{{name}}/{{encoder}}.log",
    wildcard_constraints:
        encoder=r"pretrained|random|step\d+",
    conda:
        "../envs/train.yaml"
    threads: PROBE["threads"]
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=0,
    params:
        metric=lambda wc: config["datasets"][wc.name]["metric"],
        encoder=lambda wc, input: probe_args(wc.encoder, input.pretrained),
        tracking=TRACKING_RECORD,
    shell:
        "bbmn probe {input.cache} --splits {input.splits} --out $(dirname {output.health})"
        " --dataset {wildcards.name} --metric {params.metric} {params.encoder}"
        " --threads {threads} --tracking-parent {params.tracking} > {log} 2>&1"


rule probe_table:
    input:
        probe_targets(),
    output:
        classification_md=f"{RESULTS}/tables/probe/classification.md",
        regression_md=f"{RESULTS}/tables/probe/regression.md",
        paired=f"{RESULTS}/tables/probe/paired.csv",
    log:
        f"{LOGS}/table_probe.log",
    conda:
        "../envs/train.yaml"
    params:
        selection="linear probe of the frozen encoder, regularization chosen on validation",
        datasets=probe_datasets(),
    shell:
        "bbmn table {input} --out-dir $(dirname {output.classification_md})"
        " --selection '{params.selection}' --datasets {params.datasets} > {log} 2>&1"


# The pre-training ablation: the main run and every variant, fine-tuned on the same splits.
rule ablation:
    input:
        ablation_inputs(),
    output:
        table=f"{RESULTS}/tables/ablation.md",
        csv=f"{RESULTS}/tables/ablation.csv",
        png=f"{FIGURES}/ablation.png",
        svg=f"{FIGURES}/ablation.svg",
    log:
        f"{LOGS}/ablation.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "bbmn ablation {input} --out-dir $(dirname {output.table}) --figure {output.png}"
        " > {log} 2>&1"
