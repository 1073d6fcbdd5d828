"""DWCriterion: its options beyond the release's defaults (the hard center prior, the paper's
per-level top-k candidate bag, a head without a quality branch), hand-checked, and its build
from a yacs config. The release's default computation is tested in test_losses.py."""

import math

import pytest
import torch
from detectron2.config import get_cfg

from dual_weighting import DWCriterion, add_dw_config
from dual_weighting.modeling.criterion import check_assignment


def gaussian_prior(point, centre, stride, sigma=1.11):
    return math.prod(
        math.exp(-(((p - c) / stride) ** 2) / (2 * sigma**2)) for p, c in zip(point, centre)
    )


# One box (0, 0, 48, 48), centre (24, 24), holding points of two levels (strides 8 and 16).
BOX = torch.tensor([[0.0, 0.0, 48.0, 48.0]], dtype=torch.float64)
POINTS = torch.tensor(
    [
        [20.0, 20.0],  # stride 8, 0.5 strides off on each axis
        [28.0, 12.0],  # stride 8, (0.5, 1.5)
        [4.0, 4.0],  # stride 8, (2.5, 2.5): far
        [12.0, 28.0],  # stride 8, (1.5, 0.5): ties with the second point
        [24.0, 24.0],  # stride 16, at the centre
        [8.0, 8.0],  # stride 16, (1, 1)
        [40.0, 40.0],  # stride 16, (1, 1): ties with the previous point
    ],
    dtype=torch.float64,
)
STRIDES = torch.tensor([8.0, 8, 8, 8, 16, 16, 16], dtype=torch.float64)


