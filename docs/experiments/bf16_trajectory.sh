#!/usr/bin/env bash
# bf16 autocast against float32 in pre-training (issue 13): the same run twice, the same seed,
# masks and batches, 1,000 steps with validation every 250, then the validation losses side by
# side and bf16's relative gap. Needs a CPU with native bf16 (avx512_bf16 or AMX) or a GPU, and
# the ZINC250K cache (snakemake --cores 2 results/data/cache/zinc250k.parquet).
#   docs/experiments/bf16_trajectory.sh OUT_DIR [BATCH_SIZE] [extra bbmn pretrain flags]
set -euo pipefail
out=$1 batch=${2:-32}
shift $(( $# >= 2 ? 2 : 1 ))
cache=${BBMN_RESULTS:-results}/data/cache/zinc250k.parquet
for precision in fp32 bf16; do
  [ -f "$out/$precision/summary.json" ] && continue
  flag=--no-bf16
  [ "$precision" = bf16 ] && flag=--bf16
  mkdir -p "$out/$precision"
  bbmn pretrain "$cache" --out "$out/$precision" --batch-size "$batch" --max-steps 1000 \
    --validate-every 250 --val-batches 100 --seed 0 --threads 2 --residual $flag "$@" \
    > "$out/$precision.log" 2>&1
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def history(precision):
    rows = [json.loads(line) for line in (out / precision / "history.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows if "val_loss" in row}
fp32, bf16 = history("fp32"), history("bf16")
rate = {p: json.loads((out / p / "summary.json").read_text())["molecules_per_s"] for p in ("fp32", "bf16")}
print("| step | fp32 validation loss | bf16 validation loss | bf16 / fp32 - 1 |")
print("|---|---|---|---|")
for step in sorted(fp32.keys() & bf16.keys()):
    a, b = fp32[step]["val_loss"], bf16[step]["val_loss"]
    print(f"| {step} | {a:.4f} | {b:.4f} | {b / a - 1:+.2%} |")
print(f"\nmolecules/s over the run: fp32 {rate['fp32']:.1f}, bf16 {rate['bf16']:.1f} "
      f"({rate['bf16'] / rate['fp32']:.2f}x)")
PY
