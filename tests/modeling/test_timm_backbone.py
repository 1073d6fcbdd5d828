"""The timm backbone: feature names, shapes and strides; frozen BN and FREEZE_AT as detectron2's
ResNet has them; the FPN around it; yacs and LazyConfig twins; errors that name the argument."""

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from helpers import REPO, assert_same_architecture, load_cfg
from timm.layers import BatchNormAct2d, FrozenBatchNormAct2d
from torch import nn

from dual_weighting.modeling import TimmBackbone
from dual_weighting.modeling.backbone import dw_fpn

LITE0 = "tf_efficientnet_lite0"
TREES = REPO / "configs" / "trees"


def test_features_are_named_by_stride_with_timms_channels():
    backbone = TimmBackbone(model_name=LITE0, out_features=["c2", "c3", "c4", "c5"])
    shapes = backbone.output_shape()
    # EfficientNet-Lite0's stages end at 24, 40, 112 and 320 channels at strides 4 to 32.
    assert {n: (s.channels, s.stride) for n, s in shapes.items()} == {
        "c2": (24, 4),
        "c3": (40, 8),
        "c4": (112, 16),
        "c5": (320, 32),
    }
    # TF "same" padding: every map is ceil(size / stride), also for sizes no stride divides.
    features = backbone(torch.zeros(1, 3, 100, 132))
    assert {n: tuple(f.shape[2:]) for n, f in features.items()} == {
        "c2": (25, 33),
        "c3": (13, 17),
        "c4": (7, 9),
        "c5": (4, 5),
    }


def _frozen(backbone):
    """Names of the timm modules whose parameters are all frozen, and the BN types used."""
    return {
        name
        for name, module in backbone.body.named_modules()
        if list(module.parameters(recurse=False))
        and not any(p.requires_grad for p in module.parameters(recurse=False))
    }


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3])
def test_freeze_at_freezes_the_first_feature_levels(freeze_at):
    torch.manual_seed(0)
    backbone = TimmBackbone(model_name=LITE0, norm="BN", freeze_at=freeze_at)
    # Feature levels of Lite0: 1 = stem + blocks.0 (stride 2), 2 = blocks.1, 3 = blocks.2.
    frozen_prefixes = [("conv_stem", "bn1", "blocks.0."), ("blocks.1.",), ("blocks.2.",)]
    prefixes = tuple(p for level in frozen_prefixes[:freeze_at] for p in level)
    for name, param in backbone.body.named_parameters():
        assert param.requires_grad == (not name.startswith(prefixes)), name
    for name, module in backbone.body.named_modules():
        if isinstance(module, FrozenBatchNormAct2d):
            assert name.startswith(prefixes), name
        elif isinstance(module, BatchNormAct2d):
            assert not name.startswith(prefixes), name
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    assert bool(trainable)


def test_frozen_bn_computes_what_bn_in_eval_mode_computes():
    """Frozen BN keeps timm's activation after the norm (ReLU6): the same outputs as BN."""
    torch.manual_seed(0)
    trainable = TimmBackbone(model_name=LITE0, norm="BN").eval()
    for module in trainable.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    frozen = TimmBackbone(model_name=LITE0, norm="FrozenBN")
    frozen.load_state_dict(trainable.state_dict(), strict=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if "bn" in n)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected, actual = trainable(x), frozen(x)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-3, atol=1e-4)


def test_freeze_at_works_on_other_timm_families():
    """A ResNet (timm's FeatureListNet wrapper) and a MobileNetV3."""
    resnet = TimmBackbone(model_name="resnet18", norm="BN", freeze_at=2)
    # Level 1 = conv1/bn1 (stride 2), level 2 = maxpool + layer1 (stride 4): detectron2's stem
    # and res2.
    for name, param in resnet.body.named_parameters():
        assert param.requires_grad == (not name.startswith(("conv1", "bn1", "layer1."))), name
    assert {n: s.stride for n, s in resnet.output_shape().items()} == {"c3": 8, "c4": 16, "c5": 32}
    mobilenet = TimmBackbone(model_name="mobilenetv3_large_100", out_features=["c5"], freeze_at=5)
    assert not any(p.requires_grad for p in mobilenet.parameters())
    assert mobilenet(torch.zeros(1, 3, 64, 64))["c5"].shape == (1, 960, 2, 2)


def test_fpn_gives_p3_to_p7_and_the_largest_input_stride_as_divisibility():
    cfg = load_cfg(TREES / "dw_fcos_Lite0_FPN.yaml")
    fpn = build_backbone(cfg)
    assert fpn.size_divisibility == 32
    assert {n: (s.channels, s.stride) for n, s in fpn.output_shape().items()} == {
        f"p{k}": (cfg.MODEL.FPN.OUT_CHANNELS, 2**k) for k in range(3, 8)
    }
    outputs = fpn(torch.zeros(1, 3, 96, 160))
    assert [tuple(outputs[f"p{k}"].shape[2:]) for k in range(3, 8)] == [
        (12, 20),
        (6, 10),
        (3, 5),
        (2, 3),
        (1, 2),
    ]


def test_yacs_and_lazyconfig_build_the_same_backbone():
    cfg = load_cfg(TREES / "dw_fcos_Lite0_FPN.yaml")
    torch.manual_seed(0)
    yacs = build_backbone(cfg)
    lazy = instantiate(
        L(dw_fpn)(
            bottom_up=L(TimmBackbone)(
                model_name=LITE0, out_features=["c3", "c4", "c5"], norm="FrozenBN", freeze_at=2
            ),
            in_features=["c3", "c4", "c5"],
            out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        )
    )
    assert_same_architecture(yacs, lazy)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model_name": "tf_efficientnet_lite9"}, "'tf_efficientnet_lite9' is not a timm model"),
        ({"model_name": LITE0, "out_features": ["c6"]}, r"out_features \['c6'\] are not"),
        ({"model_name": LITE0, "norm": "GN"}, "norm must be one of"),
        ({"model_name": LITE0, "freeze_at": 6}, r"freeze_at must be in \[0, 5\]"),
        ({"model_name": "vgg11", "drop_path_rate": 0.1}, "vgg11 has no stochastic depth"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimmBackbone(**kwargs)


def test_fpn_input_features_missing_from_the_backbone_name_the_keys():
    cfg = load_cfg(TREES / "dw_fcos_Lite0_FPN.yaml", "MODEL.TIMM.OUT_FEATURES", ["c4", "c5"])
    with pytest.raises(ValueError, match="MODEL.FPN.IN_FEATURES .* MODEL.TIMM.OUT_FEATURES"):
        build_backbone(cfg, ShapeSpec(channels=3))
