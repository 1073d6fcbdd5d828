"""What Dual Weighting assigns in one image, per ground-truth box and anchor point, for pictures.

The training losses (:func:`~dual_weighting.modeling.dw_losses`) only need the ``K`` (point, box)
pairs whose point is inside the box, and reduce them right away. Here the same pairs, from the
same :func:`~dual_weighting.modeling.dw_assign`, are written into dense per-box maps over all
points, so that a picture (:mod:`.assignment_figure`, ``tools/visualize_assignment.py``) can show
the center prior, the positive weight and the negative weight of every point.

Index letters: ``P`` anchor points (FPN levels concatenated, finest first), ``C`` classes,
``G`` ground-truth boxes of the image. Boxes are XYXY pixels of the (resized, padded) input.
"""

from __future__ import annotations

import torch

from ..modeling.assignment import dw_assign

__all__ = ["dw_assignment_maps", "split_levels", "strong_positives"]


@torch.no_grad()
def dw_assignment_maps(
    points: torch.Tensor,
    strides: torch.Tensor,
    cls_logits: torch.Tensor,
    ctr_logits: torch.Tensor,
    box_ltrb: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    **assign_kwargs,
) -> dict[str, torch.Tensor]:
    """Per-box maps of the DW weights of one image, exactly as :func:`dw_losses` computes them.

    The keyword arguments (``assign_kwargs``) are those of :func:`dw_assign`.

    Args:
        points: (P, 2) anchor points (x, y), pixels.
        strides: (P,) stride of each point's level, pixels.
        cls_logits: (P, C) classification logits.
        ctr_logits: (P,) centerness (objectness) logits.
        box_ltrb: (P, 4) predicted distances (left, top, right, bottom), pixels.
        gt_boxes: (G, 4) XYXY boxes, pixels.
        gt_classes: (G,) int64 classes in [0, C).

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
    num_points = len(points)
    num_boxes = len(gt_boxes)
    a = dw_assign(
        points,
        strides,
        cls_logits[None],
        ctr_logits[None],
        box_ltrb[None],
        [gt_boxes],
        [gt_classes],
        **assign_kwargs,
    )
    box, pt = a.box, a.point
    neg_weight = a.neg_weight[0]

    def dense(values):
        out = values.new_zeros(num_boxes, num_points)
        out[box, pt] = values
        return out

    inside = torch.zeros(num_boxes, num_points, dtype=torch.bool, device=points.device)
    inside[box, pt] = True
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
    """The fewest points of each box that carry ``mass`` of its total positive weight.

    Points are taken by decreasing weight until the ones taken so far reach ``mass`` of the
    box's sum; the point that crosses the mark is included, so a box with any positive weight
    has at least one strong positive. Ties are broken by point order.

    Args:
        pos_weight: (G, P) positive weights, >= 0.
        mass: fraction in (0, 1].

    Returns:
        (G, P) bool.
    """
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    sorted_weight, order = pos_weight.sort(dim=1, descending=True, stable=True)
    before = sorted_weight.cumsum(dim=1) - sorted_weight  # weight of the points ranked higher
    total = sorted_weight.sum(dim=1, keepdim=True)
    keep_sorted = (before < mass * total) & (sorted_weight > 0)
    return torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)


def split_levels(values: torch.Tensor, level_shapes) -> list[torch.Tensor]:
    """Split the last dimension (P points, levels concatenated) into per-level (H_l, W_l) maps.

    Args:
        values: (..., P).
        level_shapes: L pairs (H_l, W_l) with sum H_l * W_l = P.

    Returns:
        L tensors (..., H_l, W_l).
    """
    sizes = [int(h) * int(w) for h, w in level_shapes]
    if sum(sizes) != values.shape[-1]:
        raise ValueError(
            f"levels {list(level_shapes)} hold {sum(sizes)} points, not {values.shape[-1]}"
        )
    parts = values.split(sizes, dim=-1)
    return [p.reshape(*values.shape[:-1], int(h), int(w)) for p, (h, w) in zip(parts, level_shapes)]
