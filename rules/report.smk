# Figures and the HTML tables of `snakemake --report report.html` (issues 5 and 8). Cheap steps
# that read results/ only: they are localrules (Snakefile), so a cluster run makes them on the
# head node. Captions: ../workflow/report/*.rst.


rule plot_pretrain:
    input:
        rules.pretrain.output.summary,
    output:
        png=report(
            f"{FIGURES}/pretrain_{{corpus}}.png",
            caption="../workflow/report/pretrain.rst",
            category="Pre-training",
        ),
        svg=f"{FIGURES}/pretrain_{{corpus}}.svg",
    log:
        f"{LOGS}/plot/pretrain_{{corpus}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "bbmn plot pretrain $(dirname {input}) --out {output.png} > {log} 2>&1"


rule plot_comparison:
    input:
        finetune_targets(),
        probe_targets(config["run"]["datasets"]),
        baseline_targets(),
    output:
        png=report(
            f"{FIGURES}/comparison.png",
            caption="../workflow/report/comparison.rst",
            category="Comparison",
        ),
        svg=f"{FIGURES}/comparison.svg",
    log:
        f"{LOGS}/plot/comparison.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        datasets=config["run"]["datasets"],
    shell:
        "bbmn plot comparison {input} --out {output.png} --datasets {params.datasets}"
        " > {log} 2>&1"


rule plot_roc:
    input:
        metrics=lambda wc: run_files(wc.name, "metrics.json"),
        predictions=lambda wc: run_files(wc.name, "predictions.csv"),
    output:
        png=report(
            f"{FIGURES}/roc_{{name}}.png",
            caption="../workflow/report/roc.rst",
            category="ROC curves",
            labels={"dataset": "{name}"},
        ),
        svg=f"{FIGURES}/roc_{{name}}.svg",
    log:
        f"{LOGS}/plot/roc_{{name}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "bbmn plot roc {input.metrics} --out {output.png} > {log} 2>&1"


rule plot_health:
    input:
        probe_targets(),
        finetune_targets(),
    output:
        png=report(
            f"{FIGURES}/health.png",
            caption="../workflow/report/health.rst",
            category="Representation health",
        ),
        svg=f"{FIGURES}/health.svg",
    log:
        f"{LOGS}/plot/health.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        datasets=list(dict.fromkeys(config["run"]["datasets"] + probe_datasets())),
    shell:
        "bbmn plot health {input} --out {output.png} --datasets {params.datasets}"
        " > {log} 2>&1"


rule plot_tables:
    input:
        classification=rules.table.output.classification_csv,
        regression=rules.table.output.regression_csv,
        captions=[
            rules.table.output.classification_md,
            rules.table.output.regression_md,
        ],
    output:
        report(
            f"{FIGURES}/tables.html",
            caption="../workflow/report/tables.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/plot/tables.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=500,
        runtime=10,
    shell:
        "bbmn plot tables {input.classification} {input.regression} --out {output}"
        " > {log} 2>&1"


# The report's first page (workflow/report/workflow.rst includes it): tables and figures inlined.
rule plot_overview:
    input:
        tables=[
            rules.table.output.classification_csv,
            rules.table.output.regression_csv,
        ],
        captions=[
            rules.table.output.classification_md,
            rules.table.output.regression_md,
        ],
        figures=lambda wc: [p for p in report_targets() if p.endswith(".png")],
    output:
        report(
            f"{FIGURES}/overview.html",
            caption="../workflow/report/overview.rst",
            category="Overview",
        ),
    log:
        f"{LOGS}/plot/overview.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=500,
        runtime=10,
    shell:
        "bbmn plot overview --tables {input.tables} --figures {input.figures}"
        " --out {output} > {log} 2>&1"
