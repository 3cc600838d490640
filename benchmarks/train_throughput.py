"""Stage-1 training throughput (images/s) of each task on the present device, at small and at the presets'
input sizes, beside a bare PyTorch loop on the same model, batch, data and device (target: ours >= 0.95x), and
each preset's projected wall time on N GPUs from a cited per-GPU figure.

    python benchmarks/train_throughput.py --out docs/train_throughput.md     # about 15 minutes on 2 CPU cores
    python benchmarks/train_throughput.py --only small                        # the small models alone

Data are random tensors in memory (no decoding), so the figures measure the training step and the engine
around it. Both loops take the same steps after a one-step warm-up each; ours runs train_epochs / the
detection loop exactly as train.py does (SGD, cosine schedule, the engine's checks), the bare one is
zero_grad / forward / loss / backward / step.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from benchmarks.throughput_report import markdown, projections  # noqa: E402
from training.config import Stage1Config  # noqa: E402
from training.core.engine import cosine_sgd  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    name: str
    loop: str  # what the step trains on: labels (classification), pixels (segmentation), boxes (detection)
    build: Callable[[], torch.nn.Module]
    batch: int
    size: tuple[int, int]
    classes: int
    group: str  # small | preset | reference
    masks: bool = False


def cpu_description() -> str:
    """The CPU's model name and its widest vector extension (latency figures compare only within one run)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    isa = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-512" if "avx512f" in flags else \
        "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name}, {isa}, {torch.get_num_threads()} threads"


def _cases() -> list[Case]:
    from training.classification.model import LTClassifier
    from training.detection.model import LTDetector
    from training.segmentation.model import LTSegmenter

    return [
        Case("classification small_cnn", "labels", lambda: LTClassifier("small_cnn", "linear", 10), 64,
             (32, 32), 10, "small"),
        Case("imagenet-lt-x50 (ResNeXt-50)", "labels",
             lambda: LTClassifier("tv:resnext50_32x4d", "linear", 1000), 8, (224, 224), 1000, "preset"),
        Case("ResNet-50 (projection reference)", "labels",
             lambda: LTClassifier("tv:resnet50", "linear", 1000), 8, (224, 224), 1000, "reference"),
        Case("segmentation small_seg", "pixels", lambda: LTSegmenter("small_seg", 10), 16, (64, 64), 10,
             "small"),
        Case("ade20k-deeplabv3-r50", "pixels", lambda: LTSegmenter("deeplabv3_resnet50", 150), 2,
             (512, 512), 150, "preset"),
        Case("detection lite0_fpn", "boxes", lambda: LTDetector(body="lite0_fpn", num_classes=10), 4,
             (128, 128), 10, "small"),
        Case("lvis-v1-mask-rcnn-r50-1x", "boxes",
             lambda: LTDetector(body="resnet50_fpn", num_classes=1203, masks=True), 2, (800, 1088), 1203, "preset",
             masks=True),
    ]


def _dense_data(case: Case, steps: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    n = case.batch * steps
    x = torch.randn(n, 3, *case.size, generator=gen)
    shape = (n, *case.size) if case.loop == "pixels" else (n,)
    return TensorDataset(x, torch.randint(0, case.classes, shape, generator=gen))


class _Images(list):
    """In-memory detection samples with the image records the aspect-ratio grouping reads."""

    def __init__(self, items: list, size: tuple[int, int]) -> None:
        super().__init__(items)
        self.images = [{"height": size[0], "width": size[1]}] * len(items)


def _det_data(case: Case, steps: int) -> list:
    gen = torch.Generator().manual_seed(0)
    h, w = case.size
    items = []
    for i in range(case.batch * steps):
        boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.9 * h]])
        target = {"boxes": boxes, "labels": torch.randint(1, case.classes + 1, (2,), generator=gen),
                  "image_id": i, "orig_size": (h, w)}
        if case.masks:
            masks = torch.zeros(2, h, w, dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
                masks[k, y0:y1, x0:x1] = 1
            target["masks"] = masks
        items.append((torch.randn(3, h, w, generator=gen), target))
    return _Images(items, case.size)


def _ours(case: Case, steps: int) -> float:
    """Seconds for `steps` iterations of the engine train.py runs."""
    cfg = Stage1Config(epochs=1, batch_size=case.batch, lr=0.01, device="cpu", shift=0, hflip=False, warmup=1,
                       workers=0, out=os.devnull)  # in memory, as the bare loop's data
    model = case.build()
    if case.loop == "boxes":
        from training.detection.engine import train_detector

        data = _det_data(case, steps)
        return train_detector(model, data, cfg)["seconds"]
    from training.core.loops import train_stage1
    from training.segmentation.engine import train_seg_stage1

    loader = DataLoader(_dense_data(case, steps), batch_size=case.batch, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    train = train_seg_stage1 if case.loop == "pixels" else train_stage1
    start = time.perf_counter()
    train(model, loader, cfg)
    return time.perf_counter() - start


def _bare(case: Case, steps: int) -> float:
    """Seconds for `steps` iterations of the plain PyTorch loop on the same model, batch and data."""
    model = case.build()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = cosine_sgd(params, 0.01, 5e-4, steps)
    start = time.perf_counter()
    if case.loop == "boxes":
        from training.detection.data import collate

        for images, targets, _ in DataLoader(_det_data(case, steps), batch_size=case.batch, collate_fn=collate):
            loss = sum(model(images, targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
        return time.perf_counter() - start
    for x, y in DataLoader(_dense_data(case, steps), batch_size=case.batch, shuffle=True,
                           generator=torch.Generator().manual_seed(0)):
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - start


def measure(case: Case, steps: int, repeats: int) -> dict:
    """Images/s of ours and of the bare loop (each after its own one-step warm-up; the best of `repeats`
    alternating runs each, which keeps a busy machine's noise out of the ratio), and their ratio."""
    _ours(case, 1), _bare(case, 1)
    ours, bare = float("inf"), float("inf")
    for _ in range(repeats):
        ours, bare = min(ours, _ours(case, steps)), min(bare, _bare(case, steps))
    images = case.batch * steps
    row = {"case": case.name, "loop": case.loop, "group": case.group, "batch": case.batch,
           "input": f"{case.size[0]}x{case.size[1]}", "steps": steps, "repeats": repeats, "ours_img_s": round(images / ours, 2),
           "bare_img_s": round(images / bare, 2), "ratio": round(bare / ours, 3)}
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    """Measure the chosen cases, print JSON rows, write the markdown table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["small", "preset", "all"], default="all")
    p.add_argument("--steps", type=int, default=None, help="iterations measured (default: small 20, preset 2)")
    p.add_argument("--out", default=None, help="write the markdown table here")
    args = p.parse_args(argv)
    machine = cpu_description()
    print(machine)
    rows = [measure(c, args.steps or (20 if c.group == "small" else 2), 5 if c.group == "small" else 3)
            for c in _cases()
            if args.only == "all" or c.group == args.only or (args.only == "preset" and c.group == "reference")]
    projected = projections({r["case"]: r["ours_img_s"] for r in rows})
    for row in projected:
        print(json.dumps(row))
    if args.out:
        from ltdeploy.files import atomic_path

        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            f.write(markdown(rows, projected, machine))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
