"""`ltdeploy calibrate`: classifiers that exist only as ONNX (torchvision, timm, a tf2onnx-style Keras graph)
calibrated torch-free, folded into their own graph with names and axes kept; the numpy fit against training's
torch fit; one-line refusals that write nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ltdeploy.calibrate.fit import fit
from ltdeploy.calibrate.settings import FitSettings
from tests.conftest import run, train_plainly

PRE = ["--input-size", "32", "--resize-short", "0", "--interpolation", "bilinear", "--mean", "0.5", "0.5", "0.5",
       "--std", "0.5", "0.5", "0.5"]


def _ltdeploy(*args: str) -> subprocess.CompletedProcess:
    """`ltdeploy ...` in this process through click's runner (no interpreter to start): its exit code, stdout and
    stderr as a process gives them; an exception the command let through fails the test."""
    from click.testing import CliRunner

    from ltdeploy.cli import cli

    r = CliRunner().invoke(cli, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def _export(model: torch.nn.Module, path) -> str:
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, 32, 32),), str(path), input_names=["pixels"],
                      output_names=["scores"], dynamic_axes={"pixels": {0: "batch"}, "scores": {0: "batch"}},
                      dynamo=False)
    return str(path)


@pytest.fixture(scope="module")
def exported(shapes_folders, tmp_path_factory) -> dict[str, str]:
    """A torchvision ResNet-18 (Flatten, Gemm) and a timm ConvNeXt (LayerNorm, then Linear), trained plainly on the
    long-tailed folders, exported to ONNX by torch."""
    import timm
    from torchvision.models import resnet18

    root = tmp_path_factory.mktemp("calibrate")
    torch.manual_seed(0)
    tv = train_plainly(resnet18(num_classes=8), shapes_folders, epochs=4)
    torch.manual_seed(0)
    convnext = train_plainly(timm.create_model("convnext_atto", num_classes=8), shapes_folders, epochs=6, lr=0.02)
    return {"torchvision": _export(tv, root / "resnet18.onnx"), "timm": _export(convnext, root / "convnext.onnx")}


def keras_like(path, folders: str) -> str:
    """A graph as tf2onnx writes a Keras classifier: NHWC input, Transpose, Conv, Relu, global pooling, Reshape,
    MatMul + Add, Softmax (opset 13). The convolution is random; the Dense layer is fitted with plain
    cross-entropy to the long-tailed training split, so it favours the head classes."""
    from ltdeploy.datasets.classification_sets import read_split
    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import PreprocessConfig, preprocess_image

    rng = np.random.default_rng(0)
    conv = rng.normal(0, 0.3, (24, 3, 3, 3)).astype(np.float32)
    pre = PreprocessConfig(input_size=(32, 32), resize_short=0, interpolation="bilinear", mean=(0.5,) * 3,
                           std=(0.5,) * 3)
    train = read_split(folders, "train")
    x = torch.from_numpy(np.stack([preprocess_image(read_image(p), pre) for p in train.paths]))
    feats = torch.relu(torch.nn.functional.conv2d(x, torch.from_numpy(conv), padding=1)).mean((2, 3))
    dense = torch.nn.Linear(24, 8)
    opt = torch.optim.SGD(dense.parameters(), lr=0.5, momentum=0.9)
    y = torch.from_numpy(train.labels)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(dense(feats), y).backward()
        opt.step()
    w = dense.weight.detach().numpy().T.copy()  # Keras keeps Dense kernels as (in, out)
    b = dense.bias.detach().numpy().copy()
    nodes = [
        helper.make_node("Transpose", ["input_1"], ["nchw"], perm=[0, 3, 1, 2], name="model/conv/transpose"),
        helper.make_node("Conv", ["nchw", "conv_w"], ["conv"], pads=[1, 1, 1, 1], name="model/conv/Conv2D"),
        helper.make_node("Relu", ["conv"], ["relu"], name="model/conv/Relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"], name="model/pool/Mean"),
        helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"], name="model/flatten/Reshape"),
        helper.make_node("MatMul", ["flat", "dense_w"], ["dense_mm"], name="model/dense/MatMul"),
        helper.make_node("Add", ["dense_mm", "dense_b"], ["dense_logits"], name="model/dense/BiasAdd"),
        helper.make_node("Softmax", ["dense_logits"], ["dense"], axis=-1, name="model/dense/Softmax"),
    ]
    inits = [numpy_helper.from_array(conv, "conv_w"), numpy_helper.from_array(np.asarray([-1, 24], np.int64),
                                                                              "flat_shape"),
             numpy_helper.from_array(w, "dense_w"), numpy_helper.from_array(b, "dense_b")]
    graph = helper.make_graph(nodes, "keras", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT,
                                                                             ["unk__0", 32, 32, 3])],
                              [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["unk__1", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    onnx.save(model, str(path))
    return str(path)


def _io(path: str) -> list[tuple]:
    """(name, dtype, dims with their symbolic names) of every graph input and output."""
    g = onnx.load(path, load_external_data=False).graph
    return [(v.name, v.type.tensor_type.elem_type,
             [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in [*g.input, *g.output]]


def _val_report(engine: str, data: str, tmp_path, split: str = "test") -> dict:
    out = tmp_path / f"{os.path.basename(engine)}.{split}.json"
    r = _ltdeploy("val", "--engine", engine, "--data", data, "--split", split, "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(out.read_text())["engines"][0]["columns"]


@pytest.mark.parametrize("source, method", [("torchvision", "auto"), ("timm", "disalign")])
def test_a_torch_export_is_calibrated_in_its_own_graph_and_the_tail_improves(exported, shapes_folders, tmp_path,
                                                                             source, method):
    model = exported[source]
    before, after = tmp_path / "described.onnx", tmp_path / "calibrated.onnx"
    r = _ltdeploy("calibrate", model, "--data", shapes_folders, "-o", str(before), "--method", "none", *PRE)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _ltdeploy("calibrate", model, "--data", shapes_folders, "-o", str(after), "--method", method, *PRE)
    assert r.returncode == 0, r.stderr[-2000:]
    parity = float(r.stdout.split("max |ONNX Runtime - numpy| ")[1].split(";")[0])
    assert parity < 1e-4
    assert _io(after) == _io(model)  # names, dtypes and dynamic axes as the user's serving code knows them
    plain, calibrated = _val_report(str(before), shapes_folders, tmp_path), _val_report(str(after), shapes_folders,
                                                                                       tmp_path)
    assert calibrated["few"] > plain["few"] + 0.1, (plain, calibrated)
    desc = json.loads(next(p.value for p in onnx.load(str(after)).metadata_props if p.key == "ltdeploy"))
    assert desc["calibration"]["feature_tensors"] and desc["provenance"]["source_sha256"]
    assert desc["class_names"] == sorted(os.listdir(os.path.join(shapes_folders, "train")))


def test_a_keras_graph_keeps_nhwc_and_its_softmax(shapes_folders, tmp_path):
    model = keras_like(tmp_path / "keras.onnx", shapes_folders)
    out = tmp_path / "keras.calibrated.onnx"
    r = _ltdeploy("calibrate", model, "--data", shapes_folders, "-o", str(out), "--method", "logit-adjust",
                     *[a for a in PRE if a not in ("--input-size", "32")])  # the size comes from the input's shape
    assert r.returncode == 0, r.stderr[-2000:]
    assert _io(str(out)) == _io(model)
    desc = json.loads(next(p.value for p in onnx.load(str(out)).metadata_props if p.key == "ltdeploy"))
    assert desc["preprocess"]["layout"] == "NHWC" and desc["postprocess"] == {"probabilities": True}
    probs = ort.InferenceSession(str(out)).run(None, {"input_1": np.random.default_rng(0).normal(
        size=(5, 32, 32, 3)).astype(np.float32)})[0]
    assert np.allclose(probs.sum(1), 1, atol=1e-5)  # the Softmax follows the calibrated logits
    plain = tmp_path / "keras.described.onnx"
    assert _ltdeploy("calibrate", model, "--data", shapes_folders, "-o", str(plain), "--method", "none",
                        *[a for a in PRE if a not in ("--input-size", "32")]).returncode == 0
    before, after = _val_report(str(plain), shapes_folders, tmp_path), _val_report(str(out), shapes_folders, tmp_path)
    assert after["few"] > before["few"], (before, after)
    first = os.path.join(shapes_folders, "test", sorted(os.listdir(os.path.join(shapes_folders, "test")))[0])
    image = os.path.join(first, sorted(os.listdir(first))[0])
    r = _ltdeploy("predict", image, "--engine", str(out), "--json", "--topk", "8")
    assert r.returncode == 0, r.stderr[-2000:]
    top = json.loads(r.stdout)["results"][0]["top"]
    assert abs(sum(t["prob"] for t in top) - 1) < 1e-4  # the graph's probabilities, not a softmax of them
    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import PreprocessConfig, preprocess_image

    pre = PreprocessConfig.from_dict(desc["preprocess"])
    own = ort.InferenceSession(str(out)).run(None, {"input_1": preprocess_image(read_image(image), pre)[None]})[0][0]
    assert abs(top[0]["prob"] - float(own.max())) < 1e-5


def test_the_numpy_fit_equals_trainings_torch_fit_on_the_same_features():
    from training.config import Stage2Config
    from training.core.calibration import DisAlign
    from training.core.grw import GRWLoss
    from training.core.loops import fit_on_features

    rng = np.random.default_rng(0)
    counts = [80, 40, 20, 8, 4]
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    x = rng.normal(size=(len(y), 16)).astype(np.float32) + np.eye(5, 16)[y].astype(np.float32)
    w, b = rng.normal(size=(5, 16)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    z = x @ w.T + b
    settings = FitSettings(epochs=4, batch_size=32, lr=0.1, wd=5e-4, rho=1.2, min_steps=0)
    orders = [np.random.default_rng(e).permutation(len(y)) for e in range(settings.epochs)]
    ours = fit("disalign", (x, z, y), counts, (w, b), settings, epochs=iter(orders))
    cal = DisAlign(16, 5)
    both = torch.from_numpy(np.concatenate([x, z], 1))  # features and their stage-1 logits side by side
    yt = torch.from_numpy(y)
    epochs = iter([[(both[o[i:i + 32]], yt[o[i:i + 32]]) for i in range(0, len(o), 32)] for o in orders])
    cfg = Stage2Config(epochs=settings.epochs, lr=settings.lr, wd=settings.wd, method="disalign")
    fit_on_features(lambda f: cal(f[:, :16], f[:, 16:]), list(cal.parameters()), GRWLoss(counts, settings.rho),
                    lambda: next(epochs), -(-len(y) // 32), cfg)
    theirs = {"alpha": cal.alpha, "beta": cal.beta, "v": cal.confidence.weight.reshape(-1),
              "c": cal.confidence.bias.reshape(-1)}
    for name, value in theirs.items():
        gap = float(np.abs(ours.params[name] - value.detach().double().numpy()).max())
        assert gap < 1e-4, (name, gap)  # float32 torch against float64 numpy over 20 steps
    assert float(np.abs(ours.params["alpha"] - 1).max()) > 1e-3  # it moved


def test_the_numpy_pixel_fit_equals_trainings_torch_fit_through_the_upsampling():
    """Pixels mix their four coarse cells' calibrated logits as F.interpolate does; the gradient goes back the
    same way. Whole images per batch with no ignored pixel: the same loss as GRWLoss over the upsampled maps."""
    import torch.nn.functional as F

    from ltdeploy.calibrate.cache import bilinear_taps
    from training.config import Stage2Config
    from training.core.calibration import PixelDisAlign
    from training.core.grw import GRWLoss
    from training.core.loops import fit_on_features

    rng = np.random.default_rng(1)
    n, d, k, grid, size, per_batch = 6, 8, 4, (3, 5), (12, 20), 2
    x = rng.normal(size=(n, d, *grid)).astype(np.float32)
    w = rng.normal(size=(k, d)).astype(np.float32)
    z = np.einsum("kd,ndhw->nkhw", w, x).astype(np.float32)
    y = rng.choice(k, size=(n, *size), p=[0.7, 0.2, 0.07, 0.03])
    counts = np.bincount(y.reshape(-1), minlength=k).tolist()
    rows, cols = np.divmod(np.arange(size[0] * size[1]), size[1])
    taps, weights = bilinear_taps(rows, cols, size, grid)
    cells = grid[0] * grid[1]
    pixels = size[0] * size[1]
    mixing = (np.concatenate([taps + i * cells for i in range(n)]), np.tile(weights, (n, 1)).astype(np.float32),
              np.arange(n + 1) * pixels)
    settings = FitSettings(epochs=3, batch_size=per_batch * pixels, lr=0.5, wd=5e-4, rho=0.3, min_steps=0)
    orders = [np.random.default_rng(e).permutation(n) for e in range(settings.epochs)]
    ours = fit("disalign", (x.transpose(0, 2, 3, 1).reshape(-1, d), z.transpose(0, 2, 3, 1).reshape(-1, k),
                            y.reshape(-1)), counts, (w, np.zeros(k, np.float32)), settings, mixing=mixing,
               epochs=iter([(o[:, None] * pixels + np.arange(pixels)).reshape(-1) for o in orders]))
    cal = PixelDisAlign(d, k)
    both, yt = torch.from_numpy(np.concatenate([x, z], 1)), torch.from_numpy(y)
    epochs = iter([[(both[o[i:i + per_batch]], yt[o[i:i + per_batch]]) for i in range(0, n, per_batch)]
                   for o in orders])
    cfg = Stage2Config(epochs=settings.epochs, lr=settings.lr, wd=settings.wd, method="disalign")
    fit_on_features(lambda f: F.interpolate(cal(f[:, :d], f[:, d:]), size=size, mode="bilinear",
                                            align_corners=False),
                    list(cal.parameters()), GRWLoss(counts, settings.rho), lambda: next(epochs), n // per_batch, cfg)
    theirs = {"alpha": cal.alpha, "beta": cal.beta, "v": cal.confidence.weight.reshape(-1),
              "c": cal.confidence.bias.reshape(-1)}
    for name, value in theirs.items():
        gap = float(np.abs(ours.params[name] - value.detach().double().numpy()).max())
        assert gap < 1e-4, (name, gap)
    assert float(np.abs(ours.params["beta"]).max()) > 1e-3  # it moved


def _refused(args: list[str], says: str, out) -> None:
    r = _ltdeploy("calibrate", *args, "-o", str(out))
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.returncode == 2 and len(errors) == 1 and says in errors[0] and "Traceback" not in r.stderr, r.stderr
    assert not os.path.exists(out) and not [p for p in os.listdir(os.path.dirname(out)) if p.startswith(".out")]


def _graph(path, nodes, inits, outputs, opset: int = 17) -> str:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", None]) for o in outputs],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return str(path)


def test_bad_input_is_one_line_and_writes_nothing(exported, shapes_folders, digits, tmp_path):
    out = tmp_path / "out.onnx"
    rng = np.random.default_rng(0)
    pool = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"])]
    deit = _graph(tmp_path / "deit.onnx", pool + [
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h1"], transB=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["h2"], transB=1),
        helper.make_node("Add", ["h1", "h2"], ["s"]), helper.make_node("Div", ["s", "two"], ["y"])],
        {"w1": rng.normal(size=(8, 3)).astype(np.float32), "b1": np.zeros(8, np.float32),
         "w2": rng.normal(size=(8, 3)).astype(np.float32), "b2": np.zeros(8, np.float32),
         "two": np.asarray(2, np.float32)}, ["y"])
    squeeze = _graph(tmp_path / "squeeze.onnx", [
        helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])],
        {"w": rng.normal(size=(8, 3, 1, 1)).astype(np.float32)}, ["y"])
    two_outputs = _graph(tmp_path / "two.onnx", pool + [helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1),
                                                        helper.make_node("Relu", ["f"], ["z"])],
                         {"w": rng.normal(size=(8, 3)).astype(np.float32), "b": np.zeros(8, np.float32)}, ["y", "z"])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not an onnx file")
    cases = [
        ([deit, "--data", shapes_folders, *PRE], "comes from Div <- Add <- Gemm, Gemm"),
        ([squeeze, "--data", shapes_folders, *PRE], "comes from Flatten <- GlobalAveragePool <- Relu <- Conv"),
        ([two_outputs, "--data", shapes_folders, *PRE], "2 outputs"),
        ([str(garbage), "--data", shapes_folders, *PRE], "not a readable ONNX file"),
        ([str(tmp_path / "missing.onnx"), "--data", shapes_folders, *PRE], "no such ONNX file"),
        ([exported["torchvision"], "--data", str(digits), *PRE], "the model's outputs have 8 classes but the "
                                                                 "dataset has 10"),
        # the input's fixed 32 x 32 gives the size; the rest is nowhere in the file
        ([exported["torchvision"], "--data", shapes_folders], "must be given: --resize-short, --interpolation, "
                                                              "--mean, --std"),
        ([exported["torchvision"], "--data", shapes_folders,
          *[a if a != "bilinear" else "cubic" for a in PRE]], "interpolation is 'cubic'; expected one of nearest"),
    ]
    for args, says in cases:
        _refused(args, says, out)


BLOCK_TORCH = """
import json, sys
for name in ("torch", "torchvision", "timm", "training", "export"):
    sys.modules[name] = None  # an import of any of them fails, as it would where none is installed
