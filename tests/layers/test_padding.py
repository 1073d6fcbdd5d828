"""Batched inference computed as one image at a time (dual_weighting.layers.padding).

Exactness is checked in float64, where rounding is ~1e-12 and the effect of the padding ~1: every
config's model, its weights perturbed so that no layer is near its initial constant, must give
each image of a mixed-size batch the predictions and detections it gets alone, and must not with
the mask off (so the comparison can fail).
"""

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.layers import Conv2d
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec, build_model
from detectron2.modeling.backbone.regnet import SE
from detectron2.structures import ImageList
from helpers import (
    CONFIGS,
    MIXED_SIZES,
    YAMLS,
    float64_images,
    largest_relative_difference,
    perturbed,
    thin_model,
)
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from dual_weighting import DWFCOS, DWHead, add_dw_config
from dual_weighting.engine.lazy import build_lazy_model
from dual_weighting.layers import BatchPadding, check_maskable, masked_group_norm

REGNET = CONFIGS / "lazy" / "dw_in_fcos_regnetx_4gf_FPN_1x.py"


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_config_computes_a_mixed_batch_as_one_image_at_a_time(path):
    model = perturbed(thin_model(path))
    images = float64_images()
    assert model.test_mask_padding  # the default
    assert largest_relative_difference(model, images) < 1e-10
    model.test_mask_padding = False
    assert largest_relative_difference(model, images) > 1e-3


@pytest.mark.parametrize("path", [p for p in YAMLS if "refine" in p.name][:1], ids=lambda p: p.name)
def test_detections_of_a_mixed_batch_are_those_of_each_image_alone(path):
    model = perturbed(thin_model(path))
    images = float64_images()
    with torch.no_grad():
        batch = model([{"image": x} for x in images])
        for out, image in zip(batch, images):
            (alone,) = model([{"image": image}])
            a, b = alone["instances"], out["instances"]
            assert b.image_size == a.image_size == tuple(image.shape[-2:])
            assert len(a) == len(b) > 10
            assert torch.equal(a.pred_classes, b.pred_classes)
            torch.testing.assert_close(b.scores, a.scores, rtol=0, atol=1e-9)
            torch.testing.assert_close(b.pred_boxes.tensor, a.pred_boxes.tensor, rtol=0, atol=1e-6)
        # Without the mask, the padded images get detections in cells they do not have alone.
        model.test_mask_padding = False
        plain = model([{"image": x} for x in images])
    assert any(
        not torch.equal(p["instances"].scores, m["instances"].scores)
        for p, m in zip(plain[1:], batch[1:])
    )


def test_regnet_recipe_computes_a_mixed_batch_as_one_image_at_a_time():
    cfg = LazyConfig.load(str(REGNET))
    cfg.model.num_classes = 3
    torch.manual_seed(0)
    model = perturbed(instantiate(cfg.model))
    # RegNetX's stride-2 blocks in float64 on 2 cores: two small images keep it to seconds.
    images = float64_images([(96, 64), (40, 33)])
    assert largest_relative_difference(model, images) < 1e-10
    model.test_mask_padding = False
    assert largest_relative_difference(model, images) > 1e-3


