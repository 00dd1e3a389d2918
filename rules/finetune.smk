# Fine-tuning of every run dataset x seed x init, and the paper's tables.


rule finetune:
    input:
        cache=f"{DATA}/cache/{{name}}.parquet",
        descriptors=f"{DATA}/descriptors/{{name}}.parquet",
        split=lambda wc: split_path(wc.name, wc.seed),
        pretrained=lambda wc: pretrained_model() if wc.init == "pretrained" else [],
    output:
        metrics=f"{RESULTS}/finetune/{{name}}/{{init}}/seed{{seed}}/metrics.json",
        predictions=f"{RESULTS}/finetune/{{name}}/{{init}}/seed{{seed}}/predictions.csv",
        model=f"{RESULTS}/finetune/{{name}}/{{init}}/seed{{seed}}/model.pt",
    log:
        f"{LOGS}/finetune/{{name}}/{{init}}/seed{{seed}}.log",
    wildcard_constraints:
        init="pretrained|scratch",
    conda:
        "../envs/train.yaml"
    threads: FINETUNE["threads"]
    resources:
        mem_mb=3000,
        runtime=finetune_runtime_minutes(),
        gpu=0,
    params:
        metric=lambda wc: config["datasets"][wc.name]["metric"],
        init=lambda wc, input: (
            f"--checkpoint {input.pretrained}"
            if wc.init == "pretrained"
            else scratch_args()
        ),
        options=finetune_args(),
        tracking=TRACKING_RECORD,
    shell:
        "bbmn finetune {input.cache} --descriptors {input.descriptors} --split {input.split}"
        " --out $(dirname {output.metrics}) --dataset {wildcards.name} --metric {params.metric}"
        " --seed {wildcards.seed} {params.init} {params.options} --threads {threads}"
        " --tracking-parent {params.tracking} > {log} 2>&1"


rule table:
    input:
        finetune_targets(),
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
        selection=(
            f"up to {FINETUNE['epochs']} epochs, early stop after {FINETUNE['patience']}"
            " epochs without improvement"
        ),
        tracking=TRACKING_RECORD,
    shell:
        "bbmn table {input} --out-dir $(dirname {output.classification_md})"
        " --selection '{params.selection}' --tracking-parent {params.tracking} > {log} 2>&1"
