"""Write a small long-tailed dataset in the ImageNet-LT list format.

    python training/make_data.py digits-lt --out data/digits-lt --imbalance 50
    python training/make_data.py shapes-lt --out data/shapes-lt --imbalance 100 --classes 50
    python training/make_data.py seg-lt --out data/seg-lt --imbalance 15 --classes 30
    python training/make_data.py det-lt --out data/det-lt --classes 50 (LVIS v1 JSON)
    python training/make_data.py det-lt --out data/lvis-tiny --layout lvis   # as LVIS v1 is downloaded
    python training/make_data.py det-lt --out data/coco-tiny --layout coco   # as COCO 2017 is downloaded
    python training/make_data.py seg-lt --out data/ADEChallengeData2016 --layout ade20k

`--layout` rewrites det-lt / seg-lt in a real dataset's download layout (see training/layouts.py),
for trying every loader on a few images.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from training.classification.synthetic import make_digits_lt, make_shapes_lt
from training.detection.synthetic import make_det_lt
from training.layouts import write_ade20k_layout, write_coco_layout, write_lvis_layout
from training.segmentation.synthetic import make_seg_lt

LAYOUTS = {"det-lt": {"ltdeploy": None, "lvis": write_lvis_layout, "coco": write_coco_layout},
           "seg-lt": {"ltdeploy": None, "ade20k": write_ade20k_layout}}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write the dataset."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=["digits-lt", "shapes-lt", "seg-lt", "det-lt"])
    p.add_argument("--out", required=True, help="output folder (replaced if it exists)")
    p.add_argument("--imbalance", type=float, default=None,
                   help="n_max / n_min (digits 50, shapes 100; seg-lt: object presence ratio, 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=None, help="shapes-lt: 50 (<= 256); seg-lt: 30 (<= 67); det-lt: 50 (<= 64)")
    p.add_argument("--n-max", type=int, default=200, help="shapes-lt only: images of the largest class")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (shapes-lt 32, det-lt 128)")
    p.add_argument("--train-images", type=int, default=None, help="det-lt: 600; seg-lt: 400")
    p.add_argument("--val-images", type=int, default=None, help="det-lt: 150; seg-lt: 100")
    p.add_argument("--layout", default="ltdeploy",
                   help="det-lt: ltdeploy, lvis or coco; seg-lt: ltdeploy or ade20k (the download layouts)")
    args = p.parse_args(argv)
    if args.imbalance is not None and args.imbalance < 1:
        p.error("--imbalance must be >= 1")
    if args.layout not in LAYOUTS.get(args.name, {"ltdeploy": None}):
        p.error(f"--layout for {args.name}: {', '.join(LAYOUTS.get(args.name, {'ltdeploy': None}))}")
    tmp = args.out.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    if args.name == "digits-lt":
        summary = make_digits_lt(tmp, imbalance=args.imbalance or 50.0, seed=args.seed)
    elif args.name == "shapes-lt":
        summary = make_shapes_lt(tmp, imbalance=args.imbalance or 100.0, seed=args.seed,
                                 num_classes=args.classes or 50, n_max=args.n_max, size=args.size or 32)
    elif args.name == "det-lt":
        summary = make_det_lt(tmp, num_classes=args.classes or 50, n_train=args.train_images or 600,
                              n_val=args.val_images or 150, size=args.size or 128, seed=args.seed)
    else:
        summary = make_seg_lt(tmp, num_classes=args.classes or 30, imbalance=args.imbalance or 15.0,
                              seed=args.seed, n_train=args.train_images or 400, n_val=args.val_images or 100)
    with open(os.path.join(tmp, "dataset.json"), "w") as f:
        json.dump({"name": args.name, "seed": args.seed, "layout": args.layout, **summary}, f, indent=1)
    writer = LAYOUTS.get(args.name, {}).get(args.layout)
    if writer is not None:
        laid_out = args.out.rstrip("/") + ".layout"
        writer(tmp, laid_out)
        shutil.copy(os.path.join(tmp, "dataset.json"), laid_out)
        shutil.rmtree(tmp)
        os.replace(laid_out, tmp)
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(tmp, args.out)  # never leave a half-written dataset behind
    if args.name == "seg-lt":
        share = sorted(summary["train_pixel_share"].values(), reverse=True)
        print(f"seg-lt: {summary['classes']} classes, {summary['train_images']} train / {summary['val_images']} val "
              f"images; pixel share {100 * share[0]:.1f}% .. {100 * share[-1]:.4f}%, {args.layout} layout -> {args.out}")
        return 0
    if args.name == "det-lt":
        g = summary["groups"]
        print(f"det-lt: {summary['classes']} categories (rare {g['r']}, common {g['c']}, frequent {g['f']}), "
              f"{summary['train_images']} train / {summary['val_images']} val images, "
              f"{summary['train_instances']} / {summary['val_instances']} instances, {args.layout} layout -> {args.out}")
        return 0
    counts = list(summary["train_counts"].values())
    print(f"{args.name}: {summary['classes']} classes, train {sum(counts)} images "
          f"({counts[0]} .. {counts[-1]} per class), val {summary['val_per_class']}/class, "
          f"test {summary['test_per_class']}/class -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
