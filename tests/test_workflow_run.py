"""StepReport on snakemake 9's own output (as captured from runs of `bbmn train`): a line per step
start and end, and a failure as the failed step's own one-line error."""

from bbmn.workflow_run import StepReport

RUN = """\
Job stats:
job                count
fetch                  1
clean                  1
total                  3

Select jobs to execute...
Execute 1 jobs...

[Wed Dec  2 05:43:45 2026]
Job 3: fetch esol_100: mirror copy or download, sha256 checked
Reason: Missing output files: results/data/raw/esol_100/esol_100.csv
[Wed Dec  2 05:43:46 2026]
Finished jobid: 3 (Rule: fetch)
1 of 3 steps (33%) done
Select jobs to execute...
Execute 1 jobs...

[Wed Dec  2 05:43:46 2026]
localrule split:
    input: results/data/clean/esol_100.parquet
    output: results/data/splits/esol_100/balanced_scaffold/seed0.json
    log: results/logs/split/esol_100/balanced_scaffold/seed0.log
    jobid: 4
    reason: Missing output files: results/data/splits/esol_100/balanced_scaffold/seed0.json
    wildcards: name=esol_100, method=balanced_scaffold, seed=0
    resources: tmpdir=/tmp, mem_mb=1000, mem_mib=954, runtime=10
"""

FINISH = """\
[Wed Dec  2 05:43:54 2026]
Finished jobid: 4 (Rule: split)
2 of 3 steps (67%) done
Select jobs to execute...
Execute 1 jobs...

[Wed Dec  2 05:44:34 2026]
localrule all:
    input: results/tables/classification.md
    jobid: 0
    reason: Input files updated by another job: results/tables/classification.md
    resources: tmpdir=/tmp
[Wed Dec  2 05:44:34 2026]
Finished jobid: 0 (Rule: all)
3 of 3 steps (100%) done
"""

FAILURE = """\
[Wed Dec  2 05:45:08 2026]
localrule clean:
    input: results/data/raw/esol_100/bad.csv
    log: results/logs/clean/esol_100.log
    jobid: 2
    wildcards: name=esol_100
    threads: 2
    resources: tmpdir=/tmp, runtime=60, mem_mb=2000, mem=2 GB, mem_mib=1908
[Wed Dec  2 05:45:10 2026]
Error in rule clean:
    message: None
    jobid: 2
    input: results/data/raw/esol_100/bad.csv
    log: results/logs/clean/esol_100.log (check log file(s) for error details)
    shell:
        bbmn clean results/data/raw/esol_100/bad.csv > results/logs/clean/esol_100.log 2>&1
        (command exited with non-zero exit code)
Shutting down, this might take some time.
Exiting because a job execution failed. Look above for error messages
WorkflowError:
At least one job did not complete successfully.
"""


def feed(report, text):
    for line in text.splitlines(keepends=True):
        report.feed(line)


def test_a_line_as_each_step_starts_and_one_as_it_ends():
    shown = []
    report = StepReport(shown.append)
    feed(report, RUN)
    # a job is reported as running once its block is complete, before it finishes
    assert shown == ["  ... fetch esol_100", "[1/3] fetch esol_100: 0 s",
                     "  ... split esol_100 method=balanced_scaffold seed=0"]
    feed(report, FINISH)
    assert shown[3:] == ["[2/3] split esol_100 method=balanced_scaffold seed=0: 0 s"]  # rule all is not a step


def test_a_failed_step_is_one_line_with_its_own_error(tmp_path):
    log = tmp_path / "results" / "logs" / "clean" / "esol_100.log"
    log.parent.mkdir(parents=True)
    log.write_text("2026 INFO starting\nbbmn clean: error: SMILES column 'smiles' not found\n\n")
    report = StepReport(lambda line: None)
    feed(report, FAILURE)
    assert report.error(tmp_path) == ("step clean failed: bbmn clean: error: SMILES column 'smiles' not found "
                                      f"(log: {log})")


def test_a_config_error_is_the_workflow_s_own_line(tmp_path):
    report = StepReport(lambda line: None)
    feed(report, "WorkflowError in file /x/rules/common.smk, line 39:\nbbmn: config key datasets.a.path: "
                 "a.csv not found\n")
    assert report.error(tmp_path) == "config key datasets.a.path: a.csv not found"
    other = StepReport(lambda line: None)
    feed(other, "MissingInputException in rule finetune in file /x/rules/finetune.smk, line 4:\n"
                "Missing input files for rule finetune:\n")
    assert other.error(tmp_path) == ("the workflow stopped: MissingInputException in rule finetune in file "
                                     "/x/rules/finetune.smk, line 4 Missing input files for rule finetune:")
