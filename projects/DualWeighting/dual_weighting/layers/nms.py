"""Class-aware NMS that decides as the DW release's (mmcv 1.x GPU kernel) does, in float32:
box j is dropped for a better box i when ``inter > float32(threshold) * union``. torchvision
compares in double, which differs on ties: boxes (0, 0, 320, 320) and (0, 0, 320, 192) have IoU
0.6 exactly, and torchvision drops the second at threshold 0.6 (float32 0.6 is 0.6000000238)
while the release keeps it. Classes are separated as in mmcv, by shifting every box by
``class * (max coordinate + 1)`` in float32.

Shapes: R = boxes, B = boxes per block, K = boxes of one class kept so far.
"""

import numpy as np
import torch
import torchvision

from .graph_capture import capturing_graph

__all__ = ["batched_nms_float32", "traceable_batched_nms"]

# Boxes per block of the greedy pass (memory O(B * (B + K))): 128 was fastest on the CPU for
# 1,000-5,000 boxes; on a GPU every block and round costs a synchronisation.
_CPU_BLOCK, _GPU_BLOCK = 128, 1024


def _suppresses(a, area_a, b, area_b, threshold):
    """(n, m) bool: box a_i would suppress box b_j, for (n, 4) and (m, 4) float32 boxes, their
    areas and a 0-dim float32 ``threshold``."""
    w = torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])
    h = torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])
    inter = w.clamp_(min=0).mul_(h.clamp_(min=0))
    # Each op rounds to float32 in the kernel's order: (Sa + Sb) - inter, then the product.
    union = (area_a[:, None] + area_b[None, :]).sub_(inter)
    return inter > union.mul_(threshold)


def _greedy_keep(boxes, first_of_class, threshold, block):
    """(R,) bool kept boxes of a greedy NMS over ``boxes`` (R, 4) float32, sorted by class then
    decreasing score; ``first_of_class`` (R,) is the position of each box's class's first box."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    for start in range(0, len(boxes), block):
        end = min(start + block, len(boxes))
        blk, blk_area = boxes[start:end], areas[start:end]
        # Kept boxes of earlier blocks are final and only they suppress; only those of the
        # block's first class can overlap it (classes are shifted apart).
        lo = int(first_of_class[start])
        kept = lo + keep[lo:start].nonzero().squeeze(1)
        alive = ~_suppresses(boxes[kept], areas[kept], blk, blk_area, threshold).any(0)
        # Box j is kept iff alive and no kept box i < j suppresses it: the greedy answer is the
        # only fixed point, and a few rounds from "all alive" settle the block.
        suppress = _suppresses(blk, blk_area, blk, blk_area, threshold).triu_(diagonal=1)
        block_keep = alive
        while True:
            update = alive & ~(suppress & block_keep[:, None]).any(0)
            if torch.equal(update, block_keep):
                break
            block_keep = update
        keep[start:end] = block_keep
    return keep


def batched_nms_float32(boxes, scores, idxs, iou_threshold, *, block_size=None):
    """Class-aware NMS with the release's float32 decision; a drop-in for detectron2's
    ``batched_nms``.

    Args:
        boxes: (R, 4) XYXY boxes with coordinates >= 0, computed in float32.
        scores: (R,) scores.
        idxs: (R,) integer class of each box.
        iou_threshold: IoU (float32) with a kept, better box of its class that drops a box.
        block_size: boxes per block of the greedy pass (default 128 on the CPU, else 1024);
            the result does not depend on it.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score (equal scores in index order);
        a ValueError for mismatched shapes or non-finite values. A traced graph runs
        :func:`traceable_batched_nms` instead of this loop.
    """
    if capturing_graph():
        return traceable_batched_nms(boxes, scores, idxs, iou_threshold)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (R, 4), got {tuple(boxes.shape)}")
    if scores.shape != (len(boxes),) or idxs.shape != (len(boxes),):
        raise ValueError(
            f"scores {tuple(scores.shape)} and idxs {tuple(idxs.shape)} must be ({len(boxes)},)"
        )
    if len(boxes) == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    boxes = boxes.float()
    if not (torch.isfinite(boxes).all() and torch.isfinite(scores).all()):
        raise ValueError("NMS got non-finite boxes or scores")
    shifted = boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]
    # Shifted classes never overlap, so class-major order keeps what mmcv keeps and lets a block
    # skip the other classes' boxes.
    by_score = scores.argsort(descending=True, stable=True)
    order = by_score[idxs[by_score].argsort(stable=True)]
    labels = idxs[order].contiguous()
    first_of_class = torch.searchsorted(labels, labels)
    threshold = torch.tensor(iou_threshold, dtype=torch.float32, device=boxes.device)
    if block_size is None:
        block_size = _CPU_BLOCK if boxes.device.type == "cpu" else _GPU_BLOCK
    keep = _greedy_keep(shifted[order], first_of_class, threshold, block_size)
    kept = order[keep].sort().values
    return kept[scores[kept].argsort(descending=True, stable=True)]


def traceable_batched_nms(boxes, scores, classes, iou_threshold):
    """Class-aware NMS as one ``torchvision.ops.nms`` op (ONNX NonMaxSuppression) on boxes
    shifted apart by class as in eager mode, for traced graphs. With the threshold rounded to
    float32 it decides ``IoU > float32(threshold)``, which agrees with
    :func:`batched_nms_float32` on every exact tie. Arguments and result as its own; no Python
    branch for an empty input, which tracing would freeze.
    """
    boxes = boxes.float()
    # The appended 0 leaves the maximum of clipped boxes unchanged and defines it for no box.
    max_coordinate = torch.cat((boxes.reshape(-1), boxes.new_zeros(1))).max()
    shifted = boxes + (classes.to(boxes) * (max_coordinate + 1))[:, None]
    return torchvision.ops.nms(shifted, scores, float(np.float32(iou_threshold)))
