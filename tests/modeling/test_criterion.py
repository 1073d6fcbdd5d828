"""DWCriterion: its options beyond the release's defaults (the hard center prior, the paper's
per-level top-k candidate bag, a head without a quality branch), hand-checked, and its build
from a yacs config. The release's default computation is tested in test_losses.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from dw_reference import reference_dw_sums_of_scores, reference_giou_iou

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
    criterion = DWCriterion(cfg)
    assert (criterion.center_prior_sigma, criterion.soft_prior) == (2.0, False)
    assert (criterion.candidate_topk_per_level, criterion.neg_iou_thresh) == (9, 0.4)
    assert criterion.pos_weight_num_scale == 5.0  # untouched keys keep the release's value
    assert "candidate_topk_per_level=9" in repr(criterion)


def test_an_underflowed_classifier_keeps_its_positive_weights_and_gradient():
    cls_logits, quality_logits, pred_boxes = (t.float() for t in predictions())
    criterion = DWCriterion()
    args = (POINTS.float(), STRIDES.float())
    gt = ([BOX.float()], [torch.tensor([1])])
    # sigmoid(-200) underflows to 0 in float32: every joint score of the box's class is 0.
    low = (cls_logits - 200).requires_grad_()
    dead = criterion.assign(*args, low, quality_logits, pred_boxes, *gt)
    assert (dead.p_cls == 0).all()
    # By hand, in float64: with v ~ 0, exp(5v) = exp(3v) = 1 and the weights are v * prior
    # normalised over the bag, v = sigmoid(a - 200) sigmoid(b) exp(-5 GIoU loss), where
    # log sigmoid(a - 200) = a - 200 to float64's precision and the 200 cancels.
    log_terms = []
    for i, (point, stride) in enumerate(zip(POINTS.tolist(), STRIDES.tolist())):
        giou, _ = reference_giou_iou(pred_boxes[0, i].double().unbind(), BOX[0].tolist())
        log_v = cls_logits[0, i, 1].double() + F.logsigmoid(quality_logits[0, i].double())
        log_terms.append(log_v - 5 * (1 - giou) + math.log(gaussian_prior(point, (24, 24), stride)))
    expected = torch.softmax(torch.stack(log_terms), 0)
    torch.testing.assert_close(dead.pos_weight.double(), expected, rtol=1e-4, atol=1e-6)
    # The positive loss pulls every candidate's score up: d/da = -0.25 w (1 - s) per box.
    losses = criterion.losses(dead, 1)
    losses["loss_cls_pos"].backward()
    torch.testing.assert_close(low.grad[0, :, 1].double(), -0.25 * expected, rtol=1e-4, atol=1e-6)
    assert (low.grad[0, :, 0] == 0).all()  # the other class is no box's
    check_assignment(dead, "X", 7)  # not a dead state: nothing to refuse
    # The release's rule (the spec's floor of 1e-12 on the weights' denominator, BCE on
    # probabilities) leaves these candidates without weight or gradient.
    low64 = (cls_logits.double() - 200).requires_grad_()
    scores = torch.sigmoid(low64) * torch.sigmoid(quality_logits.double())[..., None]
    (pos_cls, _, _), _ = reference_dw_sums_of_scores(
        POINTS, STRIDES, scores, pred_boxes.double(), [BOX], [torch.tensor([1])], release=True
    )
    pos_cls.backward()
    assert low64.grad.abs().max() < 1e-60


def test_training_from_vanishing_scores_recovers_where_the_release_rule_stays_stuck():
    """A classifier pushed to scores of about 1e-14 (logits -30): the release's weights shrink
    with the scores below its 1e-12 floor, and with them its only gradient up; DW's here keep
    their sum. 20 SGD steps on the logits alone (lr 20)."""
    _, quality_logits, pred_boxes = predictions()
    gt = ([BOX], [torch.tensor([1])])

    def train(loss_of):
        logits = torch.full((1, len(POINTS), 2), -30.0, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.SGD([logits], lr=20.0)
        for _ in range(20):
            optimizer.zero_grad()
            loss_of(logits).backward()
            optimizer.step()
        return torch.sigmoid(logits.detach()[0, :, 1]).max().item()

    def dw(logits):
        assignment = DWCriterion().assign(POINTS, STRIDES, logits, quality_logits, pred_boxes, *gt)
        return DWCriterion().losses(assignment, 1)["loss_cls_pos"]

    def release(logits):
        scores = torch.sigmoid(logits) * torch.sigmoid(quality_logits)[..., None]
        (pos_cls, _, _), _ = reference_dw_sums_of_scores(
            POINTS, STRIDES, scores, pred_boxes, *gt, release=True
        )
        return pos_cls

    assert train(dw) > 0.01
    assert train(release) < 1e-12


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
