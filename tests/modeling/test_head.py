"""DWHead: shapes, initialisation, box refinement and DCN, usable without a config."""

import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from dual_weighting import DWHead, refine_boxes
from dual_weighting.layers import ModulatedDeformConvPack

STRIDES = (8, 16, 32)
SIZES = ((12, 20), (6, 10), (3, 5))


def make_head(**kwargs):
    shapes = [ShapeSpec(channels=32, stride=s) for s in STRIDES]
    return DWHead(input_shape=shapes, num_classes=5, **kwargs)


def features(n=2):
    torch.manual_seed(0)
    return [torch.randn(n, 32, h, w) for h, w in SIZES]


@pytest.mark.parametrize("box_refine", [False, True])
@pytest.mark.parametrize("dcn", [False, True])
def test_output_shapes_per_level(box_refine, dcn):
    head = make_head(box_refine=box_refine, dcn_on_last_conv=dcn)
    logits, ltrb, centerness = head(features())
    assert [tuple(x.shape) for x in logits] == [(2, 5, h, w) for h, w in SIZES]
    assert [tuple(x.shape) for x in ltrb] == [(2, 4, h, w) for h, w in SIZES]
    assert [tuple(x.shape) for x in centerness] == [(2, 1, h, w) for h, w in SIZES]
    assert all((x >= 0).all() for x in ltrb)


def test_initialisation_follows_the_release():
    head = make_head(prior_prob=0.02, box_bias_init=4.0, box_refine=True)
    torch.testing.assert_close(
        head.cls_logits.bias, torch.full((5,), -math.log(0.98 / 0.02)), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(head.box.bias, torch.full((4,), 4.0))
    assert (head.centerness.bias == 0).all()
    assert (head.box_refine_offsets.bias == 0).all()
    for conv in [*head.cls_tower, *head.reg_tower, head.cls_logits, head.box]:
        assert abs(conv.weight.std().item() - 0.01) < 0.002
    # Tower convs keep a zero bias before their GroupNorm of 32 groups, as the release.
    assert (head.cls_tower[0].bias == 0).all() and (head.reg_tower[3].bias == 0).all()
    assert head.cls_tower[0].norm.num_groups == 32
    assert [p.item() for p in head.scales] == [1.0, 1.0, 1.0]


def test_initial_distances_are_relu_bias_times_stride():
    # With weights ~0.01 the box conv outputs about its bias, 4: distances about 4 strides.
    head = make_head()
    _, ltrb, _ = head([f * 0 for f in features()])
    for x, s in zip(ltrb, STRIDES):
        torch.testing.assert_close(x, torch.full_like(x, 4.0 * s))


def test_refine_applies_refine_boxes_to_the_scaled_distances():
    head = make_head(box_refine=True)
    feats = features()
    with torch.no_grad():
        head.scales[1].fill_(0.7)
        _, ltrb, _ = head(feats)
        reg = head.reg_tower(feats[1])
        plain = torch.relu(0.7 * head.box(reg)) * 16
        expected = refine_boxes(plain, head.box_refine_offsets(reg), 16)
    torch.testing.assert_close(ltrb[1], expected)
    assert not torch.allclose(ltrb[1], plain)


def test_dcn_on_last_conv_only():
    head = make_head(dcn_on_last_conv=True)
    assert isinstance(head.cls_tower[3], ModulatedDeformConvPack)
    assert isinstance(head.reg_tower[3], ModulatedDeformConvPack)
    assert not any(isinstance(m, ModulatedDeformConvPack) for m in head.cls_tower[:3])
    # Zero offsets and mask 0.5 at start: the DCN is half a plain conv of the same weight.
    assert (head.cls_tower[3].conv_offset.weight == 0).all()
    x = torch.randn(1, 32, 6, 7)
    layer = head.cls_tower[3]
    plain = torch.nn.functional.conv2d(x, layer.weight, padding=1) * 0.5
    torch.testing.assert_close(layer(x), torch.relu(layer.norm(plain)), rtol=1e-4, atol=1e-5)


def test_dcn_head_backpropagates_to_offsets():
    head = make_head(dcn_on_last_conv=True, box_refine=True)
    logits, ltrb, centerness = head(features(1))
    loss = sum(x.sum() for x in logits + centerness) + sum(x.mean() for x in ltrb)
    loss.backward()
    assert head.cls_tower[3].conv_offset.weight.grad.abs().sum() > 0
    assert head.box_refine_offsets.weight.grad.abs().sum() > 0


def test_unequal_channels_and_wrong_level_count_are_rejected():
    with pytest.raises(ValueError, match="equally wide"):
        DWHead(
            input_shape=[ShapeSpec(channels=32, stride=8), ShapeSpec(channels=64, stride=16)],
            num_classes=3,
        )
    with pytest.raises(ValueError, match="expects 3 levels"):
        make_head()(features()[:2])