def predictions(num_classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cls_logits = torch.randn(1, len(POINTS), num_classes, generator=g, dtype=torch.float64)
    quality = torch.randn(1, len(POINTS), generator=g, dtype=torch.float64)
    half = 6 + 10 * torch.rand(1, len(POINTS), 2, generator=g, dtype=torch.float64)
    pred_boxes = torch.cat((POINTS - half, POINTS + half), dim=-1)
    return cls_logits, quality, pred_boxes


def assign(criterion, quality=True):
    cls_logits, quality_logits, pred_boxes = predictions()
    return criterion.assign(
        POINTS, STRIDES, cls_logits, quality_logits if quality else None, pred_boxes,
        [BOX], [torch.tensor([1])],
    )  # fmt: skip


def test_soft_prior_is_the_gaussian_and_the_hard_prior_its_threshold_at_0_3():
    soft = assign(DWCriterion())
    expected = [gaussian_prior(p.tolist(), (24, 24), s.item()) for p, s in zip(POINTS, STRIDES)]
    assert soft.point.tolist() == list(range(7))
    torch.testing.assert_close(soft.prior, torch.tensor(expected, dtype=torch.float64))
    # By hand: exp(-2 * 2.5^2 / (2 * 1.11^2)) = 0.0063 for the far point, all others > 0.3
    # except (0.5, 1.5) strides: exp(-(0.25 + 2.25) / 2.4642) = 0.362 (kept).
    assert expected[2] < 0.01 and 0.3 < expected[1] < 0.4
    hard = assign(DWCriterion(soft_prior=False))
    assert hard.prior.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    # The far point keeps its negative weight and gets no positive weight.
    assert hard.pos_weight[2] == 0 and soft.pos_weight[2] > 0


def test_top_k_bag_keeps_the_k_nearest_points_of_each_level():
    a = assign(DWCriterion(candidate_topk_per_level=2))
    # Stride 8: the nearest (0.5, 0.5), then the tie (0.5, 1.5) / (1.5, 0.5) goes to the first
    # point by index. Stride 16: the centre, then the tie (1, 1) / (1, 1) to the first.
    assert a.point.tolist() == [0, 1, 4, 5]
    # The weights are normalised over the smaller bag: what the full bag gives its points
    # differs, and the dropped points stay full negatives.
    full = assign(DWCriterion())
    assert not torch.allclose(a.pos_weight, full.pos_weight[[0, 1, 4, 5]])
    assert torch.all(a.neg_weight[0, [2, 3, 6], 1] == 1)
    # k larger than any bag: the release's bag.
    assert assign(DWCriterion(candidate_topk_per_level=10)).point.tolist() == list(range(7))


def test_without_a_quality_branch_the_joint_score_is_the_class_score():
    cls_logits, _, pred_boxes = predictions()
    boxes, classes = [BOX], [torch.tensor([1])]
    criterion = DWCriterion()
    without = criterion(POINTS, STRIDES, cls_logits, None, pred_boxes, boxes, classes)
    # sigmoid(+inf) is exactly 1: the same computation with a factor of one.
    ones = torch.full(cls_logits.shape[:2], math.inf, dtype=torch.float64)
    with_ones = criterion(POINTS, STRIDES, cls_logits, ones, pred_boxes, boxes, classes)
    assert without == with_ones
    a = assign(criterion, quality=False)
    torch.testing.assert_close(a.scores, cls_logits.sigmoid())


def test_built_from_yacs_keys_of_the_same_names():
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.MODEL.DW.CENTER_PRIOR_SIGMA = 2.0
    cfg.MODEL.DW.SOFT_PRIOR = False
    cfg.MODEL.DW.CANDIDATE_TOPK_PER_LEVEL = 9
    cfg.MODEL.DW.NEG_IOU_THRESH = 0.4
    cfg.MODEL.DW.BOUNDED_NEG_LOSS = True
    criterion = DWCriterion(cfg)
    assert criterion.bounded_neg_loss is True
    assert (criterion.center_prior_sigma, criterion.soft_prior) == (2.0, False)
    assert (criterion.candidate_topk_per_level, criterion.neg_iou_thresh) == (9, 0.4)
    assert criterion.pos_weight_num_scale == 5.0  # untouched keys keep the release's value
    assert "candidate_topk_per_level=9" in repr(criterion)


def test_a_collapsed_classifier_is_refused_with_the_iteration():
    cls_logits, quality_logits, pred_boxes = (t.float() for t in predictions())
    criterion = DWCriterion()
    args = (POINTS.float(), STRIDES.float())
    gt = ([BOX.float()], [torch.tensor([1])])
    # Healthy predictions pass.
    check_assignment(criterion.assign(*args, cls_logits, quality_logits, pred_boxes, *gt), "X", 3)
    # sigmoid(-200) underflows to 0 in float32: every joint score, positive weight and loss is
    # exactly 0 while the predictions stay finite.
    dead = criterion.assign(*args, cls_logits - 200, quality_logits, pred_boxes, *gt)
    assert dead.pos_weight.sum() == 0 and dead.prior.sum() > 0
    assert all(v == 0 for v in criterion.losses(dead, 1).values())
    with pytest.raises(FloatingPointError, match="X training collapsed at iteration=7"):
        check_assignment(dead, "X", 7)
    # With the hard prior, a box whose candidates all have prior 0 has zero weights by design,
    # whatever the scores: not a collapse. Here the box's only candidate is the far point (prior
    # 0 when hard).
    hard = DWCriterion(soft_prior=False).assign(
        POINTS[2:3].float(), STRIDES[2:3].float(), cls_logits[:, 2:3], quality_logits[:, 2:3],
        pred_boxes[:, 2:3], *gt,
    )  # fmt: skip
    assert hard.prior.tolist() == [0.0] and hard.pos_weight.tolist() == [0.0]
    check_assignment(hard, "X", 7)


def test_predicted_boxes_overflowing_float32_are_refused():
    cls_logits, quality_logits, pred_boxes = (t.float() for t in predictions())
    # Finite corners whose area (1e20 squared) overflows float32: a NaN GIoU.
    pred_boxes[0, 0] = torch.tensor([-1e20, -1e20, 1e20, 1e20])
    a = DWCriterion().assign(
        POINTS.float(), STRIDES.float(), cls_logits, quality_logits, pred_boxes,
        [BOX.float()], [torch.tensor([1])],
    )  # fmt: skip
    with pytest.raises(FloatingPointError, match="Y predicted boxes overflow float32"):
        check_assignment(a, "Y", 0)
