"""Dual Weighting (DW) label assignment as pure tensor functions (docs/DW_SPEC.md, "Training
targets and losses"): which (point, box) pairs are candidates, and how positive and how negative
each prediction is. :mod:`.losses` consumes it; :class:`.criterion.DWCriterion` runs both.

Shapes: ``N`` images, ``P`` anchor points (all levels), ``C`` classes, ``G`` boxes of an image
(padded to the batch's largest count), ``K`` (image, point, box) pairs with the point strictly
inside the box. Only these pairs get a prior, an IoU or a weight (any other pair has prior 0,
so positive weight 0 and negative weight 1): the dense work is one (N, P, G) bool mask, never
(P, G, C), and per-box reductions are segment reductions over the flat box id ``n * G + g``.
Boxes are XYXY pixels; distances (left, top, right, bottom) are pixels too.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn.utils.rnn import pad_sequence

__all__ = [
    "DWAssignment",
    "aligned_giou_iou",
    "center_prior",
    "decode_ltrb",
    "dw_assign",
    "inside_pairs",
    "negative_weights",
    "positive_weights",
]


def inside_pairs(points: torch.Tensor, boxes: torch.Tensor):
    """Three (K,) int64 tensors ``(image, point, box)``, sorted so, of the pairs whose (P, 2)
    ``points`` lie strictly inside the (N, G, 4) ``boxes``; an all-zero padding box holds none.
    """
    px = points[None, :, 0, None]  # (1, P, 1)
    py = points[None, :, 1, None]
    x1, y1, x2, y2 = (boxes[:, None, :, i] for i in range(4))  # each (N, 1, G)
    # a - b > 0 exactly when a > b: the test "l, t, r, b > 0" without (N, P, G, 4) floats.
    inside = px > x1  # (N, P, G)
    inside &= px < x2
    inside &= py > y1
    inside &= py < y2
    return torch.nonzero(inside, as_tuple=True)


def center_prior(
    points: torch.Tensor, strides: torch.Tensor, box_centers: torch.Tensor, mu: float, sigma: float
) -> torch.Tensor:
    """(K,) fixed Gaussian center prior ``prod_{x, y} exp(-((p - c) / s - mu)^2 / (2 sigma^2))``
    of the (K, 2) ``points`` p with (K,) ``strides`` s and their boxes' (K, 2) centres c."""
    z = (points - box_centers) / strides[:, None] - mu
    # A product, as the spec: exp of the sum would round differently near underflow.
    return torch.exp(-(z * z) / (2.0 * sigma * sigma)).prod(dim=1)


