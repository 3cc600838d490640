"""The training half of the GPU check: a few stage-1 iterations of classification and segmentation on the
device with bf16 and fp16 (channels-last), a resumable save, one stage-2 DisAlign fit on device features, a
checkpoint rebuilt on the CPU with the device's logits, and an ONNX export of it; a Mask R-CNN with PCB trained
under each autocast, then its detections on the device beside the CPU's. Tensors are made in memory (no
dataset, no OpenCV, no ONNX Runtime: the GPU machine has neither).

    python scripts/gpu_training.py                 # on the GPU machine (or from scripts/gpu_check.py --train)
    python scripts/gpu_training.py --device cpu    # the same steps on the CPU, fp16 on the classifier only (tests)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ltdeploy.metadata import ModelDescription  # noqa: E402
from ltdeploy.preprocess import PreprocessConfig  # noqa: E402
from training.checkpoints import read_checkpoint  # noqa: E402
from training.classification.model import LTClassifier  # noqa: E402
from training.config import Stage1Config, Stage2Config  # noqa: E402
from training.core.checkpoint import save_checkpoint  # noqa: E402
from training.core.grw import GRWLoss  # noqa: E402
from training.core.loops import extract_features, fit_on_features, train_stage1  # noqa: E402
from training.core.methods import build_calibrator  # noqa: E402
from training.detection.engine import train_detector  # noqa: E402
from training.detection.model import LTDetector  # noqa: E402
from training.segmentation.engine import train_seg_stage1  # noqa: E402
from training.segmentation.model import LTSegmenter  # noqa: E402

K, N = 6, 32
COUNTS = [16, 12, 8, 6, 4, 2]


def _loader(dense: bool) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, 32, 32, generator=gen)
    y = torch.randint(0, K, (N, 32, 32) if dense else (N,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))


def stage1_checks(check, device: str, folder: str) -> dict[str, torch.nn.Module]:
    """Each task's stage 1 under bf16 and fp16 autocast, channels-last, with a resumable save."""
    models = {}
    # fp16 on a CPU is emulated (slow): there the GradScaler path is checked on the classifier alone
    for task, build, train, dense, cpu_fp16 in (
            ("classification", lambda: LTClassifier("small_cnn", "linear", K), train_stage1, False, True),
            ("segmentation", lambda: LTSegmenter("small_seg", K), train_seg_stage1, True, False)):
        for amp in ("bf16", "fp16") if device.startswith("cuda") or cpu_fp16 else ("bf16",):
            @check(f"{task} stage 1, {amp} autocast, channels-last, on {device}")
            def _():
                model = build()
                cfg = Stage1Config(out=os.path.join(folder, f"{task}-{amp}.pt"), epochs=2, batch_size=8, lr=0.05,
                                   device=device, amp=amp, channels_last=True, save_every=1)
                history = train(model, _loader(dense), cfg)
                losses = [e["loss"] for e in history["epochs"]]
                assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses))), losses
                assert os.path.exists(cfg.out), "the resumable state of epoch 1"
                assert next(model.parameters()).device.type == torch.device(device).type
                models[task] = model
                return f"losses {[round(v, 3) for v in losses]}"
    return models