from ltdeploy.cli import main
sys.argv = ["ltdeploy", "calibrate", *{args!r}]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "modules": sorted(m for m in sys.modules if sys.modules[m] is not None)}}))
"""


def test_calibrate_runs_without_torch(exported, shapes_folders, tmp_path):
    out = tmp_path / "no-torch.onnx"
    args = [exported["torchvision"], "--data", shapes_folders, "-o", str(out), "--method", "tau-norm", *PRE]
    r = run(sys.executable, "-c", BLOCK_TORCH.format(args=args))
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["code"] in (0, None) and out.exists(), r.stderr[-2000:]
    assert not [m for m in result["modules"] if m.split(".")[0] in ("torch", "torchvision", "timm")]


def test_the_calibrated_graph_goes_through_every_command(exported, shapes_folders, tmp_path):
    out = tmp_path / "resnet18.disalign.onnx"
    assert _ltdeploy("calibrate", exported["torchvision"], "--data", shapes_folders, "-o", str(out),
                        *PRE).returncode == 0
    r = _ltdeploy("info", "--engine", str(out))
    assert r.returncode == 0 and "disalign" in r.stdout and "feature_tensors" in r.stdout, r.stderr
    # quantize and the fp16 conversion find the feature extractor from the recorded feature tensor: a torch export
    # of a torchvision model has no /backbone/ scope
    int8, fp16 = tmp_path / "int8.onnx", tmp_path / "fp16.onnx"
    r = _ltdeploy("quantize", str(out), "-o", str(int8), "--calib", shapes_folders, "--calib-images", "16")
    assert r.returncode == 0, r.stderr[-2000:]
    quantized = onnx.load(str(int8))
    feature = json.loads(next(p.value for p in quantized.metadata_props
                              if p.key == "ltdeploy"))["calibration"]["feature_tensors"][0]
    assert any(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    head = [n for n in quantized.graph.node if n.name.startswith("ltdeploy_calibration/")]
    assert head and all(n.op_type not in ("QuantizeLinear", "DequantizeLinear") for n in head)
    assert feature in {o for n in quantized.graph.node for o in n.output}
    r = _ltdeploy("build", str(out), "-o", str(fp16), "--fp16")
    assert r.returncode == 0 and "fp16" in r.stdout, r.stderr[-2000:]
    fp32_top1, int8_top1 = (_val_report(str(m), shapes_folders, tmp_path)["top1"] for m in (out, int8))
    assert int8_top1 > fp32_top1 - 0.05, (fp32_top1, int8_top1)
    r = _ltdeploy("export-triton", "--engine", str(out), "--repo", str(tmp_path / "repo"))
    assert r.returncode == 0 and (tmp_path / "repo").is_dir(), r.stderr[-2000:]


class _Out(torch.nn.Module):
    """torchvision's segmenters return a dict; an export takes its "out"."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