def decode_ltrb(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Boxes ``(x - l, y - t, x + r, y + b)`` from (..., 2) points and (..., 4) distances."""
    x, y = points.unbind(-1)
    left, top, right, bottom = ltrb.unbind(-1)
    return torch.stack((x - left, y - top, x + right, y + bottom), dim=-1)


def aligned_giou_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6):
    """``(giou, iou)`` (K,) of row-aligned (K, 4) XYXY boxes, union and enclosing area clamped
    below at ``eps`` (pixels^2) as MMDetection 2.x's ``bbox_overlaps``, the release's."""
    area_pred = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_target = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])

    inter_wh = (
        torch.minimum(pred[:, 2:], target[:, 2:]) - torch.maximum(pred[:, :2], target[:, :2])
    ).clamp(min=0)
    overlap = inter_wh[:, 0] * inter_wh[:, 1]
    union = (area_pred + area_target - overlap).clamp(min=eps)
    iou = overlap / union

    enclose_wh = (
        torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2])
    ).clamp(min=0)
    enclose = (enclose_wh[:, 0] * enclose_wh[:, 1]).clamp(min=eps)
    giou = iou - (enclose - union) / enclose
    return giou, iou


# The release's hard prior (soft_prior=False): 1 where the Gaussian prior exceeds this, else 0.
_HARD_PRIOR_THRESH = 0.3


def _topk_per_box_and_level(
    prior: torch.Tensor, box_id: torch.Tensor, strides: torch.Tensor, k: int
) -> torch.Tensor:
    """(K,) bool: whether each pair is among the ``k`` of its (box, level, told by stride) with
    the largest ``prior``; equal priors in pair order."""
    _, level = torch.unique(strides, return_inverse=True)
    group = box_id * (int(level.max()) + 1 if len(level) else 1) + level
    order = prior.argsort(descending=True, stable=True)
    order = order[group[order].argsort(stable=True)]  # by group, then by decreasing prior
    sorted_group = group[order]
    rank = torch.arange(len(order), device=prior.device) - torch.searchsorted(
        sorted_group, sorted_group
    )
    keep = torch.zeros_like(box_id, dtype=torch.bool)
    keep[order] = rank < k
    return keep


def _segment_reduce(
    values: torch.Tensor, segment: torch.Tensor, num_segments: int, reduce: str
) -> torch.Tensor:
    """(S,) "amin"/"amax" of (K,) ``values`` by ``segment``; empty segments are left at 0."""
    out = values.new_zeros(num_segments)
    return out.scatter_reduce_(0, segment, values, reduce=reduce, include_self=False)


@torch.no_grad()
def positive_weights(
    v: torch.Tensor,
    prior: torch.Tensor,
    box_id: torch.Tensor,
    num_boxes: int,
    num_scale: float,
    den_scale: float,
    eps: float,
) -> torch.Tensor:
    """(K,) positive weights ``exp(num_scale * v) * v * prior / max(sum_bag exp(den_scale * v)
    * v * prior, eps)`` >= 0, no gradient, of the (K,) pairs' scores ``v = p_cls * p_loc``,
    priors and flat box ids in [0, num_boxes = N * G) (the release: scales 5 and 3)."""
    v = v.detach()
    numerator = torch.exp(num_scale * v) * v * prior
    denominator = v.new_zeros(num_boxes).index_add_(0, box_id, torch.exp(den_scale * v) * v * prior)
    return numerator / denominator.clamp(min=eps)[box_id]


@torch.no_grad()
def negative_weights(
    iou: torch.Tensor,
    box_id: torch.Tensor,
    num_boxes: int,
    target_index: torch.Tensor,
    shape: tuple[int, ...],
    iou_threshold: float,
    eps: float,
) -> torch.Tensor:
    """(N, P, C) = ``shape`` negative weights in (0, 1], no gradient: 1 except where an inside
    pair claims the entry ``target_index`` (flat ``[n, p, class_g]``).

    For a pair with ``iou`` u and thr = ``iou_threshold``: ``t = (1 - u^2) / (1 - thr^2)``,
    min-max normalised over the box's bag (``box_id`` as :func:`positive_weights`') with the
    upper end capped at 1, ``y = (t - t1 + eps) / (t2 - t1 + eps)``; ``y = 1`` where
    ``u < thr``. A scatter "amin" onto ones keeps, per entry, the smallest ``y`` claiming it.
    """
    u = iou.detach()
    t = (1.0 - u * u) / (1.0 - iou_threshold * iou_threshold)
    t_min = _segment_reduce(t, box_id, num_boxes, "amin")[box_id]
    t_max = _segment_reduce(t, box_id, num_boxes, "amax")[box_id].clamp(max=1.0)
    y = (t - t_min + eps) / (t_max - t_min + eps)
    y = torch.where(u < iou_threshold, torch.ones_like(y), y)
    w_neg = u.new_ones(shape).view(-1)
    w_neg.scatter_reduce_(0, target_index, y, reduce="amin", include_self=True)
    return w_neg.view(shape)


class DWAssignment(NamedTuple):
    """The K inside pairs of a batch and their weights (:func:`dw_assign`)."""

    image: torch.Tensor  # (K,) image of each pair
    point: torch.Tensor  # (K,) point of each pair, in [0, P)
    box: torch.Tensor  # (K,) box of each pair, in [0, G_n) of its image
    scores: torch.Tensor  # (N, P, C) joint scores sigmoid(cls) * sigmoid(ctr)
    p_cls: torch.Tensor  # (K,) joint score of the pair's box's class
    p_loc: torch.Tensor  # (K,) exp(-loc_score_scale * GIoU loss)
    iou: torch.Tensor  # (K,) IoU of the point's predicted box with the pair's box
    prior: torch.Tensor  # (K,) center prior (no gradient)
    pos_weight: torch.Tensor  # (K,) positive weight (no gradient)
    neg_weight: torch.Tensor  # (N, P, C) negative weight (no gradient)


def dw_assign(
    points: torch.Tensor,
    strides: torch.Tensor,
    cls_logits: torch.Tensor,
    quality_logits: torch.Tensor | None,
    pred_boxes: torch.Tensor,
    gt_boxes: list[torch.Tensor],
    gt_classes: list[torch.Tensor],
    *,
    center_prior_mu: float,
    center_prior_sigma: float,
    soft_prior: bool,
    candidate_topk_per_level: int,
    loc_score_scale: float,
    pos_weight_num_scale: float,
    pos_weight_den_scale: float,
    neg_iou_thresh: float,
    iou_eps: float = 1e-6,
    pos_weight_eps: float = 1e-12,
    neg_weight_eps: float = 1e-12,
) -> DWAssignment:
    """The scores and the positive and negative weights of a batch, on the inside pairs only.
    The inputs are :meth:`~.criterion.DWCriterion.forward`'s, the hyper-parameters
    :class:`~.criterion.DWCriterion`'s (ties of ``candidate_topk_per_level`` by candidate
    index); the three ``eps`` are the release's (:func:`aligned_giou_iou`,
    :func:`positive_weights`, :func:`negative_weights`).

    Returns:
        A :class:`DWAssignment`. ``scores``, ``p_cls`` and ``p_loc`` keep their gradient; the
        weights, the prior and ``iou`` carry none.
    """
    num_images, num_points, num_classes = cls_logits.shape
    dtype = pred_boxes.dtype
    points = points.to(dtype)
    strides = strides.to(dtype)

    # (N, G, 4) and (N, G); padding is all-zero boxes, which contain no point (inside_pairs).
    boxes = pad_sequence([b.to(dtype) for b in gt_boxes], batch_first=True)
    classes = pad_sequence(list(gt_classes), batch_first=True)
    max_boxes = boxes.shape[1]
    num_flat_boxes = num_images * max_boxes

    img, pt, box = inside_pairs(points, boxes)  # each (K,)
    box_id = img * max_boxes + box  # flat index into N * G
    # index_select on flat indices: faster than advanced indexing, and its backward an index_add.
    pair_boxes = boxes.view(-1, 4).index_select(0, box_id)  # (K, 4)
    pair_points = points.index_select(0, pt)  # (K, 2)
    pair_strides = strides.index_select(0, pt)  # (K,)
    with torch.no_grad():
        box_centers = (pair_boxes[:, :2] + pair_boxes[:, 2:]) / 2
        prior = center_prior(
            pair_points, pair_strides, box_centers, center_prior_mu, center_prior_sigma
        )
    if candidate_topk_per_level > 0:
        keep = _topk_per_box_and_level(prior, box_id, pair_strides, candidate_topk_per_level)
        img, pt, box, box_id, pair_boxes, prior = (
            x[keep] for x in (img, pt, box, box_id, pair_boxes, prior)
        )
    if not soft_prior:
        prior = (prior > _HARD_PRIOR_THRESH).to(prior.dtype)
    point_id = img * num_points + pt  # flat index into N * P
    pair_classes = classes.view(-1).index_select(0, box_id)  # (K,)
    # Flat index of [n, p, class_g]: where the pair reads its score and writes its neg. weight.
    target_index = point_id * num_classes + pair_classes

    scores = torch.sigmoid(cls_logits)  # (N, P, C)
    if quality_logits is not None:
        scores = scores * torch.sigmoid(quality_logits)[..., None]
    p_cls = scores.reshape(-1).index_select(0, target_index)  # (K,)

    pair_pred_boxes = pred_boxes.reshape(-1, 4).index_select(0, point_id)  # (K, 4)
    giou, iou = aligned_giou_iou(pair_pred_boxes, pair_boxes, eps=iou_eps)
    p_loc = torch.exp(-loc_score_scale * (1.0 - giou))  # (K,)

    pos_weight = positive_weights(
        p_cls.detach() * p_loc.detach(),
        prior,
        box_id,
        num_flat_boxes,
        pos_weight_num_scale,
        pos_weight_den_scale,
        pos_weight_eps,
    )
    neg_weight = negative_weights(
        iou, box_id, num_flat_boxes, target_index, scores.shape, neg_iou_thresh, neg_weight_eps
    )

    return DWAssignment(
        img, pt, box, scores, p_cls, p_loc, iou.detach(), prior, pos_weight, neg_weight
    )
