"""DW-FCOS inference in the form ``torch.export`` records with a dynamic image height and width,
for the ONNX exporter. detectron2's ``ImageList``, ``Boxes`` and ``Instances`` make Python
decisions on data-dependent sizes, which ``torch.export`` cannot record; so this runs DWFCOS's
own layers on plain tensors with the steps of :meth:`DWFCOS.inference_single_image` and
``detector_postprocess`` at scale 1, except that each level takes its top-k before the score
threshold (the same candidates, but for ties at the k-th place).

Shapes: C classes, R candidates after the per-level top-k, K detections.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import batched_nms_float32
from .adapter import ExportError

__all__ = ["DetectionGraph", "graph_detections"]


def _normalised_padded(model, image: torch.Tensor) -> torch.Tensor:
    """``image`` (3, H, W) normalised and padded to (1, 3, H', W') as
    ``ImageList.from_tensors`` pads one image."""
    constraints = getattr(model.backbone, "padding_constraints", {}) or {}
    if constraints.get("square_size", 0) > 0:
        raise ExportError(
            f"The backbone pads images to squares of {constraints['square_size']} px "
            "(padding_constraints square_size), which the exported graph does not do"
        )
    divisor = constraints.get("size_divisibility", model.backbone.size_divisibility)
    x = (image.to(model.pixel_mean) - model.pixel_mean) / model.pixel_std
    if divisor > 1:
        # Symbolic amounts: the padding follows the input's height and width in the graph.
        x = F.pad(x, (0, (-x.shape[-1]) % divisor, 0, (-x.shape[-2]) % divisor))
    return x[None]


def graph_detections(model, image: torch.Tensor):
    """:func:`~.adapter.detections` of ``model`` (a DWFCOS in eval mode,
    ``test_release_postprocess`` off) on one (3, H, W) float32 ``image``, in plain tensor ops."""
    if model.test_score_thresh < 0:
        raise ExportError(
            f"The exported graph needs a score threshold >= 0, got {model.test_score_thresh}"
        )
    height, width = image.shape[-2:]
    features = model.backbone(_normalised_padded(model, image))
    features = [features[f] for f in model.head_in_features]
    logits, box_ltrb, centerness = model._transpose_dense_predictions(
        model.head(features), [model.num_classes, 4, 1]
    )
    boxes, scores, classes = [], [], []
    for level_logits, level_ltrb, level_ctr, anchors in zip(
        logits, box_ltrb, centerness, model.anchor_generator(features)
    ):
        level_scores = (level_logits[0].sigmoid() * level_ctr[0].sigmoid()).flatten()  # (P_l C,)
        # A top-k of fixed k (no decision on the size): k appended scores of -1, which fail
        # every threshold >= 0, fill a small level; NaN scores become -1 (topk ranks NaN first).
        k = model.test_topk_candidates
        padded = torch.cat((level_scores.nan_to_num(-1.0), level_scores.new_full((k,), -1.0)))
        top_scores, top_index = padded.topk(k)
        passed = top_scores > model.test_score_thresh
        top_scores, top_index = top_scores[passed], top_index[passed]
        point = top_index // model.num_classes
        boxes.append(
            model.box2box_transform.apply_deltas(level_ltrb[0][point], anchors.tensor[point])
        )
        scores.append(top_scores)
        classes.append(top_index % model.num_classes)
    boxes, scores, classes = torch.cat(boxes), torch.cat(scores), torch.cat(classes)
    finite = torch.isfinite(boxes).all(dim=1)
    boxes, scores, classes = boxes[finite], scores[finite], classes[finite]
    x1, y1, x2, y2 = boxes.unbind(1)
    boxes = torch.stack(
        (x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)), dim=1
    )
    keep = batched_nms_float32(boxes, scores, classes, model.test_nms_thresh)
    keep = keep[: model.max_detections_per_image]
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    # detector_postprocess drops empty boxes (Boxes.nonempty).
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[nonempty], scores[nonempty], classes[nonempty]


class DetectionGraph(nn.Module):
    """``forward(image) -> (boxes, scores, classes)`` of :func:`graph_detections`, the module
    ``torch.export`` and ``torch.onnx.export(..., dynamo=True)`` take."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image: torch.Tensor):
        return graph_detections(self.model, image)
