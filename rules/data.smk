# Raw file -> cleaned table -> graph cache, descriptors and splits.


rule fetch:
    output:
        f"{DATA}/raw/{{name}}/{{filename}}",
    log:
        f"{LOGS}/fetch/{{name}}/{{filename}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=500,
        runtime=30,
    params:
        source=lambda wc: fetch_args(wc.name),
    message:
        "fetch {wildcards.name}: mirror copy or download, sha256 checked"
    shell:
        "bbmn fetch --out {output} {params.source} > {log} 2>&1"


rule clean:
    input:
        lambda wc: raw_path(wc.name),
    output:
        table=clean_path("{name}"),
        rejects=clean_path("{name}", "rejects.csv"),
        summary=clean_path("{name}", "summary.json"),
    log:
        f"{LOGS}/clean/{{name}}.log",
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        options=lambda wc: clean_args(wc.name),
    shell:
        "bbmn clean {input} --out {output.table} --rejects {output.rejects}"
        " --summary {output.summary} {params.options} --workers {threads} > {log} 2>&1"


rule featurize:
    input:
        rules.clean.output.table,
    output:
        cache_path("{name}"),
    log:
        f"{LOGS}/featurize/{{name}}.log",
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "bbmn featurize {input} --out {output} --workers {threads} > {log} 2>&1"


rule descriptors:
    input:
        rules.clean.output.table,
    output:
        descriptors_path("{name}"),
    log:
        f"{LOGS}/descriptors/{{name}}.log",
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    resources:
        mem_mb=2000,
        runtime=120,
    shell:
        "bbmn descriptors {input} --out {output} --workers {threads} > {log} 2>&1"


rule split:
    input:
        rules.clean.output.table,
    output:
        f"{DATA}/splits/{{name}}/{{method}}/seed{{seed}}.json",
    log:
        f"{LOGS}/split/{{name}}/{{method}}/seed{{seed}}.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        sizes=" ".join(str(s) for s in SPLIT["sizes"]),
    shell:
        "bbmn split {input} --out {output} --method {wildcards.method}"
        " --seed {wildcards.seed} --sizes {params.sizes} > {log} 2>&1"
