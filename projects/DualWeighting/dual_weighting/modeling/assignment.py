"""Dual Weighting (DW) label assignment, as pure tensor functions: which (point, box) pairs are
candidates, and how positive and how negative each prediction is.

Follows docs/DW_SPEC.md ("Training targets and losses"), i.e. the authors' release. The losses
that consume this assignment are in :mod:`.losses`; :class:`.criterion.DWCriterion` holds the
hyper-parameters and runs the two steps (as Mask2Former's criterion runs its matcher).

Index letters, used in every shape below:

- ``N``: images in the batch
- ``P``: anchor points, all FPN levels concatenated
- ``C``: classes
- ``G``: ground-truth boxes of an image, padded to the largest count in the batch
- ``K``: (image, point, box) pairs where the point lies strictly inside the box

Only the ``K`` inside pairs ever get a prior, an IoU or a weight: every other (point, box) pair
has a zero center prior, hence a zero positive weight, and leaves the negative weight at 1. The
dense ``(N, P, G)`` work is a single boolean "inside" mask, and nothing is ever (P, G, C).
Per-box reductions over a box's candidate bag are segment reductions over the flat box id
``n * G + g`` of each pair.

Boxes are XYXY in pixels; predicted distances (left, top, right, bottom) are in pixels too.
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
    """Index triples of the (image, point, box) pairs whose point is strictly inside the box.

    Args:
        points: (P, 2) anchor points (x, y), pixels.
        boxes: (N, G, 4) XYXY boxes, pixels. Padding boxes must contain no point; an all-zero
            box never does, because no x is both > 0 and < 0.

    Returns:
        Three (K,) int64 tensors ``(image, point, box)``, sorted by image, then point, then box.
    """
    px = points[None, :, 0, None]  # (1, P, 1)
    py = points[None, :, 1, None]
    x1, y1, x2, y2 = (boxes[:, None, :, i] for i in range(4))  # each (N, 1, G)
    # For floats, a - b > 0 exactly when a > b, so comparing coordinates is the same test as
    # "all four distances l, t, r, b to the box's sides are > 0", without (N, P, G, 4) floats.
    # In place: one (N, P, G) bool tensor plus one temporary.
    inside = px > x1  # (N, P, G)
    inside &= px < x2
    inside &= py > y1
    inside &= py < y2
    return torch.nonzero(inside, as_tuple=True)


def center_prior(
    points: torch.Tensor,
    strides: torch.Tensor,
    box_centers: torch.Tensor,
    mu: float,
    sigma: float,
) -> torch.Tensor:
    """Fixed Gaussian center prior of each pair, in units of the point's stride.

    Args:
        points: (K, 2) anchor point (x, y) of each pair, pixels.
        strides: (K,) stride of the point's level, pixels.
        box_centers: (K, 2) center (x, y) of the pair's box, pixels.
        mu, sigma: mean and standard deviation of the Gaussian, in strides.

    Returns:
        (K,) ``prod_{x, y} exp(-((p - c) / s - mu)^2 / (2 sigma^2))``, in [0, 1].
    """
    z = (points - box_centers) / strides[:, None] - mu
    # A product of the two per-axis factors, as written in the spec: exp of their sum would
    # round differently near underflow for points far from a large box's center.
    return torch.exp(-(z * z) / (2.0 * sigma * sigma)).prod(dim=1)


def decode_ltrb(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Boxes ``(x - l, y - t, x + r, y + b)`` from (..., 2) points and (..., 4) distances."""
    x, y = points.unbind(-1)
    left, top, right, bottom = ltrb.unbind(-1)
    return torch.stack((x - left, y - top, x + right, y + bottom), dim=-1)


def aligned_giou_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6):
    """Generalised IoU and IoU of row-aligned XYXY boxes.

    Union and enclosing area are clamped below at ``eps``; this is the convention of
    MMDetection 2.x, whose ``bbox_overlaps`` the release uses for its GIoU loss and its IoU.

    Args:
        pred, target: (K, 4) XYXY boxes, pixels.
        eps: lower bound of the union and of the enclosing box's area, pixels^2.

    Returns:
        ``(giou, iou)``, two (K,) tensors; ``giou`` in [-1, 1], ``iou`` in [0, 1].
    """
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
    """(K,) bool: whether each pair is among the ``k`` pairs of its (box, level) with the largest
    ``prior`` (for a Gaussian of mean 0, the nearest the box centre in strides); equal priors in
    pair order. Levels are told apart by their stride."""
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


