"""DCNv2 layer (against a hand-written reference) and the ResNet-FPN P3-P7 backbone, on CPU."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone.resnet import BottleneckBlock
from detectron2.structures import ImageList
from helpers import resnet_fpn_cfg

import dual_weighting.modeling.backbone  # noqa: F401  (registers build_dw_resnet_fpn_backbone)
from dual_weighting.layers.deform_conv import ModulatedDeformConv
from dual_weighting.modeling.backbone import ModulatedDeformBottleneckBlock, build_dw_resnet


def _bilinear(img, y, x):
    """Sample (H, W) ``img`` at (y, x) like the DCN kernels: zero outside, per-corner zeros."""
    height, width = img.shape
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return 0.0
    y0, x0 = math.floor(y), math.floor(x)
    value = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                value += wy * wx * float(img[yy, xx])
    return value


def _reference_modulated_deform_conv(x, offset, mask, weight, bias, stride, pad, dil, groups):
    """Loops over every output pixel; offsets read as (dy, dx) per kernel position and group."""
    n_img, channels, _, _ = x.shape
    out_channels, channels_per_group, kh, kw = weight.shape
    out_h, out_w = offset.shape[-2:]
    positions = kh * kw
    deform_groups = mask.shape[1] // positions
    # cols[n, c, k, i, j]: modulated sample of input channel c for kernel position k.
    cols = torch.zeros(n_img, channels, positions, out_h, out_w, dtype=x.dtype)
    for n in range(n_img):
        for c in range(channels):
            g = c // (channels // deform_groups)
            for k in range(positions):
                a, b = divmod(k, kw)
                for i in range(out_h):
                    for j in range(out_w):
                        dy = float(offset[n, g * 2 * positions + 2 * k, i, j])
                        dx = float(offset[n, g * 2 * positions + 2 * k + 1, i, j])
                        y = i * stride - pad + a * dil + dy
                        xx = j * stride - pad + b * dil + dx
                        m = float(mask[n, g * positions + k, i, j])
                        cols[n, c, k, i, j] = _bilinear(x[n, c], y, xx) * m
    out = torch.zeros(n_img, out_channels, out_h, out_w, dtype=x.dtype)
    per_group_out = out_channels // groups
    for o in range(out_channels):
        first = (o // per_group_out) * channels_per_group
        block = cols[:, first : first + channels_per_group]  # (N, Ci / groups, K, Ho, Wo)
        out[:, o] = torch.einsum("nckij,ck->nij", block, weight[o].reshape(channels_per_group, -1))
    return out + bias.view(1, -1, 1, 1)


@pytest.mark.parametrize("stride,pad,dil,groups,deform_groups", [(1, 1, 1, 2, 2), (2, 2, 2, 1, 1)])
def test_modulated_deform_conv_matches_reference(stride, pad, dil, groups, deform_groups):
    torch.manual_seed(0)
    conv = ModulatedDeformConv(
        4, 4, 3, stride, pad, dil, groups=groups, deformable_groups=deform_groups
    ).double()
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    out_h, out_w = (
        (5 + 2 * pad - 2 * dil - 1) // stride + 1,
        (6 + 2 * pad - 2 * dil - 1) // stride + 1,
    )
    # Offsets up to +-3 px, so some samples fall partly or fully outside the image.
    offset = 3 * torch.rand(2, 18 * deform_groups, out_h, out_w, dtype=torch.float64) * 2 - 3
    mask = torch.rand(2, 9 * deform_groups, out_h, out_w, dtype=torch.float64)
    expected = _reference_modulated_deform_conv(
        x, offset, mask, conv.weight.detach(), conv.bias.detach(), stride, pad, dil, groups
    )
    torch.testing.assert_close(conv(x, offset, mask), expected, rtol=1e-9, atol=1e-9)


def test_modulated_deform_conv_offset_order_is_dy_dx():
    conv = ModulatedDeformConv(1, 1, 1, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.arange(12.0).view(1, 1, 3, 4)
    offset = torch.zeros(1, 2, 3, 4)
    offset[:, 0] = 1.0  # dy = +1: every output pixel reads the row below
    out = conv(x, offset, torch.ones(1, 1, 3, 4))
    torch.testing.assert_close(out[0, 0, :2], x[0, 0, 1:])
    assert out[0, 0, 2].abs().sum() == 0  # below the last row is outside the image


def test_modulated_deform_conv_zero_offset_is_conv2d():
    torch.manual_seed(0)
    conv = ModulatedDeformConv(4, 6, 3, stride=2, padding=1, groups=2, norm=torch.nn.Identity())
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(1, 4, 9, 7)
    out = conv(x, torch.zeros(1, 18, 5, 4), torch.ones(1, 9, 5, 4))
    expected = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1, groups=2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="offset has 36 channels"):
        conv(x, torch.zeros(1, 36, 5, 4), torch.ones(1, 18, 5, 4))


def test_fpn_levels_strides_and_sizes():
    backbone = build_backbone(resnet_fpn_cfg(norm="GN"))
    names = ["p3", "p4", "p5", "p6", "p7"]
    shapes = backbone.output_shape()
    assert list(shapes) == names
    assert [s.stride for s in shapes.values()] == [8, 16, 32, 64, 128]
    assert all(s.channels == 32 for s in shapes.values())
    assert backbone.size_divisibility == 32

    images = ImageList.from_tensors([torch.randn(3, 100, 132)], backbone.size_divisibility)
    assert images.tensor.shape[-2:] == (128, 160)
    seen = {}
    backbone.top_block.p6.register_forward_hook(lambda m, inp, out: seen.update(p6_in=inp[0]))
    out = backbone(images.tensor)
    assert list(out) == names
    sizes = [tuple(out[k].shape) for k in names]
    # P6/P7 are 3x3/2 convs with padding 1: odd sizes round up (5 -> 3 -> 2).
    assert sizes == [(1, 32, 16, 20), (1, 32, 8, 10), (1, 32, 4, 5), (1, 32, 2, 3), (1, 32, 1, 2)]
    # P6 is computed from the FPN's P5 output (32 channels), not from res5 (512 channels).
    assert seen["p6_in"] is out["p5"]


def test_dcn_backbone_forward_backward():
    torch.manual_seed(0)
    backbone = build_backbone(
        resnet_fpn_cfg(depth=50, deform=(False, True, True, True), norm="FrozenBN")
    )
    names = [n for n, _ in backbone.named_parameters()]
    assert "bottom_up.res3.0.conv2_offset.weight" in names
    assert "bottom_up.res5.2.conv2_offset.bias" in names
    assert not any("res2" in n and "conv2_offset" in n for n in names)
    assert isinstance(backbone.bottom_up.res4[5].conv2, ModulatedDeformConv)
    assert backbone.bottom_up.res3[0].conv2_offset.out_channels == 27

    # Non-zero offsets so the deformable sampling path is exercised.
    for module in backbone.modules():
        if isinstance(module, ModulatedDeformBottleneckBlock):
            torch.nn.init.normal_(module.conv2_offset.weight, std=0.01)
    out = backbone(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in out.values()).backward()
    block = backbone.bottom_up.res3[0]
    assert block.conv2_offset.weight.grad.abs().sum() > 0
    assert block.conv2.weight.grad.abs().sum() > 0


def test_deform_block_with_zero_offsets_equals_bottleneck():
    # Same parameter names as BottleneckBlock (+ conv2_offset). Zero offsets and mask 1 (mask
    # logits of 1e4; the zero init would give 0.5) make it a plain bottleneck.
    torch.manual_seed(0)
    kwargs = {"bottleneck_channels": 8, "stride": 2, "norm": "FrozenBN"}
    plain = BottleneckBlock(16, 32, **kwargs)
    deform = ModulatedDeformBottleneckBlock(16, 32, **kwargs)
    missing, unexpected = deform.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["conv2_offset.weight", "conv2_offset.bias"] and not unexpected
    with torch.no_grad():
        deform.conv2_offset.bias[18:] = 1e4  # sigmoid -> mask 1
    x = torch.randn(2, 16, 10, 12)
    torch.testing.assert_close(deform(x), plain(x), rtol=1e-5, atol=1e-5)


def test_freeze_at_freezes_stem_and_res2():
    backbone = build_backbone(resnet_fpn_cfg(freeze_at=2))
    bottom_up = backbone.bottom_up
    for module in (bottom_up.stem, bottom_up.res2):
        assert not any(p.requires_grad for p in module.parameters())
        assert any(isinstance(m, FrozenBatchNorm2d) for m in module.modules())
    assert all(p.requires_grad for p in bottom_up.res3.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in bottom_up.res3.modules())


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"deform": (False, True, False, False)}, "ResNet-18 needs"),
        ({"depth": 7}, "DEPTH must be one of"),
    ],
)
def test_invalid_configs_raise(changes, match):
    with pytest.raises(ValueError, match=match):
        build_dw_resnet(resnet_fpn_cfg(**changes), ShapeSpec(channels=3))


def test_non_modulated_dcn_and_missing_in_features_raise():
    cfg = resnet_fpn_cfg(depth=50, deform=(False, False, False, True))
    cfg.MODEL.RESNETS.DEFORM_MODULATED = False
    with pytest.raises(ValueError, match="DCNv2"):
        build_backbone(cfg)
    cfg = resnet_fpn_cfg()
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4", "res5"]
    with pytest.raises(ValueError, match="needs \\['res3'\\]"):
        build_backbone(cfg)
