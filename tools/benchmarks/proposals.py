"""Average recall of region proposals (AR@100, AR@1000), as a pure function of boxes.

The matching is detectron2's (``COCOEvaluator``'s ``box_proposals`` task, from Detectron): per
image, each ground-truth box is matched to at most one proposal and each proposal to at most
one box, greedily by decreasing IoU; a box's recall at a threshold is whether its match reaches
it. Average recall is the mean recall over the IoU thresholds 0.5:0.05:0.95, as COCO's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.structures import Boxes, pairwise_iou

__all__ = ["COCO_IOU_THRESHOLDS", "matched_ious", "proposal_recall"]

# 0.5, 0.55, ..., 0.95: detectron2's float32 thresholds of its proposal evaluation.
COCO_IOU_THRESHOLDS = tuple(torch.arange(0.5, 0.95 + 1e-5, 0.05, dtype=torch.float32).tolist())


def _tensor(boxes) -> torch.Tensor:
    return (boxes.tensor if isinstance(boxes, Boxes) else torch.as_tensor(boxes)).reshape(-1, 4)


def matched_ious(proposals: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """The IoU of each ground-truth box with the proposal matched to it, greedily: the best
    remaining (proposal, box) pair first, then neither is matched again.

    Args:
        proposals: (R, 4) XYXY boxes.
        gt_boxes: (G, 4) XYXY boxes.

    Returns:
        (G,) float32: the IoU of each matched box in the order of matching, then zeros for the
        ``G - min(R, G)`` boxes left unmatched (the order does not matter to recall).
    """
    overlaps = pairwise_iou(Boxes(proposals.float()), Boxes(gt_boxes.float()))  # (R, G)
    ious = torch.zeros(len(gt_boxes))
    # As detectron2's _evaluate_box_proposals, operation for operation (same ties).
    for j in range(min(len(proposals), len(gt_boxes))):
        max_overlaps, argmax_overlaps = overlaps.max(dim=0)  # best proposal of each box
        gt_ovr, gt_ind = max_overlaps.max(dim=0)  # the best-covered box
        box_ind = argmax_overlaps[gt_ind]
        ious[j] = gt_ovr
        overlaps[box_ind, :] = -1
        overlaps[:, gt_ind] = -1
    return ious


def proposal_recall(
    proposals: Sequence,
    gt_boxes: Sequence,
    limits: Sequence[int] = (100, 1000),
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
) -> dict[str, float]:
    """COCO-style average recall of proposals at several proposal budgets.

    Args:
        proposals: per image, (R_i, 4) XYXY proposals (a tensor or :class:`Boxes`), best first
            (the RPN's order, by decreasing objectness). The first ``limit`` count at AR@limit.
        gt_boxes: per image, (G_i, 4) XYXY ground-truth boxes in the proposals' frame, without
            crowd boxes (COCO's proposal recall leaves them out).
        limits: proposal budgets per image.
        iou_thresholds: the IoUs averaged over (COCO's 0.5:0.05:0.95 by default).

    Returns:
        ``{"AR@<limit>": average recall in percent}``, as detectron2's ``COCOEvaluator``
        reports ``box_proposals``; 0 for every limit when there is no ground-truth box.

    Unlike detectron2's evaluation, an image with boxes but no proposal counts its boxes as
    missed (detectron2 leaves such an image out of the count of boxes).
    """
    if len(proposals) != len(gt_boxes):
        raise ValueError(f"{len(proposals)} images of proposals but {len(gt_boxes)} of boxes")
    proposals = [_tensor(p) for p in proposals]
    gt_boxes = [_tensor(g) for g in gt_boxes]
    num_boxes = sum(len(g) for g in gt_boxes)
    thresholds = torch.as_tensor(iou_thresholds, dtype=torch.float32)
    results = {}
    for limit in limits:
        if num_boxes == 0:
            results[f"AR@{limit}"] = 0.0
            continue
        ious = torch.cat([matched_ious(p[:limit], g) for p, g in zip(proposals, gt_boxes)])
        recalls = (ious[None, :] >= thresholds[:, None]).sum(dim=1) / num_boxes  # (T,)
        results[f"AR@{limit}"] = 100.0 * recalls.mean().item()
    return results