def test_own_extents_at_every_stride_by_hand():
    # Images of 100x60 and 64x64 pad alone to 128x64 and 64x64; the batch is 128x64.
    images = ImageList.from_tensors([torch.zeros(3, 100, 60), torch.zeros(3, 64, 64)], 32)
    backbone = type("B", (), {"size_divisibility": 32, "padding_constraints": {}})()
    padding = BatchPadding.of(images, backbone)
    assert padding.own_sizes == [(128, 64), (64, 64)] and padding.batch_size == (128, 64)
    assert padding.needed
    assert padding.extents(128, 64) == [(128, 64), (64, 64)]
    assert padding.extents(16, 8) == [(16, 8), (8, 8)]  # stride 8
    # Stride 64: 128x64 -> 2x1; the 64x64 image is 1x1 there. Stride 128: 1x1 for both.
    assert padding.extents(2, 1) == [(2, 1), (1, 1)]
    assert padding.extents(1, 1) == [(1, 1), (1, 1)]
    mask = padding.valid_mask(16, 8, "cpu")
    assert mask.shape == (2, 1, 16, 8) and mask.dtype == torch.bool
    assert mask[0].all() and mask[1, 0, :8].all() and not mask[1, 0, 8:].any()
    assert padding.valid_mask(1, 1, "cpu") is None  # every image fills it
    with pytest.raises(ValueError, match="12x8 is not the padded batch \\(128x64\\)"):
        padding.extents(12, 8)
    # Detections come from each image's own cells, row by row as in its map alone.
    wide_tall = BatchPadding([(32, 64), (64, 32)], (64, 64))
    first, second = wide_tall.own_cells(8, 8, "cpu")  # stride 8: 4x8 and 8x4 cells
    assert first.tolist() == list(range(32))
    assert second.tolist() == [r * 8 + c for r in range(8) for c in range(4)]
    assert padding.own_cells(16, 8, "cpu")[0] is None


def test_odd_sizes_follow_stride_two_convolutions():
    # P6/P7 past stride 32: a 96-row image alone has ceil(96 / 64) = 2 rows at stride 64, and
    # a stride-2, padding-1 convolution of its 3 rows at stride 32 makes 2 as well.
    padding = BatchPadding([(96, 32), (160, 32)], (160, 32))
    assert padding.extents(3, 1) == [(2, 1), (3, 1)]
    x = torch.zeros(1, 1, 3, 1)
    assert F.conv2d(x, torch.zeros(1, 1, 3, 3), stride=2, padding=1).shape[-2:] == (2, 1)
    # Square padding (padding_constraints["square_size"]): every image is padded alike.
    images = ImageList.from_tensors([torch.zeros(3, 50, 20), torch.zeros(3, 30, 40)], 32)
    square = type("B", (), {"size_divisibility": 32, "padding_constraints": {"square_size": 64}})
    assert not BatchPadding.of(images, square()).needed


def test_masked_group_norm_equals_group_norm_of_the_cropped_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 6, 5, generator=g, dtype=torch.float64)
    x[1, :, 4:] = float("nan")  # outside image 1's cells: must not leak in
    valid = torch.ones(2, 1, 6, 5, dtype=torch.bool)
    valid[1, :, 4:] = False
    valid[1, :, :, 3:] = False
    weight = torch.rand(8, generator=g, dtype=torch.float64)
    bias = torch.rand(8, generator=g, dtype=torch.float64)
    out = masked_group_norm(x, valid, 4, weight, bias, 1e-5)
    torch.testing.assert_close(out[0], F.group_norm(x[:1], 4, weight, bias, 1e-5)[0])
    torch.testing.assert_close(
        out[1, :, :4, :3], F.group_norm(x[1:, :, :4, :3], 4, weight, bias, 1e-5)[0]
    )
    assert (out[1, :, 4:] == 0).all() and (out[1, :, :, 3:] == 0).all()
    # Half precision in, statistics in float32, half out.
    half = masked_group_norm(x.half(), valid, 4, weight.half(), bias.half(), 1e-5)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half[0].double(), out[0], rtol=0, atol=1e-2)


class _SqueezedBackbone(Backbone):
    """One conv and a squeeze-excitation block: global pooling sees the padding."""

    def __init__(self):
        super().__init__()
        self.conv = Conv2d(3, 8, 3, stride=8, padding=1)
        self.se = SE(8, 2, nn.ReLU)

    def forward(self, x):
        return {"p3": self.se(self.conv(x))}

    def output_shape(self):
        return {"p3": ShapeSpec(channels=8, stride=8)}


def squeezed_model(**kwargs):
    head = DWHead(input_shape=[ShapeSpec(channels=8, stride=8)], num_classes=2, norm="")
    return DWFCOS(
        backbone=_SqueezedBackbone(), head=head, head_in_features=["p3"], num_classes=2,
        pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0], **kwargs,
    ).eval()  # fmt: skip


