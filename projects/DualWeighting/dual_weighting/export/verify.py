"""Whether an exported model detects what the PyTorch model detects.

Shapes: K detections, each a box (4,) XYXY in pixels, a score and an integer class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adapter import detections

__all__ = [
    "BOX_TOLERANCE",
    "SCORE_TOLERANCE",
    "DetectionMatch",
    "match_detections",
    "verify_exported",
]

# Box coordinates may differ by this fraction of the image's longer side (0.032 px at 320 px).
# Other float32 kernels (ONNX Runtime's convolutions; grid_sample for box refine's read) round
# differently, and box refine magnifies that where a side is read at the edge of the feature
# map, whose values fall from the image's width to 0 (outside) within one cell: measured up to
# 1.6e-5 of the image size (3.4e-3 px at 213 px) on random R-50 models under ONNX Runtime,
# under 1e-3 px without refine.
BOX_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-4


@dataclass
class DetectionMatch:
    """The result of :func:`match_detections`.

    Attributes:
        expected, actual: number of detections of each.
        unmatched: reference detections without a partner (same class, box and score within the
            tolerances) among the exported ones.
        box_diff: largest coordinate difference of matched pairs, pixels.
        score_diff: largest score difference of matched pairs.
    """

    expected: int
    actual: int
    unmatched: int
    box_diff: float
    score_diff: float

    @property
    def equal(self) -> bool:
        return self.unmatched == 0 and self.expected == self.actual

    def __str__(self):
        verdict = "equal" if self.equal else "DIFFERENT"
        return (
            f"{verdict}: {self.actual} detections for {self.expected} expected, "
            f"{self.unmatched} unmatched; largest box difference {self.box_diff:.2e} px, "
            f"score difference {self.score_diff:.2e}"
        )


def match_detections(expected, actual, image_size) -> DetectionMatch:
    """Pair each detection of ``expected`` with one of ``actual`` of the same class whose box
    is within ``BOX_TOLERANCE * max(image_size)`` px and score within ``SCORE_TOLERANCE``.

    Both are sorted by score; two detections whose scores are equal to rounding may come in
    either order (NMS keeps both either way), so pairs are found by value, not by position,
    taking the closest box.

    Args:
        expected, actual: ``(boxes (K, 4), scores (K,), classes (K,))`` tensors.
        image_size: (height, width) of the input image, pixels.
    """
    boxes, scores, classes = (t.detach().cpu().double() for t in expected)
    other_boxes, other_scores, other_classes = (t.detach().cpu().double() for t in actual)
    box_tol = BOX_TOLERANCE * max(image_size)
    free = torch.ones(len(other_boxes), dtype=torch.bool)
    unmatched, box_diff, score_diff = 0, 0.0, 0.0
    for box, score, cls in zip(boxes, scores, classes):
        dist = (other_boxes - box).abs().amax(dim=1)
        fits = (
            free
            & (other_classes == cls)
            & (dist <= box_tol)
            & ((other_scores - score).abs() <= SCORE_TOLERANCE)
        )
        if not fits.any():
            unmatched += 1
            continue
        j = int(torch.where(fits, dist, torch.inf).argmin())
        free[j] = False
        box_diff = max(box_diff, float(dist[j]))
        score_diff = max(score_diff, float((other_scores[j] - score).abs()))
    return DetectionMatch(len(boxes), len(other_boxes), unmatched, box_diff, score_diff)


def verify_exported(model, detector, image):
    """Compare ``detector`` (an exported model, ``detector(image) -> (boxes, scores,
    classes)``) with ``model`` (the PyTorch DWFCOS) on ``image`` and on its top-left crop of 3/4
    of each side, made odd: a size the model was not traced at, nor a multiple of 32.

    Args:
        image: (3, H, W) float32, on the model's device.

    Returns:
        ``[((H, W), DetectionMatch), ...]`` for the image and the crop.
    """
    height, width = image.shape[-2:]
    results = []
    for im in (image, image[:, : (3 * height // 4) | 1, : (3 * width // 4) | 1]):
        with torch.no_grad():
            expected = detections(model, im)
        size = tuple(im.shape[-2:])
        results.append((size, match_detections(expected, detector(im), size)))
    return results
