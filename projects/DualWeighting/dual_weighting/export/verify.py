"""Whether an exported model detects what the PyTorch model detects. Shapes: K detections."""

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

# Box coordinates may differ by this fraction of the image's longer side: other float32 kernels
# round differently, which box refine magnifies at the feature map's edge (measured up to 1.6e-5
# of the image size on random R-50 models under ONNX Runtime, under 1e-3 px without refine).
BOX_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-4


@dataclass
class DetectionMatch:
    """The result of :func:`match_detections`: detection counts, reference detections without
    a partner, and the largest box (pixels) and score differences of matched pairs."""

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
    """Pair each detection of ``expected`` with the closest of ``actual`` (both ``(boxes,
    scores, classes)``) of the same class, box within ``BOX_TOLERANCE * max(image_size)`` px and
    score within ``SCORE_TOLERANCE``: by value, as scores equal to rounding may swap places."""
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
    """``[((H, W), DetectionMatch)]`` of the exported ``detector`` against the PyTorch
    ``model`` on ``image`` (3, H, W) and its top-left crop of 3/4 of each side, made odd (a size
    not traced at, nor a multiple of 32)."""
    height, width = image.shape[-2:]
    results = []
    for im in (image, image[:, : (3 * height // 4) | 1, : (3 * width // 4) | 1]):
        with torch.no_grad():
            expected = detections(model, im)
        size = tuple(im.shape[-2:])
        results.append((size, match_detections(expected, detector(im), size)))
    return results
