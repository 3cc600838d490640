"""The tables of benchmarks/train_throughput.py: each preset's projected wall time on 8 GPUs from cited per-GPU
figures, and the markdown page (docs/train_throughput.md)."""
from __future__ import annotations

# Per-GPU figures the projections start from (images/s or s/iteration), with their sources.
RESNET50_A100_AMP = 16621 / 8  # img/s per GPU, 8 x A100 80GB, mixed precision (NVIDIA DeepLearningExamples,
# PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training performance: NVIDIA DGX A100")
MASK_RCNN_LVIS_S_PER_ITER = 0.292  # s/iteration at 16 images on 8 x V100 (detectron2 MODEL_ZOO.md, LVIS
# Mask R-CNN R50-FPN 1x)

IMAGENET_LT_TRAIN, ADE20K_ITERATIONS, LVIS_ITERATIONS = 115846, 160000, 180000


def projections(rate: dict[str, float]) -> list[dict]:
    """Each preset's stage-1 wall time on 8 GPUs from the measured images/s per case: a cited per-GPU figure,
    scaled where the preset's model is not the cited one by the two models' throughput ratio measured here."""
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