class _Lite0Features(torch.nn.Module):
    """EfficientNet-Lite0's ImageNet-trained stride-8 and stride-32 features, as torchvision's segmentation
    backbones return them: {"out": stride 8} for FCN, {"low", "high"} for LR-ASPP."""

    def __init__(self, name: str) -> None:
        import timm

        from training.classification.backbones import lite0_imagenet_state

        super().__init__()
        self.name = name
        self.net = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(2, 4))
        own = self.net.state_dict()
        self.net.load_state_dict({k: v for k, v in lite0_imagenet_state().items() if k in own})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low, high = self.net(x)
        if self.name == "fcn":  # both levels at stride 8, as a decoder would give FCN's head
            return {"out": torch.cat([low, torch.nn.functional.interpolate(high, size=low.shape[-2:],
                                                                           mode="bilinear")], 1)}
        return {"low": low, "high": high}


def _trained_segmenter(name: str, data: str) -> torch.nn.Module:
    """torchvision's FCN or LR-ASPP on a frozen ImageNet-trained EfficientNet-Lite0, its head fitted with plain
    cross-entropy on the long-tailed training pixels (quick, and biased to the head classes)."""
    from torchvision.models.segmentation.fcn import FCN, FCNHead
    from torchvision.models.segmentation.lraspp import LRASPP

    from ltdeploy.datasets.seg_folders import IGNORE, read_seg_split
    from ltdeploy.image_io import read_image
    from ltdeploy.preprocess import PreprocessConfig, preprocess_image

    torch.manual_seed(0)
    body = _Lite0Features(name).eval()
    low, high = body.net.feature_info.channels()
    model = FCN(body, FCNHead(low + high, SEG_K)) if name == "fcn" else LRASPP(body, low, high, SEG_K)
    pre = PreprocessConfig(input_size=(64, 64), resize_short=0, interpolation="bilinear", mean=(0.5,) * 3,
                           std=(0.5,) * 3)
    split = read_seg_split(data, "train")
    x = torch.from_numpy(np.stack([preprocess_image(read_image(p), pre) for p in split.images]))
    y = torch.from_numpy(np.stack([split.read_labels(i) for i in range(len(split.images))]).astype(np.int64))
    with torch.no_grad():
        feats = body(x)
    opt = torch.optim.Adam(model.classifier.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        logits = torch.nn.functional.interpolate(model.classifier(feats["out"] if name == "fcn" else feats),
                                                 size=(64, 64), mode="bilinear")
        torch.nn.functional.cross_entropy(logits, y, ignore_index=IGNORE).backward()
        opt.step()
    return _Out(model.eval())


SEG_K = 8


@pytest.fixture(scope="module")
def seg_lt(tmp_path_factory) -> str:
    """A long-tailed seg-lt: 3 stuff classes, 5 objects at imbalance 20; 32 training and 16 val images."""
    from training.segmentation.synthetic import make_seg_lt

    data = tmp_path_factory.mktemp("seg") / "seg-lt"
    make_seg_lt(str(data), num_classes=SEG_K, n_train=32, n_val=16, imbalance=20)
    return str(data)


@pytest.mark.parametrize("name, method, rises", [("fcn", "disalign", "body_mIoU"), ("lraspp", "auto", "tail_mIoU")])
def test_a_torchvision_segmenter_is_calibrated_per_pixel_in_its_own_graph(name, method, rises, seg_lt, tmp_path):
    """Scored at full resolution by `ltdeploy val`, before and after. LR-ASPP's tail rises. FCN's head, trained
    from scratch on 32 images, predicts no tail class at all (a calibration cannot separate what the features do
    not), so its rarest group predicted, the body, is the one that must rise."""
    model = tmp_path / f"{name}.onnx"
    torch.onnx.export(_trained_segmenter(name, seg_lt), (torch.zeros(1, 3, 64, 64),), str(model),
                      input_names=["image"], output_names=["out"], dynamic_axes={"image": {0: "n"}, "out": {0: "n"}},
                      dynamo=False)
    scores = {}
    for m in ("none", method):
        out = tmp_path / f"{name}.{m}.onnx"
        r = _ltdeploy("calibrate", str(model), "--data", seg_lt, "-o", str(out), "--method", m, "--min-steps", "200",
                      *[a if a != "32" else "64" for a in PRE])
        assert r.returncode == 0, r.stderr[-2000:]
        assert float(r.stdout.split("max |ONNX Runtime - numpy| ")[1].split(";")[0]) < 1e-4
        assert _io(str(out)) == _io(str(model))
        scores[m] = _val_report(str(out), seg_lt, tmp_path, split="val")
    desc = json.loads(next(p.value for p in onnx.load(str(out)).metadata_props if p.key == "ltdeploy"))
    assert desc["task"] == "segmentation" and desc["calibration"]["method"] == "disalign"
    assert len(desc["calibration"]["feature_tensors"]) == (2 if name == "lraspp" else 1)  # LR-ASPP's two convs
    assert method != "auto" or desc["calibration"]["auto"]["candidates"] == 3
    before, after = scores["none"], scores[method]
    assert after[rises] > before[rises] + 0.01 and after["mIoU"] > before["mIoU"], (before, after)


def test_a_large_segmentation_set_samples_fewer_pixels_to_fit_the_cache(capsys):
    from ltdeploy.calibrate.tasks import CACHE_BUDGET_BYTES, pixels_within_budget
    from ltdeploy.errors import LtDeployError

    n = pixels_within_budget(512, 20210, 512 + 150, "train")  # ADE20K through FCN-ResNet50: 512 features, 150 classes
    assert n == 20 and n * 20210 * 4 * 662 * 4 <= CACHE_BUDGET_BYTES < (n + 1) * 20210 * 4 * 662 * 4
    assert "train: 20 labelled pixels an image, not 512" in capsys.readouterr().err
    assert pixels_within_budget(512, 400, 168 + 30, "train") == 512  # the demo's seg-lt keeps every pixel asked
    with pytest.raises(LtDeployError, match="calibrate on a subset"):
        pixels_within_budget(512, 10 ** 7, 662, "train")


def test_weights_kept_outside_the_file_stay_outside(exported, shapes_folders, tmp_path):
    """A model over 2 GB keeps its weights in a file beside the graph: the calibrated one does too (onnx's
    external-data API), under its own name."""
    source = tmp_path / "external.onnx"
    onnx.save_model(onnx.load(exported["torchvision"]), str(source), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="external.onnx.data", size_threshold=0)
    out = tmp_path / "calibrated.onnx"
    r = _ltdeploy("calibrate", str(source), "--data", shapes_folders, "-o", str(out), "--method", "logit-adjust",
                     *PRE)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "calibrated.onnx.data").stat().st_size > out.stat().st_size
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    probs = ort.InferenceSession(str(out)).run(None, {"pixels": np.zeros((2, 3, 32, 32), np.float32)})[0]
    assert probs.shape == (2, 8)
