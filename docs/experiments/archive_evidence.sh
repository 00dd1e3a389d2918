#!/usr/bin/env bash
# Keep an evidence run's records in the repository, so that a run spread over several sessions
# (whose machines do not keep results/) can be tabled as one:
#   docs/experiments/archive_evidence.sh RESULTS [DEST]      # copy (default DEST docs/evidence/records)
#   docs/experiments/archive_evidence.sh --tables [DEST]     # the tables of everything archived
# Copied: every fine-tuning, probe and baseline run's metrics.json (what `bbmn table` reads), the
# probe encoders' health.json (docs/experiments/summarize_health.py reads the archive like a results
# directory) and the pre-training run's config and learning curves. Models and predictions stay out.
set -euo pipefail
if [ "${1:-}" = "--tables" ]; then
  dest=${2:-docs/evidence/records}
  # the caption's budget is the evidence_finetune preset's, read from config.yaml
  selection=$(python -c 'from bbmn import workflow_config as w; from bbmn.config import load
from bbmn.eval.reference import budget_text
f = load(w.checkout() / "config.yaml", w.schema(), {"preset": "evidence_finetune"})["finetune"]
print(budget_text(f["epochs"], f["patience"]))')
  # The main table, as the workflow's: fine-tuning, baselines and the probe rows of the datasets
  # fine-tuned so far; the probe table: every probed dataset.
  datasets=$(find "$dest"/finetune -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort || true)
  mapfile -t main < <(for d in $datasets; do
    find "$dest"/finetune/"$d" "$dest"/baselines/"$d" "$dest"/probe/"$d" -name metrics.json 2>/dev/null
  done | sort)
  if [ ${#main[@]} -gt 0 ]; then
    bbmn table "${main[@]}" --out-dir "$dest/../tables" --selection "$selection"
  fi
  mapfile -t probes < <(find "$dest"/probe -name metrics.json | sort)
  bbmn table "${probes[@]}" --out-dir "$dest/../tables/probe" \
    --selection "linear probe of the frozen encoder, regularization chosen on validation"
  exit 0
fi
results=$1 dest=${2:-docs/evidence/records}
mkdir -p "$dest"
for part in finetune probe baselines; do
  [ -d "$results/$part" ] || continue
  (cd "$results" && find "$part" \( -name metrics.json -o -name health.json \) -print0) |
    while IFS= read -r -d '' file; do
      mkdir -p "$dest/$(dirname "$file")"
      cp -p "$results/$file" "$dest/$file"
    done
done
if [ -d "$results/pretrain/zinc250k" ]; then
  mkdir -p "$dest/pretrain"
  find "$results/pretrain/zinc250k" -maxdepth 1 \( -name '*.json' -o -name '*.jsonl' -o -name '*.csv' \) \
    -exec cp -p {} "$dest/pretrain/" \;
fi
echo "archived $(find "$dest" -name metrics.json | wc -l) run records in $dest"
