#!/usr/bin/env bash
# Fine-tuning switches, pre-trained against scratch, on BBBP, BACE and ClinTox (GROVER's balanced
# scaffold splits, seeds 0-2), the default run's budget (5 epochs), two 1-thread jobs at a time:
#   docs/experiments/finetune_switches.sh MODEL.pt OUT_DIR VARIANT=FLAGS [VARIANT=FLAGS ...]
# e.g. ... run/model.pt out none="--view-norm none" bn="--view-norm batchnorm"
# Each variant gets OUT_DIR/<variant>/tables/ (classification.md, paired.csv). A scratch run gets
# the checkpoint's architecture (sizes and residual), so each pair differs only in its start.
# DATASETS="bbbp bace" limits the datasets; KINDS=pretrained leaves out the scratch runs.
set -euo pipefail
model=$1 out=$2
shift 2
data=${BBMN_RESULTS:-results}/data
scratch=$(python - "$model" <<'PY'
import sys, torch
c = torch.load(sys.argv[1], map_location="cpu", weights_only=False)["model_config"]
flags = [f"--hidden {c['hidden']} --heads {c['heads']} --depth {c['depth']} --encoder-blocks {c['encoder_blocks']}"]
print(" ".join(flags + (["--residual"] if c.get("residual") else [])))
PY
)
jobs=()
for spec in "$@"; do
  variant=${spec%%=*} flags=${spec#*=}
  for dataset in ${DATASETS:-bbbp bace clintox}; do
    for seed in 0 1 2; do
      for kind in ${KINDS:-pretrained scratch}; do
        run=$out/$variant/$dataset/$kind/seed$seed
        [ -f "$run/metrics.json" ] && continue
        start=$([ $kind = pretrained ] && echo "--checkpoint $model" || echo "$scratch")
        jobs+=("mkdir -p $run && bbmn finetune $data/cache/$dataset.parquet --descriptors $data/descriptors/$dataset.parquet --split $data/splits/$dataset/balanced_scaffold/seed$seed.json --out $run --dataset $dataset --metric roc_auc --seed $seed --epochs 5 --threads 1 $start $flags > $run.log 2>&1")
      done
    done
  done
done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} bash -c {}
for spec in "$@"; do
  variant=${spec%%=*}
  bbmn table "$out/$variant"/*/*/seed*/metrics.json --out-dir "$out/$variant/tables" \
    --selection "5 epochs; $spec" > /dev/null
done
