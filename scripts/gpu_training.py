"""The training half of the GPU check: a few stage-1 iterations of classification and segmentation on the
device with bf16 and fp16 (channels-last), a resumable save, one stage-2 DisAlign fit on device features, a
checkpoint rebuilt on the CPU with the device's logits, and an ONNX export of it. Tensors are made in memory
(no dataset, no OpenCV, no ONNX Runtime: the GPU machine has neither). Detection trains on the CPU in this
version and is not checked here.

    python scripts/gpu_training.py                 # on the GPU machine (or from scripts/gpu_check.py --train)
    python scripts/gpu_training.py --device cpu    # the same steps on the CPU (the test suite runs this)
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
    for task, build, train, dense in (("classification", lambda: LTClassifier("small_cnn", "linear", K),
                                       train_stage1, False),
                                      ("segmentation", lambda: LTSegmenter("small_seg", K), train_seg_stage1, True)):
        for amp in ("bf16", "fp16"):
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
