"""DW-FCOS inference in the form ``torch.export`` records with a dynamic image height and width:
the graph that the ONNX exporter (``torch.onnx.export(..., dynamo=True)``) translates.

``torch.export`` cannot record Python decisions on sizes that depend on the data (how many
candidates pass the score threshold, how many boxes survive NMS), and detectron2's
``ImageList``, ``Boxes`` and ``Instances`` make such decisions (``numel() == 0``, ``len``
checks, padding computed through tensors). So this runs DWFCOS's own layers (backbone, head,
anchor generator, box transform, NMS) on plain tensors, one image, with the same steps as
:meth:`DWFCOS.inference_single_image` followed by detectron2's ``detector_postprocess`` at
scale 1, which :func:`~.adapter.detections` returns. The only reordering is that each level
takes its top-k candidates before the score threshold instead of after, which keeps the same
candidates (the top-k of those above the threshold are those of the top-k that pass it)
except among scores exactly equal at the k-th place. A negative score threshold is refused
(the top-k's filler scores are -1).

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
    """``image`` (3, H, W) normalised and padded at the bottom and right to the backbone's
    size divisibility, (1, 3, H', W'): what ``ImageList.from_tensors`` makes of one image."""
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
    """The detections of ``model`` (a DWFCOS in eval mode, ``test_release_postprocess`` off) on
    one image, as :func:`~.adapter.detections` gives them, in plain tensor operations.

    Args:
        image: (3, H, W) float32, pixel values in the model's input format.

    Returns:
        boxes (K, 4) XYXY in ``image``'s pixels, scores (K,), classes (K,) int64, by decreasing
        score.
    """
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
        # A top-k of fixed k, which records no decision on the image's size: k scores of -1
        # appended, which fail every threshold (scores >= 0), stand in for what a small level
        # lacks; NaN scores (which fail the threshold in eager mode) become -1 too, as topk
        # would rank NaN first.
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
