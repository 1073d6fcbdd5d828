"""dw_losses against hand-worked numbers and against the slow, literal reference of the spec
(``reference_dw_losses`` in dw_reference.py, which shares no code with the package)."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from dw_reference import make_case, make_points, reference_dw_losses, reference_dw_sums
from helpers import LOSS_NAMES, losses_and_grads
from helpers import fcos_dw_losses as dw_losses

import dual_weighting.modeling.assignment as assignment
from dual_weighting.modeling.losses import negative_loss


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str = ""):
    """Equal to ``rtol`` relative to the largest magnitude of ``expected`` (elementwise too)."""
    actual, expected = actual.detach().double(), expected.detach().double()
    assert torch.isfinite(actual).all(), what
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale, msg=what)


@pytest.mark.parametrize("bounded_neg_loss", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-7), (torch.float32, 1e-4)])
def test_matches_reference_values_and_gradients(seed, dtype, rtol, bounded_neg_loss):
    case = make_case(seed)
    points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes = case
    expected, expected_grads = losses_and_grads(
        partial(reference_dw_losses, bounded_neg_loss=bounded_neg_loss), *case
    )
    actual, actual_grads = losses_and_grads(
        partial(dw_losses, bounded_neg_loss=bounded_neg_loss),
        points.to(dtype),
        strides.to(dtype),
        cls_logits.to(dtype),
        ctr_logits.to(dtype),
        box_ltrb.to(dtype),
        [b.to(dtype) for b in gt_boxes],
        gt_classes,
    )
    for k, a, e in zip(LOSS_NAMES, actual, expected):
        assert a.dtype == dtype
        assert e.item() > 0, k
        assert_rel_close(a, e, rtol, k)
        for name, ga, ge in zip(("cls", "ctr", "ltrb"), actual_grads[k], expected_grads[k]):
            assert_rel_close(ga, ge, rtol, f"d {k} / d {name}")
    # Each loss reaches the inputs it should: positives through all three, negatives not ltrb.
    assert all(g.abs().sum() > 0 for g in actual_grads["loss_cls_pos"][:2])
    assert actual_grads["loss_loc"][2].abs().sum() > 0
    assert actual_grads["loss_cls_neg"][2].abs().sum() == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_the_bound_replaces_the_normaliser_in_the_random_cases(seed):
    """With saturated scores the mass sum(w_neg q^2) exceeds sum(1 - w_neg), so the bounded
    case above really divides by it; the bounded loss is at most the largest BCE(q, 0)."""
    case = make_case(seed)
    _, (_, neg_norm, score_mass) = reference_dw_sums(*case)
    assert score_mass > 2 * max(neg_norm, 1.0)
    bounded = dw_losses(*case, bounded_neg_loss=True)["loss_cls_neg"]
    release = dw_losses(*case)["loss_cls_neg"]
    assert bounded.item() == pytest.approx(release.item() * max(neg_norm, 1.0) / score_mass)
    q = torch.sigmoid(case[2]) * torch.sigmoid(case[3])[..., None]
    assert bounded.item() <= F.binary_cross_entropy(q, torch.zeros_like(q), reduction="none").max()


def test_edge_cases_are_exercised():
    """The random case really has the edge cases the reference comparison claims to cover."""
    points, _, cls_logits, ctr_logits, box_ltrb, gt_boxes, _ = make_case(0)
    img, pt, box = assignment.inside_pairs(points, torch.nn.utils.rnn.pad_sequence(gt_boxes, True))
    per_box = torch.bincount(img * 6 + box, minlength=18).view(3, 6)
    assert per_box[0, 3] == 1  # tiny box: one point
    assert per_box[0, 4] == 0  # no point
    assert per_box[0, 5] == len(points)  # image-sized box: all points
    assert per_box[1].sum() == 0  # image without boxes
    # Points claimed by both same-class boxes 1 and 2 of image 0, some with IoU >= 0.5.
    both = set(pt[(img == 0) & (box == 1)].tolist()) & set(pt[(img == 0) & (box == 2)].tolist())
    assert len(both) > 5
    # Saturated logits inside bags.
    assert (cls_logits[0, pt[img == 0]].abs() == 50).any()
    assert (ctr_logits[0, pt[img == 0]].abs() == 50).any()
    boxes = assignment.decode_ltrb(points[pt], box_ltrb[img, pt])
    iou = assignment.aligned_giou_iou(
        boxes, torch.nn.utils.rnn.pad_sequence(gt_boxes, True)[img, box]
    )[1]
    assert ((iou > 0.5).sum() > 20) and ((iou < 0.5).sum() > 20)


# ---------------------------------------------------------------------------------------------
# Hand-worked cases
# ---------------------------------------------------------------------------------------------


def test_hand_one_point_one_box():
    # Point (4, 4), stride 8; box (0, 0, 10, 12) of class 1 among C = 2; prediction
    # (l, t, r, b) = (3, 2, 5, 6) -> box (1, 2, 9, 10).
    points = torch.tensor([[4.0, 4.0]], dtype=torch.float64)
    strides = torch.tensor([8.0], dtype=torch.float64)
    cls_logits = torch.tensor([[[0.3, -0.2]]], dtype=torch.float64)
    ctr_logits = torch.tensor([[0.4]], dtype=torch.float64)
    box_ltrb = torch.tensor([[[3.0, 2.0, 5.0, 6.0]]], dtype=torch.float64)
    gt_boxes = [torch.tensor([[0.0, 0.0, 10.0, 12.0]], dtype=torch.float64)]
    gt_classes = [torch.tensor([1])]
    out = dw_losses(points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes)

    # Center (5, 6): offsets in strides (-1/8, -2/8).
    prior = math.exp(-((1 / 8) ** 2) / (2 * 1.11**2)) * math.exp(-((2 / 8) ** 2) / (2 * 1.11**2))
    # Areas 8 * 8 = 64 and 10 * 12 = 120, overlap 8 * 8 = 64, union 120, enclosing box = gt (120).
    iou = 64 / 120
    giou = iou - (120 - 120) / 120
    loc_loss = 1 - giou  # 7 / 15
    p_loc = math.exp(-5 * loc_loss)
    o = sigmoid(0.4)
    q = [sigmoid(0.3) * o, sigmoid(-0.2) * o]
    p_cls = q[1]
    v = p_cls * p_loc
    # A one-point bag: w = exp(5v) v prior / (exp(3v) v prior) = exp(2v).
    w_pos = math.exp(5 * v) * v * prior / (math.exp(3 * v) * v * prior)
    assert w_pos == pytest.approx(math.exp(2 * v), rel=1e-12)
    # u >= 0.5, but t_min = t_max in a one-point bag, so y = (0 + 1e-12) / (0 + 1e-12) = 1:
    # every negative weight stays 1 and sum(1 - w_neg) = 0 is clamped to 1.
    w_neg = [1.0, 1.0]
    neg_norm = max(sum(1 - w for w in w_neg), 1.0)

    expected_pos_cls = 0.25 * w_pos * -math.log(p_cls) / 1
    expected_loc = 0.25 * w_pos * 5 * loc_loss / 1
    expected_neg = sum(w * qc**2 * -math.log(1 - qc) for w, qc in zip(w_neg, q)) / neg_norm
    assert out["loss_cls_pos"].item() == pytest.approx(expected_pos_cls, rel=1e-12)
    assert out["loss_loc"].item() == pytest.approx(expected_loc, rel=1e-12)
    assert out["loss_cls_neg"].item() == pytest.approx(expected_neg, rel=1e-12)


def test_hand_three_points_one_box():
    # Box (0, 0, 24, 12), class 0 of C = 1; points (4, 4), (12, 4), (20, 4), stride 8.
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0]], dtype=torch.float64)
    strides = torch.full((3,), 8.0, dtype=torch.float64)
    x_cls, x_ctr = [0.5, 1.0, -1.0], [0.2, -0.3, 0.1]
    cls_logits = torch.tensor(x_cls, dtype=torch.float64).view(1, 3, 1)
    ctr_logits = torch.tensor([x_ctr], dtype=torch.float64)
    box_ltrb = torch.tensor(
        [[[4.0, 4.0, 19.0, 8.0], [10.0, 3.0, 10.0, 7.0], [4.0, 2.0, 6.0, 4.0]]],
        dtype=torch.float64,
    )
    gt_boxes = [torch.tensor([[0.0, 0.0, 24.0, 12.0]], dtype=torch.float64)]
    out = dw_losses(
        points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, [torch.tensor([0])]
    )

    # Predicted boxes: (0, 0, 23, 12), (2, 1, 22, 11), (16, 2, 26, 8); gt area 24 * 12 = 288.
    # p0: overlap 23 * 12 = 276, union 288, enclosing 288.
    # p1: overlap 20 * 10 = 200, union 288, enclosing 288.
    # p2: overlap 8 * 6 = 48, area 10 * 6 = 60, union 60 + 288 - 48 = 300, enclosing 26 * 12 = 312.
    iou = [276 / 288, 200 / 288, 48 / 300]
    giou = [iou[0], iou[1], iou[2] - (312 - 300) / 312]
    # Center (12, 6): offsets in strides (-1, -1/4), (0, -1/4), (1, -1/4).
    prior = [math.exp(-(dx**2 + 0.25**2) / (2 * 1.11**2)) for dx in (-1.0, 0.0, 1.0)]
    q = [sigmoid(a) * sigmoid(b) for a, b in zip(x_cls, x_ctr)]
    p_loc = [math.exp(-5 * (1 - gi)) for gi in giou]
    v = [qi * pl for qi, pl in zip(q, p_loc)]
    den = sum(math.exp(3 * vi) * vi * pr for vi, pr in zip(v, prior))
    w_pos = [math.exp(5 * vi) * vi * pr / den for vi, pr in zip(v, prior)]
    # t = (1 - u^2) / 0.75; p2 has u < 0.5 so t > 1 there and t2 = min(1, max t) = 1.
    t = [(1 - u**2) / 0.75 for u in iou]
    t1, t2 = t[0], 1.0
    assert min(t) == t1 and max(t) > 1
    w_neg = [1e-12 / (t2 - t1 + 1e-12), (t[1] - t1 + 1e-12) / (t2 - t1 + 1e-12), 1.0]
    assert 0 < w_neg[1] < 1
    neg_norm = max(sum(1 - w for w in w_neg), 1.0)
    assert neg_norm > 1

    expected_pos_cls = 0.25 * sum(w * -math.log(qi) for w, qi in zip(w_pos, q))
    expected_loc = 0.25 * sum(w * 5 * (1 - gi) for w, gi in zip(w_pos, giou))
    expected_neg = sum(w * qi**2 * -math.log(1 - qi) for w, qi in zip(w_neg, q)) / neg_norm
    assert out["loss_cls_pos"].item() == pytest.approx(expected_pos_cls, rel=1e-12)
    assert out["loss_loc"].item() == pytest.approx(expected_loc, rel=1e-12)
    assert out["loss_cls_neg"].item() == pytest.approx(expected_neg, rel=1e-12)


def test_smallest_negative_weight_stands():
    # Image of 3 points, C = 2. Boxes 0 and 1 (class 0) both claim points 0, 1, 2; box 2 (class 1)
    # claims them too. Each bag has an IoU < 0.5 point, so t2 = min(1, max t) = 1 in all three.
    iou = [0.9, 0.6, 0.2, 0.7, 0.95, 0.1, 0.6, 0.8, 0.3]
    point = [0, 1, 2, 1, 2, 0, 1, 2, 0]
    cls = [0, 0, 0, 0, 0, 0, 1, 1, 1]
    box_id = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    target = torch.tensor([p * 2 + c for p, c in zip(point, cls)])
    w = assignment.negative_weights(
        torch.tensor(iou, dtype=torch.float64), box_id, 3, target, (1, 3, 2), 0.5, 0.0
    )

    def t(u):
        return (1 - u**2) / 0.75

    a = (t(0.6) - t(0.9)) / (1 - t(0.9))  # box 0, point 1
    b = (t(0.7) - t(0.95)) / (1 - t(0.95))  # box 1, point 1
    c = (t(0.6) - t(0.8)) / (1 - t(0.8))  # box 2, point 1
    assert 0 < b < a < 1
    expected = [
        [min(0.0, 1.0), 1.0],  # point 0: box 0's y = 0 stands over box 1's later y = 1
        [min(a, b), c],  # point 1: the smaller of the two class-0 boxes' y
        [min(1.0, 0.0), 0.0],  # point 2
    ]
    torch.testing.assert_close(
        w, torch.tensor([expected], dtype=torch.float64), rtol=1e-12, atol=1e-12
    )


def test_without_boxes_only_the_negative_loss_remains():
    points, strides, cls_logits, ctr_logits, box_ltrb, _, _ = make_case(0)
    cls_logits.requires_grad_()
    box_ltrb.requires_grad_()
    empty = [torch.zeros(0, 4, dtype=torch.float64)] * 3
    no_cls = [torch.zeros(0, dtype=torch.int64)] * 3
    out = dw_losses(points, strides, cls_logits, ctr_logits, box_ltrb, empty, no_cls)
    assert out["loss_cls_pos"].item() == 0 and out["loss_loc"].item() == 0
    q = torch.sigmoid(cls_logits) * torch.sigmoid(ctr_logits)[..., None]
    # Every weight 1: sum(1 - w) = 0, clamped to 1.
    expected = (q**2 * F.binary_cross_entropy(q, torch.zeros_like(q), reduction="none")).sum()
    assert out["loss_cls_neg"].item() == pytest.approx(expected.item(), rel=1e-12)
    # Still part of the graph (what DistributedDataParallel needs), with zero gradients.
    (gc, gb) = torch.autograd.grad(out["loss_loc"] + out["loss_cls_pos"], (cls_logits, box_ltrb))
    assert gc.abs().sum() == 0 and gb.abs().sum() == 0


def test_gradcheck_with_frozen_weights(monkeypatch):
    """gradcheck of the losses as defined: the weights held at their values at the input."""
    points, strides = make_points(strides=(16, 32))
    g = torch.Generator().manual_seed(3)
    num_points = points.shape[0]
    gt_boxes = [
        torch.tensor([[5.0, 3.0, 60.0, 50.0], [30.0, 20.0, 90.0, 60.0]], dtype=torch.float64),
        torch.zeros(0, 4, dtype=torch.float64),
    ]
    gt_classes = [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.int64)]
    cls_logits = torch.randn(2, num_points, 2, generator=g, dtype=torch.float64)
    ctr_logits = torch.randn(2, num_points, generator=g, dtype=torch.float64)
    box_ltrb = 4 + 30 * torch.rand(2, num_points, 4, generator=g, dtype=torch.float64)
    # Image 0 predicts noisy versions of box 0, so that some pairs have IoU >= 0.5.
    x1, y1, x2, y2 = gt_boxes[0][0]
    px, py = points.unbind(1)
    sides = torch.stack((px - x1, py - y1, x2 - px, y2 - py), 1).abs()
    box_ltrb[0] = sides * (0.8 + 0.4 * torch.rand(num_points, 4, generator=g, dtype=torch.float64))

    frozen = {}
    for name in ("positive_weights", "negative_weights"):
        original = getattr(assignment, name)

        def freeze(*args, _name=name, _original=original, **kwargs):
            if _name not in frozen:
                frozen[_name] = _original(*args, **kwargs)
            return frozen[_name]

        monkeypatch.setattr(assignment, name, freeze)

    def fn(c, o, b):
        out = dw_losses(points, strides, c, o, b, gt_boxes, gt_classes)
        return tuple(out[k] for k in LOSS_NAMES)

    inputs = tuple(x.requires_grad_() for x in (cls_logits, ctr_logits, box_ltrb))
    fn(*inputs)
    assert frozen["positive_weights"].numel() > 10
    assert (frozen["negative_weights"] < 1).sum() > 0
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_negative_loss_matches_autograd_through_bce(dtype, rtol):
    # Extremes included: 0, below BCE's 1e-12 gradient clamp, 1 - 1e-13, and exactly 1.
    q = torch.tensor([0.0, 1e-30, 1e-13, 1e-6, 0.3, 0.5, 0.9, 1 - 1e-13, 1.0], dtype=dtype)
    q = torch.cat((q, torch.rand(50, dtype=dtype))).requires_grad_()
    w = torch.rand(q.shape, dtype=dtype)
    expected = (w * q**2 * F.binary_cross_entropy(q, torch.zeros_like(q), reduction="none")).sum()
    (expected_grad,) = torch.autograd.grad(expected, q)
    actual = negative_loss(q, w)
    (actual_grad,) = torch.autograd.grad(actual, q)
    assert torch.isfinite(actual_grad).all()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=0)
    torch.testing.assert_close(actual_grad, expected_grad, rtol=rtol, atol=0)


def test_non_contiguous_predictions_give_the_same_losses():
    """Predictions in (N, C, P) memory order, as a head's permuted output, give the same."""
    points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes = make_case(1)
    expected = dw_losses(points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes)
    cls_t = cls_logits.transpose(1, 2).contiguous().transpose(1, 2)
    ltrb_t = box_ltrb.transpose(1, 2).contiguous().transpose(1, 2)
    assert not cls_t.is_contiguous() and not ltrb_t.is_contiguous()
    actual = dw_losses(points, strides, cls_t, ctr_logits, ltrb_t, gt_boxes, gt_classes)
    for k in LOSS_NAMES:
        torch.testing.assert_close(actual[k], expected[k], rtol=1e-12, atol=0)
