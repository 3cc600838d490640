import pytest
import torch
from torch import nn

from tests.test_pixel_disalign import randomised
from training.core.calibration import PixelDisAlign
from training.segmentation.bodies import LRASPPFeature, build_seg_body
from training.segmentation.model import ArgmaxLabels, LTSegmenter, upsample


def test_segmenter_outputs_logits_at_input_size_for_any_size():
    model = LTSegmenter("small_seg", 7).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7, 64, 64)
        assert model(torch.zeros(1, 3, 96, 80)).shape == (1, 7, 96, 80)


@pytest.mark.parametrize("mode", ["affine", "weights"])
def test_folded_segmenter_equals_the_calibrated_model(mode):
    torch.manual_seed(0)
    model = LTSegmenter("small_seg", 6).eval()
    model.calibrator = PixelDisAlign(model.feat_dim, 6)
    randomised(model.calibrator)
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        want = model(x)
        stage1 = upsample(model.forward_head(model.forward_features(x), calibrated=False), (48, 40))
        assert (want - stage1).abs().max() > 0.1  # the calibration is really there
        got = model.folded(mode)(x)
        assert torch.allclose(got, want, atol=1e-5)
        labels = ArgmaxLabels(model.folded(mode), 6)(x)
    assert labels.dtype == torch.uint8 and labels.shape == (2, 48, 40)
    assert (labels == want.argmax(1)).float().mean() > 0.999


def test_lraspp_split_equals_torchvision_lraspp():
    """Our one-conv head on [low; context] computes torchvision's low_classifier + high_classifier."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    ref = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).eval()
    head = ref.classifier
    body = LRASPPFeature(ref.backbone, head.low_classifier.in_channels, head.cbr[0].in_channels)
    body.cbr, body.scale = head.cbr, head.scale
    conv = nn.Conv2d(body.out_channels, 5, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([head.low_classifier.weight, head.high_classifier.weight], 1))
        conv.bias.copy_(head.low_classifier.bias + head.high_classifier.bias)
        x = torch.randn(1, 3, 96, 96)
        want = ref(x)["out"]
        got = nn.functional.interpolate(conv(body(x)), size=(96, 96), mode="bilinear", align_corners=False)
    assert torch.allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("name,channels", [("small_seg", 64), ("lraspp_mobilenet_v3_large", 168),
                                           ("deeplabv3_mobilenet_v3_large", 256)])
def test_bodies_report_their_feature_channels(name, channels):
    body, c = build_seg_body(name)
    with torch.no_grad():
        assert c == channels and body.eval()(torch.zeros(1, 3, 64, 64)).shape[1] == channels


def test_no_offline_weights_is_a_clear_error():
    from ltdeploy.errors import ModelError

    with pytest.raises(ModelError, match="no offline ImageNet weights"):
        build_seg_body("lraspp_mobilenet_v3_large", pretrained=True)
