# Masked pre-training on the run's corpus.


rule pretrain:
    input:
        cache=lambda wc: pretrain_cache(wc.corpus),
    output:
        model=f"{RESULTS}/pretrain/{{corpus}}/model.pt",
        summary=f"{RESULTS}/pretrain/{{corpus}}/summary.json",
        snapshots=[snapshot_path(step) for step in sorted(PRETRAIN["snapshot_steps"])],
    log:
        f"{LOGS}/pretrain/{{corpus}}.log",
    conda:
        "../envs/train.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        mem_mb=4000,
        runtime=pretrain_runtime_minutes(),
        gpu=0,
        nodes=1,
    params:
        launcher=lambda wc, resources: pretrain_launcher(resources),
        options=pretrain_args(),
        tracking=TRACKING_RECORD,
    shell:
        "{params.launcher} pretrain {input.cache} --out $(dirname {output.model})"
        " {params.options} --tracking-parent {params.tracking} > {log} 2>&1"


# A pre-training variant (pretrain.variants): the same job with the variant's overrides.
use rule pretrain as pretrain_variant with:
    output:
        model=f"{variant_dir('{variant}')}/pretrain/{{corpus}}/model.pt",
        summary=f"{variant_dir('{variant}')}/pretrain/{{corpus}}/summary.json",
    log:
        f"{LOGS}/variants/{{variant}}/pretrain/{{corpus}}.log",
    params:
        options=lambda wc: pretrain_args(wc.variant),


# pretrain.use_model given by URL: download it once, sha256 checked (instead of pre-training).
rule fetch_model:
    output:
        f"{RESULTS}/pretrain/external/model.pt",
    log:
        f"{LOGS}/pretrain/fetch_model.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=500,
        runtime=30,
    params:
        url=USE_MODEL["url"] or "",
        sha256=USE_MODEL["sha256"] or "",
    message:
        "fetch the pre-trained model of pretrain.use_model, sha256 checked"
    shell:
        "bbmn fetch --out {output} --url {params.url} --sha256 {params.sha256} > {log} 2>&1"
