# Using the trained models: leakage check of the pre-training corpus, predictions and embeddings
# of new molecules, Model Registry entries (config sections `leakage`, `predict`, `embed`,
# `register`).


rule inchikeys:
    input:
        clean_path("{name}"),
    output:
        inchikeys_path("{name}"),
    log:
        f"{LOGS}/inchikeys/{{name}}.log",
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    resources:
        mem_mb=1500,
        runtime=60,
    shell:
        "bbmn leakage keys {input} --out {output} --workers {threads} > {log} 2>&1"


rule leakage:
    input:
        corpus_keys=inchikeys_path("{corpus}"),
        tables=leakage_inputs()["tables"],
        splits=leakage_inputs()["splits"],
    output:
        summary=report(
            f"{RESULTS}/leakage/{{corpus}}/summary.md",
            caption="../workflow/report/leakage.rst",
            category="Leakage",
        ),
        table=f"{RESULTS}/leakage/{{corpus}}/summary.csv",
        molecules=report(
            f"{RESULTS}/leakage/{{corpus}}/molecules.csv",
            caption="../workflow/report/leakage_molecules.rst",
            category="Leakage",
        ),
    log:
        f"{LOGS}/leakage/{{corpus}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        datasets=leakage_args(),
    shell:
        "bbmn leakage check {input.corpus_keys} {params.datasets}"
        " --out-dir $(dirname {output.summary}) > {log} 2>&1"


rule leakage_filter:
    input:
        cache=cache_path("{corpus}"),
        corpus_keys=inchikeys_path("{corpus}"),
        molecules=rules.leakage.output.molecules,
    output:
        cache=cache_path("{corpus}.noleak"),
        summary=f"{RESULTS}/leakage/{{corpus}}/filter.json",
    log:
        f"{LOGS}/leakage/{{corpus}}.filter.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "bbmn leakage filter {input.cache} --keys {input.corpus_keys} --molecules {input.molecules}"
        " --out {output.cache} --summary {output.summary} > {log} 2>&1"


rule predict:
    input:
        molecules=lambda wc: _use_entry("predict", wc.name)["input"],
        models=lambda wc: ensemble_models("predict", wc.name),
    output:
        f"{RESULTS}/predictions/{{name}}.csv",
    log:
        f"{LOGS}/predict/{{name}}.log",
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        options=lambda wc: predict_args(wc.name),
    shell:
        "bbmn predict {input.molecules} --model {input.models} --out {output}"
        " {params.options} --threads {threads} > {log} 2>&1"


# One Model Registry version per run of the rule: the ensemble of a dataset's seed runs.
rule register:
    input:
        models=lambda wc: ensemble_models("register", wc.name),
    output:
        model=directory(f"{registered_dir('{name}')}/mlflow_model"),
        record=layout.registration_record(RESULTS, "{name}"),
    log:
        f"{LOGS}/register/{{name}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        tracking=TRACKING_RECORD,
    shell:
        "bbmn register {input.models} --name {wildcards.name} --out {output.model}"
        " --record {output.record} --tracking-parent {params.tracking} > {log} 2>&1"


rule embed:
    input:
        molecules=lambda wc: _use_entry("embed", wc.name)["input"],
        checkpoint=lambda wc: embed_checkpoint(wc.name),
    output:
        f"{RESULTS}/embeddings/{{name}}.parquet",
    log:
        f"{LOGS}/embed/{{name}}.log",
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        options=lambda wc: embed_args(wc.name),
    shell:
        "bbmn embed {input.molecules} --checkpoint {input.checkpoint} --out {output}"
        " {params.options} --threads {threads} > {log} 2>&1"
