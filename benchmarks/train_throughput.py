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

from training.config import Stage1Config  # noqa: E402
from training.core.engine import cosine_sgd  # noqa: E402

# Per-GPU figures the projections start from (images/s or s/iteration), with their sources.
RESNET50_A100_AMP = 16621 / 8  # img/s per GPU, 8 x A100 80GB, mixed precision (NVIDIA DeepLearningExamples,
# PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training performance: NVIDIA DGX A100")
MASK_RCNN_LVIS_S_PER_ITER = 0.292  # s/iteration at 16 images on 8 x V100 (detectron2 MODEL_ZOO.md, LVIS
# Mask R-CNN R50-FPN 1x)


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


IMAGENET_LT_TRAIN, ADE20K_ITERATIONS, LVIS_ITERATIONS = 115846, 160000, 180000


def projections(rows: list[dict]) -> list[dict]:
    """Each preset's stage-1 wall time on 8 GPUs: a cited per-GPU figure, scaled where the preset's model is
    not the cited one by the two models' throughput ratio measured here."""
    rate = {r["case"]: r["ours_img_s"] for r in rows}
    ref = rate.get("ResNet-50 (projection reference)")
    out = [{"preset": "imagenet-lt-r50", "work": f"90 epochs x {IMAGENET_LT_TRAIN} images",
            "hours_8_gpus": round(90 * IMAGENET_LT_TRAIN / (RESNET50_A100_AMP * 8) / 3600, 2),
            "basis": f"ResNet-50 {RESNET50_A100_AMP * 8:.0f} img/s on 8 x A100, AMP (NVIDIA DeepLearningExamples, "
                     "fed by DALI; decoding JPEGs in CPU workers can bound it below that)"},
           {"preset": "lvis-v1-mask-rcnn-r50-1x", "work": f"{LVIS_ITERATIONS} iterations x 16 images",
            "hours_8_gpus": round(LVIS_ITERATIONS * MASK_RCNN_LVIS_S_PER_ITER / 3600, 2),
            "basis": f"{MASK_RCNN_LVIS_S_PER_ITER} s/iteration on 8 x V100 (detectron2 model zoo, LVIS R50-FPN 1x)"}]
    if ref:
        for preset, case, images in (("imagenet-lt-x50", "imagenet-lt-x50 (ResNeXt-50)", 90 * IMAGENET_LT_TRAIN),
                                     ("ade20k-deeplabv3-r50", "ade20k-deeplabv3-r50", ADE20K_ITERATIONS * 16)):
            if case in rate:
                factor = rate[case] / ref
                out.append({"preset": preset, "work": f"{images} images",
                            "hours_8_gpus": round(images / (RESNET50_A100_AMP * 8 * factor) / 3600, 2),
                            "basis": f"a lower bound: the ResNet-50 A100 figure x {factor:.3f}, this model's "
                                     "throughput relative to ResNet-50 measured here on the CPU (GPUs run grouped "
                                     "and dilated convolutions relatively slower: expect longer)"})
    return out


def markdown(rows: list[dict], projected: list[dict], machine: str) -> str:
    """The docs page."""
    lines = ["# Training throughput", "", f"Measured by `python benchmarks/train_throughput.py` on {machine}; "
             "random tensors in memory, so the figures are the training step and the engine around it. "
             "`bare` is a plain PyTorch loop (zero_grad, forward, loss, backward, step) on the same model, batch, "
             "data and device; the target is ours >= 0.95x of it. Compare ratios only within one run.", "",
             "| case | group | batch | input | ours (img/s) | bare (img/s) | ours / bare |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['group']} | {r['batch']} | {r['input']} | {r['ours_img_s']} | {r['bare_img_s']} | "
              f"{r['ratio']} |" for r in rows]
    lines += ["", "## Projected stage-1 wall time on 8 GPUs", "",
              "| preset | work | hours on 8 GPUs | from |", "|---|---|---|---|"]
    lines += [f"| {p['preset']} | {p['work']} | {p['hours_8_gpus']} | {p['basis']} |" for p in projected]
    return "\n".join(lines) + "\n"


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
    projected = projections(rows)
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
