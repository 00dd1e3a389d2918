# Baselines on the fine-tuning splits (issue 8): ECFP4 + random forest, chemprop D-MPNN.
# One job per dataset x seed x model; each reads the cleaned table and the same split file as
# fine-tuning, and writes a metrics.json that the table step reads beside the fine-tuning runs'.


rule baseline:
    input:
        clean=rules.clean.output.table,
        split=lambda wc: split_path(wc.name, wc.seed),
    output:
        metrics=f"{baseline_dir('{name}', '{model}', '{seed}')}/metrics.json",
        predictions=f"{baseline_dir('{name}', '{model}', '{seed}')}/predictions.csv",
    log:
        f"{LOGS}/baseline/{{name}}/{{model}}/seed{{seed}}.log",
    wildcard_constraints:
        model="ecfp_rf|chemprop",
    conda:
        "../envs/baselines.yaml"
    threads: BASELINES["threads"]
    resources:
        mem_mb=lambda wc: 4000 if wc.model == "chemprop" else 2000,
        runtime=lambda wc: 480 if wc.model == "chemprop" else 240,
        gpu=lambda wc: baseline_gpus(wc.model),
    params:
        command=lambda wc: wc.model.replace("_", "-"),
        metric=lambda wc: config["datasets"][wc.name]["metric"],
        options=lambda wc: baseline_args(wc.model),
        tracking=TRACKING_RECORD,
    shell:
        "bbmn baseline {params.command} {input.clean} --split {input.split}"
        " --out $(dirname {output.metrics}) --dataset {wildcards.name} --metric {params.metric}"
        " --seed {wildcards.seed} --threads {threads} {params.options}"
        " --tracking-parent {params.tracking} > {log} 2>&1"
