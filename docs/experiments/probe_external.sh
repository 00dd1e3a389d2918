#!/usr/bin/env bash
# Linear probe of external embeddings (one .npy per dataset and encoder, row i = data row i of the
# dataset's CSV) on BBBP, BACE and ClinTox with GROVER's balanced scaffold splits, seeds 0-2:
#   docs/experiments/probe_external.sh EMB_DIR NAME OUT_DIR [LABEL]
# reads EMB_DIR/<dataset>-<NAME>.npy, writes OUT_DIR/<dataset>/<NAME>/seed<S>/metrics.json; the row
# is "Linear probe (LABEL, NAME)" (LABEL defaults to "external encoder").
set -euo pipefail
emb=$1 name=$2 out=$3 label=${4:-external encoder}
data=${BBMN_RESULTS:-results}/data
for dataset in bbbp bace clintox; do
  mkdir -p "$out/$dataset"
  bbmn probe "$data/cache/$dataset.parquet" --splits "$data"/splits/$dataset/balanced_scaffold/seed{0,1,2}.json \
    --out "$out/$dataset/$name" --dataset "$dataset" --metric roc_auc \
    --embeddings "$emb/$dataset-$name.npy" --name "$label" --tag "$name" --threads 1 > "$out/$dataset/$name.log" 2>&1
done