def test_a_layer_the_mask_cannot_follow_is_refused_by_name():
    images = [{"image": torch.rand(3, h, w) * 255} for h, w in MIXED_SIZES]
    model = squeezed_model()
    with torch.no_grad():
        # One image a batch, or images of one size, need no mask: they run.
        assert len(model(images[:1])) == 1
        assert len(model([images[0], images[0]])) == 2
        with pytest.raises(
            ValueError,
            match=r"backbone\.se\.avg_pool \(AdaptiveAvgPool2d\).*MASK_PADDING_TEST False",
        ):
            model(images)
        # With the mask off, detectron2's plain padding: the mixed batch runs.
        outputs = squeezed_model(test_mask_padding=False)(images)
    assert [o["instances"].image_size for o in outputs] == MIXED_SIZES
    with pytest.raises(ValueError, match="backbone.se.avg_pool"):
        check_maskable(backbone=_SqueezedBackbone())


def build_squeezed_backbone_for_tests(cfg, input_shape):
    return _SqueezedBackbone()


@pytest.fixture
def squeezed_backbone_registered():
    BACKBONE_REGISTRY.register(build_squeezed_backbone_for_tests)
    yield build_squeezed_backbone_for_tests.__name__
    BACKBONE_REGISTRY._obj_map.pop(build_squeezed_backbone_for_tests.__name__)


@pytest.mark.parametrize("kind", ["yacs", "lazy"])
def test_a_config_that_batches_test_images_refuses_at_build(kind, squeezed_backbone_registered):
    if kind == "yacs":
        cfg = get_cfg()
        add_dw_config(cfg)
        cfg.merge_from_list([
            "MODEL.META_ARCHITECTURE", "DWFCOS", "MODEL.DEVICE", "cpu",
            "MODEL.BACKBONE.NAME", squeezed_backbone_registered,
            "MODEL.DW.IN_FEATURES", "['p3']", "MODEL.DW.NORM", "",
        ])  # fmt: skip
        build_model(cfg)  # one image a batch: nothing to check
        cfg.TEST.IMS_PER_BATCH = 4
        with pytest.raises(ValueError, match="backbone.se.avg_pool"):
            build_model(cfg)
        cfg.MODEL.DW.MASK_PADDING_TEST = False
        assert not build_model(cfg).test_mask_padding
    else:
        cfg = OmegaConf.create(
            {"dataloader": {"test": {"batch_size": 1}}, "train": {"device": "cpu"}}
        )
        cfg.model = L(squeezed_model)()
        assert build_lazy_model(cfg).test_mask_padding
        cfg.dataloader.test.batch_size = 4
        with pytest.raises(ValueError, match="backbone.se.avg_pool"):
            build_lazy_model(cfg)
        cfg.model.test_mask_padding = False
        assert not build_lazy_model(cfg).test_mask_padding


def test_masking_lasts_for_its_block_and_only_where_an_image_is_padded():
    head = DWHead(input_shape=[ShapeSpec(channels=32, stride=8)], num_classes=2, norm="GN")
    # Stride 8 of a 64 x 32 batch: 8 x 4 cells, of which image 0 (32 x 32 alone) has 4 x 4.
    features = torch.randn(2, 32, 8, 4, generator=torch.Generator().manual_seed(0))

    def predict():
        # A copy each time: without autograd the masking zeroes the features in place.
        with torch.no_grad():
            return [level[0] for level in head([features.clone()])]

    plain = predict()
    padding = BatchPadding([(32, 32), (64, 32)], (64, 32))
    with padding.masking(head=head):
        masked = predict()
    # Inside the block image 0 is computed from its own cells, not from the batch's padding.
    assert not torch.allclose(masked[0][0, :, :4], plain[0][0, :, :4])
    # After it, the plain computation again.
    assert all(torch.equal(a, b) for a, b in zip(predict(), plain))
    # Images padded no further than alone: masking changes nothing.
    same = BatchPadding([(64, 32), (64, 32)], (64, 32))
    assert not same.needed
    with same.masking(head=head):
        assert all(torch.equal(a, b) for a, b in zip(predict(), plain))
