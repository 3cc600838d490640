#!/usr/bin/env bash
# The whole job on each small long-tailed set: make data → stage 1 → DisAlign → evaluate before/after →
# export (folded ONNX, verified against PyTorch) → evaluate the ONNX → `ltdeploy predict` on a test image.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATASETS=${DATASETS:-"digits-lt shapes-lt"}
LTDEPLOY="$(dirname "$PY")/ltdeploy"
export PYTHONWARNINGS=ignore

for ds in $DATASETS; do
  data="data/$ds" runs="runs/$ds"
  case "$ds" in
    digits-lt) gen=(--imbalance 50) s1=(--epochs 30) ;;
    shapes-lt) gen=(--imbalance 100 --classes 50) s1=(--epochs 30 --hflip) ;;
    *) echo "unknown dataset $ds" >&2; exit 2 ;;
  esac
  echo "=== $ds"
  "$PY" training/make_data.py "$ds" --out "$data" "${gen[@]}"
  "$PY" training/train.py stage1 --data "$data" --out "$runs/stage1.pt" "${s1[@]}"
  "$PY" training/train.py stage2 --method disalign --checkpoint "$runs/stage1.pt" --data "$data" \
      --out "$runs/disalign.pt" --rho 1.2
  "$PY" export/to_onnx.py "$runs/stage1.pt" -o "$runs/stage1.onnx" --verify-images 0
  "$PY" export/to_onnx.py "$runs/disalign.pt" -o "$runs/disalign.onnx" --verify-images 0
  for m in stage1.pt disalign.pt disalign.onnx; do
    "$PY" training/evaluate.py "$runs/$m" --data "$data" --json "$runs/eval_${m%.*}_${m##*.}.json" | tail -n 1
  done
  image="$data/$(head -n 1 "$data/test.txt" | cut -d' ' -f1)"
  echo "true label: $(head -n 1 "$data/test.txt" | cut -d' ' -f2) ($(sed -n "$(( $(head -n 1 "$data/test.txt" | cut -d' ' -f2) + 1 ))p" "$data/classes.txt"))"
  "$LTDEPLOY" predict "$image" --engine "$runs/disalign.onnx" --topk 3
done
echo "=== done: models, ONNX files and evaluation JSON under runs/"
