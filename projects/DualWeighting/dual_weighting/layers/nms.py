"""Class-aware NMS that decides as the DW release's (mmcv 1.x) does, in float32.

detectron2's ``batched_nms`` (torchvision) computes the IoU in float32 but compares it with the
threshold in double. The release's ``mmcv.ops.batched_nms`` compares in float32: its GPU kernel,
which produced the published numbers, drops box j for a better box i when
``inter > float32(threshold) * union`` (its CPU kernel tests ``inter / union > float32(threshold)``;
the two agree on every tie and can differ only where the IoU lies within one float32 rounding of
the threshold without equalling it). The difference is the ties: for the boxes (0, 0, 320, 320)
and (0, 0, 320, 192), IoU 61440 / 102400 = 0.6 exactly, torchvision drops the second at
threshold 0.6 (float32 0.6 is 0.6000000238 > 0.6) while the release keeps it.

Like mmcv (below 10,000 boxes; and torchvision up to 1,000 boxes on the CPU, 25,000 on a GPU)
this separates classes by shifting every box by ``class * (max coordinate + 1)`` in float32, so
the IoU comes from the same shifted coordinates as in the release.

Shapes: R = boxes, B = boxes per block, K = boxes of one class kept so far.
"""

import numpy as np
import torch
import torchvision

from .graph_capture import capturing_graph

__all__ = ["batched_nms_float32", "traceable_batched_nms"]

# Boxes per block of the greedy pass. Memory is O(B * (B + K)), not O(R^2). On the CPU the
# (B, B) work within blocks dominates (128 was fastest for 1,000-5,000 boxes); on a GPU every
# block and fixed-point round costs a synchronisation, so fewer, larger blocks.
_CPU_BLOCK, _GPU_BLOCK = 128, 1024


def _suppresses(a, area_a, b, area_b, threshold):
    """(len(a), len(b)) bool: box a_i would suppress box b_j, as mmcv's GPU kernel decides.

    Args:
        a, b: (n, 4) and (m, 4) float32 XYXY boxes; area_a, area_b: (n,) and (m,) their areas.
        threshold: 0-dim float32 tensor.
    """
    w = torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])
    h = torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])
    inter = w.clamp_(min=0).mul_(h.clamp_(min=0))
    # Each op rounds to float32 in the kernel's order: (Sa + Sb) - inter, then the product.
    union = (area_a[:, None] + area_b[None, :]).sub_(inter)
    return inter > union.mul_(threshold)


def _greedy_keep(boxes, first_of_class, threshold, block):
    """Greedy NMS over ``boxes`` (R, 4) float32, sorted by class, then by decreasing score.

    Args:
        first_of_class: (R,) int64, for each box the position of the first box of its class.
        block: boxes per block (B).

    Returns:
        (R,) bool: kept boxes.
    """
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
        # Within the block, box j is kept iff alive and no kept box i < j suppresses it. The
        # greedy answer is the only fixed point of that rule, and iterating from "all alive"
        # settles the first t boxes in t rounds; in practice a few rounds settle the block.
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
        boxes: (R, 4) XYXY boxes with coordinates >= 0 (clipped to the image), any float dtype;
            computed in float32, as detectron2 and mmcv do.
        scores: (R,) scores.
        idxs: (R,) integer class of each box; boxes of different classes never suppress each
            other.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box of its class
            exceeds this (float32) value.
        block_size: boxes per block of the greedy pass (memory O(block_size^2) plus
            O(block_size * kept boxes)); by default 128 on the CPU, 1024 elsewhere. The result
            does not depend on it.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score (equal scores in index order).

    Raises:
        ValueError: for mismatched shapes or non-finite boxes or scores.

    A traced graph (an exported model) cannot record this data-dependent loop: when tracing, it
    runs :func:`traceable_batched_nms`, one graph op deciding the same way, instead.
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
    # Greedy NMS over all shifted boxes by decreasing score, as mmcv runs it, keeps what it
    # keeps class by class: boxes of two classes never overlap. Class-major order lets a block
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
    """Class-aware NMS as one ``torchvision.ops.nms`` op on boxes shifted apart by class, for
    traced graphs: TorchScript keeps the op, ONNX export maps it to NonMaxSuppression.

    The shift is the release's, ``class * (max coordinate + 1)`` in float32, so the IoUs come
    from the same shifted boxes as in eager mode. torchvision compares its float32 IoU with the
    threshold in double; given the threshold rounded to float32, it decides as the release's
    CPU kernel does, ``IoU > float32(threshold)``, which agrees with the eager rule
    (:func:`batched_nms_float32`) on every exact tie, and ONNX Runtime's
    NonMaxSuppression compares in float32 too. An empty input gives an empty output
    (``batched_nms`` has a Python branch for it, which tracing would freeze).

    Args:
        boxes: (R, 4) XYXY boxes, clipped to the image (coordinates >= 0).
        scores, classes: (R,) scores and integer classes.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box of its class
            exceeds this.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    boxes = boxes.float()
    # The appended 0 leaves the maximum of clipped boxes unchanged and defines it for no box.
    max_coordinate = torch.cat((boxes.reshape(-1), boxes.new_zeros(1))).max()
    shifted = boxes + (classes.to(boxes) * (max_coordinate + 1))[:, None]
    return torchvision.ops.nms(shifted, scores, float(np.float32(iou_threshold)))
