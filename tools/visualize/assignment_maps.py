"""What Dual Weighting assigns in one image, per ground-truth box and anchor point: the (point,
box) pairs of the criterion's own assignment (:meth:`~dual_weighting.modeling.DWCriterion.assign`)
written into dense per-box maps over all points, for pictures.

Index letters: ``P`` anchor points (FPN levels concatenated, finest first), ``C`` classes,
``G`` ground-truth boxes of the image. Boxes are XYXY pixels of the (resized, padded) input.
"""

from __future__ import annotations

import torch

from dual_weighting.modeling.assignment import DWAssignment


@torch.no_grad()
def dw_assignment_maps(
    assignment: DWAssignment, gt_classes: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-box maps of what DW assigns in one image, from the assignment the losses use.

    Args:
        assignment: :meth:`DWCriterion.assign <dual_weighting.modeling.DWCriterion.assign>` of
            a batch of one image, P points.
        gt_classes: (G,) int64 classes in [0, C) of that image's boxes.

    Returns:
        A dict of tensors; every (G, P) map is 0 (False for ``inside``) where the point is not
        inside the box:

        - ``inside`` (G, P) bool: the box's candidate bag.
        - ``prior`` (G, P): center prior.
        - ``p_cls`` (G, P): joint score ``s * o`` of the box's class.
        - ``p_loc`` (G, P): localisation score ``exp(-loc_score_scale * GIoU loss)``.
        - ``iou`` (G, P): IoU of the point's predicted box with the box.
        - ``pos_weight`` (G, P): positive weight.
        - ``neg_weight`` (P, C): the image's negative weights, 1 where no box claims the entry.
        - ``neg_weight_of_class`` (G, P): column ``gt_classes[g]`` of ``neg_weight``, i.e. the
          negative weight of the box's class at every point (boxes of one class share it).
        - ``scores`` (P, C): joint scores ``sigmoid(cls) * sigmoid(ctr)``.
    """
    a = assignment
    if a.scores.shape[0] != 1:
        raise ValueError(f"dw_assignment_maps draws one image; the assignment has {len(a.scores)}")
    neg_weight = a.neg_weight[0]

    def dense(values):
        out = values.new_zeros(len(gt_classes), a.scores.shape[1])
        out[a.box, a.point] = values
        return out

    inside = dense(torch.ones_like(a.point, dtype=torch.bool))
    return {
        "inside": inside,
        "prior": dense(a.prior),
        "p_cls": dense(a.p_cls),
        "p_loc": dense(a.p_loc),
        "iou": dense(a.iou),
        "pos_weight": dense(a.pos_weight),
        "neg_weight": neg_weight,
        "neg_weight_of_class": neg_weight[:, gt_classes].T,
        "scores": a.scores[0],
    }


def strong_positives(pos_weight: torch.Tensor, mass: float = 0.5) -> torch.Tensor:
    """(G, P) bool: the fewest points of each box that carry ``mass`` (in (0, 1]) of its total
    positive weight (``pos_weight`` (G, P), >= 0): points by decreasing weight (ties in point
    order) up to and including the one crossing the mark, so a box with any positive weight has
    at least one strong positive."""
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    sorted_weight, order = pos_weight.sort(dim=1, descending=True, stable=True)
    before = sorted_weight.cumsum(dim=1) - sorted_weight  # weight of the points ranked higher
    total = sorted_weight.sum(dim=1, keepdim=True)
    keep_sorted = (before < mass * total) & (sorted_weight > 0)
    return torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)


def split_levels(values: torch.Tensor, level_shapes) -> list[torch.Tensor]:
    """Split the last dimension of ``values`` (..., P) into L per-level maps (..., H_l, W_l),
    for the L pairs (H_l, W_l) of ``level_shapes`` (sum H_l * W_l = P)."""
    sizes = [int(h) * int(w) for h, w in level_shapes]
    if sum(sizes) != values.shape[-1]:
        raise ValueError(
            f"levels {list(level_shapes)} hold {sum(sizes)} points, not {values.shape[-1]}"
        )
    parts = values.split(sizes, dim=-1)
    return [p.reshape(*values.shape[:-1], int(h), int(w)) for p, (h, w) in zip(parts, level_shapes)]