def _segment_sum(values: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """(S,) sums of (K,) ``values`` grouped by their (K,) ``segment`` id in [0, S)."""
    return values.new_zeros(num_segments).index_add_(0, segment, values)


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
    """Positive weight of each inside pair, normalised over its box's candidate bag.

    ``w = exp(num_scale * v) * v * prior / max(sum_bag exp(den_scale * v) * v * prior, eps)``;
    the release uses 5 above and 3 below. No gradient flows through the result.

    Args:
        v: (K,) positive score ``p_cls * p_loc`` of each pair, in [0, 1].
        prior: (K,) center prior of each pair.
        box_id: (K,) flat box id of each pair, in [0, num_boxes).
        num_boxes: number of flat box ids (``N * G``).
        num_scale, den_scale: exponents' scales in the numerator and the denominator.
        eps: lower bound of the denominator.

    Returns:
        (K,) weights, >= 0.
    """
    v = v.detach()
    numerator = torch.exp(num_scale * v) * v * prior
    denominator = _segment_sum(torch.exp(den_scale * v) * v * prior, box_id, num_boxes)
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
    """Negative weight of every (image, point, class), 1 except where an inside pair claims it.

    For a pair with IoU ``u``: ``t = (1 - u^2) / (1 - thr^2)``, min-max normalised over the box's
    bag with the upper end capped at 1, ``y = (t - t1 + eps) / (t2 - t1 + eps)``; ``y = 1`` where
    ``u < thr`` (the release: thr = 0.5). ``y`` is at most 1, so a scatter "amin" onto ones keeps,
    for every entry, the smallest ``y`` of the boxes of that class that claim the point. No
    gradient flows through the result.

    Args:
        iou: (K,) IoU of each pair's predicted box with the pair's box.
        box_id: (K,) flat box id of each pair, in [0, num_boxes).
        num_boxes: number of flat box ids (``N * G``).
        target_index: (K,) flat index of ``[n, p, class_g]`` in an (N, P, C) tensor.
        shape: ``(N, P, C)``.
        iou_threshold: IoU below which a pair leaves its entry fully negative.
        eps: keeps the min-max normalisation finite for a bag of equal ``t``.

    Returns:
        (N, P, C) weights in (0, 1].
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
    """What DW assigns in a batch: the K inside pairs and their weights (see :func:`dw_assign`)."""

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

    The hyper-parameters are :class:`~.criterion.DWCriterion`'s (the release's values are its
    defaults); the three ``eps`` are the release's constants.

    Args:
        points: (P, 2) candidate locations (x, y), pixels: anchor points, or anchor centres.
        strides: (P,) stride of each candidate's level, pixels.
        cls_logits: (N, P, C) classification logits.
        quality_logits: (N, P) logits of the localisation-quality factor of the joint score
            (FCOS' centerness, used as objectness), or None for a head without one: the joint
            score is then the classification score alone.
        pred_boxes: (N, P, 4) predicted XYXY boxes, pixels.
        gt_boxes: N tensors (G_n, 4), XYXY pixels; G_n may be 0.
        gt_classes: N int64 tensors (G_n,) in [0, C).
        center_prior_mu, center_prior_sigma: center prior's Gaussian, in strides.
        soft_prior: the Gaussian itself (the release's default); False: the release's hard prior,
            1 where the Gaussian exceeds 0.3, else 0.
        candidate_topk_per_level: 0 for the release's bag (every candidate inside the box); k > 0
            for the paper's: per box and level, only the k candidates nearest the box centre
            (in strides; ties by candidate index).
        loc_score_scale: ``p_loc = exp(-loc_score_scale * L)`` with ``L`` the GIoU loss.
        pos_weight_num_scale, pos_weight_den_scale: scales of ``v`` in the positive weight's
            numerator and denominator exponentials.
        neg_iou_thresh: IoU below which a candidate stays fully negative for a box; also where
            the negative weight's ``t(u)`` is 1.
        iou_eps: lower bound of union and enclosing area in (G)IoU, pixels^2.
        pos_weight_eps: lower bound of a bag's positive-weight denominator.
        neg_weight_eps: regulariser of the negative weight's min-max normalisation.

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
    # Gathers with index_select on flat indices: faster than advanced indexing, and its backward
    # is an index_add rather than an accumulating index_put.
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

    # Joint score of every (image, point, class): classification times localisation quality.
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
        iou,
        box_id,
        num_flat_boxes,
        target_index,
        scores.shape,
        neg_iou_thresh,
        neg_weight_eps,
    )

    return DWAssignment(
        img, pt, box, scores, p_cls, p_loc, iou.detach(), prior, pos_weight, neg_weight
    )