class TinyDetectionSet(torch.utils.data.Dataset):
    """Eight 128x128 images with one or two filled boxes each (and their masks), held in memory."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = [{"id": i, "width": 128, "height": 128} for i in range(8)]
        self.items = []
        for i in range(8):
            image, boxes, masks = torch.rand(3, 128, 128, generator=gen) * 0.2, [], []
            for j in range(1 + i % 2):
                x0, y0 = 8 + 56 * j, 16 + 4 * i
                mask = torch.zeros(128, 128, dtype=torch.uint8)
                mask[y0:y0 + 40, x0:x0 + 48] = 1
                image[(i + j) % 3][mask.bool()] = 0.9
                boxes.append([x0, y0, x0 + 48, y0 + 40])
                masks.append(mask)
            self.items.append((image, {"boxes": torch.tensor(boxes, dtype=torch.float32), "image_id": i,
                                       "labels": torch.tensor([1 + (i + j) % 3 for j in range(len(boxes))]),
                                       "masks": torch.stack(masks), "orig_size": (128, 128)}))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def detection_checks(check, device: str, folder: str) -> None:
    """Mask R-CNN with three PCB passes (PCB on from epoch 2) under each autocast (bf16 only on a CPU); its
    detections on the device against a CPU copy of the same weights."""
    data = TinyDetectionSet()
    # fp16 on a CPU is emulated (a minute for these few steps): the CPU run checks bf16 only
    for amp in ("bf16", "fp16") if device.startswith("cuda") else ("bf16",):
        @check(f"detection stage 1 (Mask R-CNN, PCB), {amp} autocast, channels-last, on {device}")
        def _():
            torch.manual_seed(0)
            model = LTDetector(body="lite0_fpn", num_classes=3, masks=True, passes=3, pcb=True, head="linear",
                               detections_per_image=20)
            cfg = Stage1Config(out=os.path.join(folder, f"detection-{amp}.pt"), epochs=2, batch_size=4, lr=0.01,
                               warmup=2, pcb_start=1, device=device, amp=amp, channels_last=True, save_every=1,
                               workers=0)
            history = train_detector(model, data, cfg)
            assert all(torch.isfinite(torch.tensor(history["iterations"]))), history["iterations"]
            assert os.path.exists(cfg.out), "the resumable state of epoch 1"
            assert [e["pcb"] for e in history["epochs"]] == [False, True], history["epochs"]
            model.eval()
            image = data[0][0]
            with torch.no_grad():
                on_device = model([image.to(device)])[0]
                cpu = LTDetector(**{k: v for k, v in model.arch.items() if k != "task"}).eval()
                cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
                on_cpu = cpu([image])[0]
            top = min(5, len(on_cpu["scores"]), len(on_device["scores"]))
            gap = float((on_device["scores"][:top].float().cpu() - on_cpu["scores"][:top]).abs().max()) if top else 0.0
            assert gap < 2e-2, gap  # TF32 on the GPU
            return f"losses {history['iterations'][0]:.3f} -> {history['iterations'][-1]:.3f}, top-{top} score " \
                   f"gap device vs CPU {gap:.1e}"


def stage2_and_export_checks(check, device: str, folder: str, model: torch.nn.Module) -> None:
    """DisAlign fitted on device features; the checkpoint rebuilt on the CPU gives the device's logits and
    exports to ONNX."""
    path = os.path.join(folder, "disalign.pt")

    @check(f"stage 2 DisAlign on {device} features, checkpoint rebuilt on the CPU, ONNX export")
    def _():
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        loader = _loader(False)
        feats, labels = extract_features(model, DataLoader(loader.dataset, batch_size=16))
        model.calibrator = build_calibrator("disalign", model.feat_dim, K).to(device)

        def forward(f: torch.Tensor) -> torch.Tensor:
            return model.calibrator(f, model.head(f))
        cfg = Stage2Config(epochs=3, lr=0.05)
        batches = lambda: ((feats[i:i + 16], labels[i:i + 16]) for i in range(0, N, 16))  # noqa: E731
        log = fit_on_features(forward, list(model.calibrator.parameters()), GRWLoss(COUNTS, 1.2), batches, 3, cfg)
        pre = PreprocessConfig(input_size=(32, 32), resize_short=0, interpolation="bilinear", mean=(0.5,) * 3,
                               std=(0.5,) * 3)
        desc = ModelDescription(task="classification", class_names=[f"c{i}" for i in range(K)], class_counts=COUNTS,
                                group_thresholds=(10, 5), preprocess=pre, input_name="images",
                                output_names=["logits"], calibration={"method": "disalign"}, provenance={})
        save_checkpoint(path, model, desc, {"stage2": log})
        x = loader.dataset.tensors[0][:4]
        with torch.no_grad():
            on_device = model(x.to(device)).float().cpu()
        cpu = read_checkpoint(path).model
        with torch.no_grad():
            on_cpu = cpu(x)
        gap = float((on_device - on_cpu).abs().max())
        assert gap < 1e-2, gap  # TF32 convolutions on the GPU
        onnx_path = os.path.join(folder, "disalign.onnx")
        torch.onnx.export(cpu, (x,), onnx_path, input_names=["images"], output_names=["logits"], dynamo=False)
        assert os.path.getsize(onnx_path) > 0 and F.softmax(on_cpu, 1).sum(1).allclose(torch.ones(4))
        return f"device vs CPU logits {gap:.2e}, stage-2 loss {log['epochs'][-1]['loss']:.3f}"


def training_checks(check, device: str) -> None:
    """Every training check, in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        models = stage1_checks(check, device, folder)
        classifier = models.get("classification")
        if classifier is not None:
            stage2_and_export_checks(check, device, folder, classifier)
        detection_checks(check, device, folder)


def main(argv: list[str] | None = None) -> int:
    """Run the training checks alone and print a JSON summary; exits 1 if any fails."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from gpu_check import RESULTS, check

    training_checks(check, args.device)
    ok = all(r["ok"] for r in RESULTS)
    print(json.dumps({"ok": ok, "device": args.device, "torch": torch.__version__, "checks": RESULTS}, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
