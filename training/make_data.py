"""Write a small long-tailed dataset in the ImageNet-LT list format.

    python training/make_data.py digits-lt --out data/digits-lt --imbalance 50
    python training/make_data.py shapes-lt --out data/shapes-lt --imbalance 100 --classes 50
    python training/make_data.py seg-lt --out data/seg-lt --imbalance 15 --classes 30
    python training/make_data.py det-lt --out data/det-lt --classes 50 (LVIS v1 JSON)
    python training/make_data.py det-lt --out data/lvis-tiny --layout lvis   # as LVIS v1 is downloaded
    python training/make_data.py det-lt --out data/coco-tiny --layout coco   # as COCO 2017 is downloaded
    python training/make_data.py seg-lt --out data/ADEChallengeData2016 --layout ade20k
    python training/make_data.py shapes-lt --out data/shapes-folders --layout imagefolder  # train/<class>/...

`--layout` rewrites det-lt / seg-lt / digits-lt / shapes-lt in a real dataset's download layout (see training/layouts.py),
for trying every loader on a few images.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from training.tasks import SYNTHETIC_SETS, synthetic_set


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write the dataset."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=list(SYNTHETIC_SETS))
    p.add_argument("--out", required=True, help="output folder (replaced if it exists)")
    p.add_argument("--imbalance", type=float, default=None,
                   help="n_max / n_min (digits 50, shapes 100; seg-lt: object presence ratio, 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=None, help="shapes-lt: 50 (<= 256); seg-lt: 30 (<= 67); det-lt: 50 (<= 64)")
    p.add_argument("--n-max", type=int, default=200, help="shapes-lt only: images of the largest class")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (shapes-lt 32, det-lt 128)")
    p.add_argument("--train-images", type=int, default=None, help="det-lt: 600; seg-lt: 400")
    p.add_argument("--val-images", type=int, default=None,
                   help="det-lt: 150; seg-lt: 100; shapes-lt: per class, 10 (the train split stays the same)")
    p.add_argument("--layout", default="ltdeploy",
                   help="det-lt: ltdeploy, lvis or coco; seg-lt: ltdeploy or ade20k; digits-lt / shapes-lt: "
                        "ltdeploy or imagefolder (the download layouts)")
    args = p.parse_args(argv)
    if args.imbalance is not None and args.imbalance < 1:
        p.error("--imbalance must be >= 1")
    spec = synthetic_set(args.name)
    layouts = ["ltdeploy", *spec.layouts]
    if args.layout not in layouts:
        p.error(f"--layout for {args.name}: {', '.join(layouts)}")
    tmp = args.out.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    summary = spec.make(tmp, args)
    with open(os.path.join(tmp, "dataset.json"), "w") as f:
        json.dump({"name": args.name, "seed": args.seed, "layout": args.layout, **summary}, f, indent=1)
    writer = spec.layouts.get(args.layout)
    if writer is not None:
        laid_out = args.out.rstrip("/") + ".layout"
        writer(tmp, laid_out)
        shutil.copy(os.path.join(tmp, "dataset.json"), laid_out)
        shutil.rmtree(tmp)
        os.replace(laid_out, tmp)
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(tmp, args.out)  # never leave a half-written dataset behind
    print(spec.describe(summary, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
