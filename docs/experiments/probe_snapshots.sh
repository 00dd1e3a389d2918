#!/usr/bin/env bash
# Linear probe of a pre-training run's snapshots (bbmn pretrain --snapshot-steps) and of a random
# encoder of the same sizes, on BBBP, BACE and ClinTox (GROVER's balanced scaffold splits, seeds
# 0-2), then one table per run: does more pre-training make the frozen representation better?
#   docs/experiments/probe_snapshots.sh RUN_DIR OUT_DIR [extra bbmn probe flags, e.g. --add-positions]
# Needs the datasets' caches and splits: snakemake --cores 2 results/data/cache/bbbp.parquet ...
set -euo pipefail
run=$1 out=$2
shift 2
data=${BBMN_RESULTS:-results}/data
residual=$(python - "$run" <<'PY'
import json, sys
print("--residual" if json.load(open(f"{sys.argv[1]}/config.json"))["model"].get("residual") else "")
PY
)
for dataset in bbbp bace clintox; do
  splits=("$data"/splits/$dataset/balanced_scaffold/seed{0,1,2}.json)
  for snapshot in "$run"/snapshots/step-*.pt; do
    step=$(basename "$snapshot" .pt | tr -d -)
    [ -f "$out/$dataset/$step/seed2/metrics.json" ] && continue
    mkdir -p "$out/$dataset"
    bbmn probe "$data/cache/$dataset.parquet" --splits "${splits[@]}" --out "$out/$dataset/$step" \
      --dataset "$dataset" --metric roc_auc --checkpoint "$snapshot" --tag "$step" --threads 1 "$@" \
      > "$out/$dataset/$step.log" 2>&1
  done
  if [ ! -f "$out/$dataset/random/seed2/metrics.json" ]; then
    bbmn probe "$data/cache/$dataset.parquet" --splits "${splits[@]}" --out "$out/$dataset/random" \
      --dataset "$dataset" --metric roc_auc --random-init $residual --threads 1 "$@" \
      > "$out/$dataset/random.log" 2>&1
  fi
done
bbmn table "$out"/*/*/seed*/metrics.json --out-dir "$out/tables" \
  --selection "linear probe of frozen snapshots, regularization chosen on validation"
cat "$out/tables/classification.md"
