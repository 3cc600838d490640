#!/usr/bin/env bash
# The whole job on each small long-tailed set: make data → stage 1 → DisAlign → export (folded ONNX, verified
# against PyTorch) → evaluate before/after in PyTorch and, torch-free, the ONNX files (`ltdeploy val`) →
# `ltdeploy predict` on a held-out image.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATASETS=${DATASETS:-"digits-lt shapes-lt seg-lt"}
LTDEPLOY="$(dirname "$PY")/ltdeploy"
export PYTHONWARNINGS=ignore

classification() {  # dataset, generator args, stage-1 args
  local ds=$1 data="data/$1" runs="runs/$1"
  "$PY" training/make_data.py "$ds" --out "$data" $2
  "$PY" training/train.py stage1 --data "$data" --out "$runs/stage1.pt" $3
  "$PY" training/train.py stage2 --method disalign --checkpoint "$runs/stage1.pt" --data "$data" \
      --out "$runs/disalign.pt" --rho 1.2
  "$PY" export/to_onnx.py "$runs/stage1.pt" -o "$runs/stage1.onnx" --verify-images 0
  "$PY" export/to_onnx.py "$runs/disalign.pt" -o "$runs/disalign.onnx" --verify-images 0
  "$PY" training/evaluate.py "$runs/disalign.pt" --data "$data" --compare "$runs/stage1.pt" \
      --json "$runs/eval_disalign_pt.json" | tail -n 3
  "$LTDEPLOY" val --engine "$runs/stage1.onnx" --engine "$runs/disalign.onnx" --data "$data" \
      --json "$runs/val_onnx.json"
  local first label
  read -r first label < "$data/test.txt"
  echo "true label: $label ($(sed -n "$((label + 1))p" "$data/classes.txt"))"
  "$LTDEPLOY" predict "$data/$first" --engine "$runs/disalign.onnx" --topk 3
}

segmentation() {  # seg-lt: LR-ASPP on the ImageNet-pretrained EfficientNet-Lite0 at 128 px, per-pixel DisAlign
  # (rho 0.3), mIoU head / body / tail, overlay and label PNGs
  local data="data/seg-lt" runs="runs/seg-lt"
  "$PY" training/make_data.py seg-lt --out "$data"
  "$PY" training/train.py stage1 --data "$data" --out "$runs/stage1.pt" --backbone lraspp_lite0 --pretrained \
      --input-size 128 --epochs 5 --lr 0.02 --batch-size 16 --hflip
  "$PY" training/train.py stage2 --checkpoint "$runs/stage1.pt" --data "$data" --out "$runs/disalign.pt" \
      --batch-size 16 --min-steps 150
  "$PY" export/to_onnx.py "$runs/disalign.pt" -o "$runs/disalign.onnx" --verify-images 0
  "$PY" training/evaluate.py "$runs/disalign.onnx" --data "$data" --compare "$runs/stage1.pt" \
      --json "$runs/eval_disalign_onnx.json" | tail -n 3
  "$LTDEPLOY" predict "$data/images/val/00000.png" "$data/images/val/00001.png" --engine "$runs/disalign.onnx" \
      --out "$runs/predictions"
}

for ds in $DATASETS; do
  echo "=== $ds"
  start=$SECONDS
  case "$ds" in
    digits-lt) classification digits-lt "--imbalance 50" "--epochs 30" ;;
    shapes-lt) classification shapes-lt "--imbalance 100 --classes 50" "--epochs 12 --hflip" ;;
    seg-lt) segmentation ;;
    *) echo "unknown dataset $ds" >&2; exit 2 ;;
  esac
  echo "=== $ds: $((SECONDS - start)) s"
done
echo "=== done: models, ONNX files, evaluation JSON and segmentation PNGs under runs/"
