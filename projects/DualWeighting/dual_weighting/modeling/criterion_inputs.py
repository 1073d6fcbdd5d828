"""What :class:`~.criterion.DWCriterion` accepts: its input checks (without them a bad input
gives a plausible loss, e.g. a class id ``C`` reads the next candidate's class 0) and the dtype
it computes in. Shapes as in :mod:`.assignment`.
"""

from __future__ import annotations

import torch

__all__ = ["check_criterion_inputs", "criterion_dtype"]

# The predictions, in the order of DWCriterion.assign's arguments.
_PREDICTIONS = ("cls_logits", "quality_logits", "pred_boxes")


def criterion_dtype(*predictions: torch.Tensor | None) -> torch.dtype:
    """The predictions' dtype (float64 if any is), float32 for half precision: in float16 the
    negative loss overflows to inf and scores rounding past 1 make the BCE refuse them.

    Raises:
        ValueError: a prediction is not floating point (named, with its dtype).
    """
    dtype = torch.float32
    for name, x in zip(_PREDICTIONS, predictions):
        if x is None:
            continue
        if not x.is_floating_point():
            raise ValueError(f"DWCriterion: {name} is {x.dtype}; give floating-point predictions")
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _shape_errors(points, strides, cls_logits, quality_logits, pred_boxes, gt_boxes, gt_classes):
    """Messages of the shape, length, dtype and device mistakes (no host read)."""
    if cls_logits.dim() != 3:
        return [f"cls_logits must be (N, P, C), got shape {tuple(cls_logits.shape)}"]
    n, p, c = cls_logits.shape
    expected = {
        "points": (points, (p, 2)),
        "strides": (strides, (p,)),
        "quality_logits": (quality_logits, (n, p)),
        "pred_boxes": (pred_boxes, (n, p, 4)),
    }
    errors = [
        f"{name} must be {shape} (cls_logits is (N, P, C) = {(n, p, c)}), got shape "
        f"{tuple(x.shape)}"
        for name, (x, shape) in expected.items()
        if x is not None and tuple(x.shape) != shape
    ]
    for name, gt in (("gt_boxes", gt_boxes), ("gt_classes", gt_classes)):
        if len(gt) != n:
            errors.append(f"{name} has {len(gt)} tensors but cls_logits has N = {n} images")
    device = cls_logits.device
    for i, (boxes, classes) in enumerate(zip(gt_boxes, gt_classes)):
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            errors.append(f"gt_boxes[{i}] must be (G, 4), got shape {tuple(boxes.shape)}")
        if classes.dim() != 1 or len(classes) != len(boxes):
            errors.append(
                f"gt_classes[{i}] must be ({len(boxes)},) like gt_boxes[{i}], got shape "
                f"{tuple(classes.shape)}"
            )
        if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
            errors.append(f"gt_classes[{i}] is {classes.dtype}; give integer class ids")
        for name, x in ((f"gt_boxes[{i}]", boxes), (f"gt_classes[{i}]", classes)):
            if x.device != device:
                errors.append(f"{name} is on {x.device} but cls_logits on {device}")
    for name, x in (("points", points), ("strides", strides), ("pred_boxes", pred_boxes)):
        if x.device != device:
            errors.append(f"{name} is on {x.device} but cls_logits on {device}")
    return errors


def _first_bad(tensors, bad):
    """``(name[index], value)`` of the first entry of the named ``tensors`` where the mask
    ``bad(x)`` holds; None if none."""
    for name, x in tensors:
        mask = bad(x)
        if mask.any():
            index = tuple(mask.nonzero()[0].tolist())
            return f"{name}[{', '.join(map(str, index))}]", x[index].tolist()
    return None


def check_criterion_inputs(
    points: torch.Tensor,
    strides: torch.Tensor,
    cls_logits: torch.Tensor,
    quality_logits: torch.Tensor | None,
    pred_boxes: torch.Tensor,
    gt_boxes: list[torch.Tensor],
    gt_classes: list[torch.Tensor],
):
    """Raise a ValueError naming the argument, index and value of the first mistake in the
    inputs of :meth:`.criterion.DWCriterion.forward`: shapes, lengths, one device, integer
    classes in [0, C), finite points and boxes, positive strides, logits not NaN. An empty or
    inverted box is no error (it only counts in the normaliser, as in the release). One host
    read; the failing entry is looked up only on error.
    """
    errors = _shape_errors(
        points, strides, cls_logits, quality_logits, pred_boxes, gt_boxes, gt_classes
    )
    if errors:
        raise ValueError("DWCriterion: " + "; ".join(errors))
    num_classes = cls_logits.shape[2]
    logits = [("cls_logits", cls_logits), ("quality_logits", quality_logits)]
    logits = [(name, x) for name, x in logits if x is not None]
    boxes = [(f"gt_boxes[{i}]", b) for i, b in enumerate(gt_boxes)]
    classes = [(f"gt_classes[{i}]", c) for i, c in enumerate(gt_classes)]

    def not_finite(x):
        return ~torch.isfinite(x).all(dim=-1)

    def bad_stride(x):
        return ~(torch.isfinite(x) & (x > 0))

    def bad_class(c):
        return (c < 0) | (c >= num_classes)

    class_range = f"not a class in [0, {num_classes}) (cls_logits has C = {num_classes})"
    checks = [
        ([("points", points)], not_finite, "is {}, not finite"),
        ([("strides", strides)], bad_stride, "is {}, not a positive stride"),
        ([("pred_boxes", pred_boxes)], not_finite, "is {}, not finite"),
        (logits, torch.isnan, "is {}"),
        (boxes, not_finite, "is {}, not finite"),
        (classes, bad_class, "is {}, " + class_range),
    ]
    present = [
        ([(name, x) for name, x in tensors if x.numel()], bad, text)
        for tensors, bad, text in checks
    ]
    flags = [bad(x).any() for tensors, bad, _ in present for _, x in tensors]
    if not flags or not torch.stack(flags).any().item():
        return
    for tensors, bad, text in present:
        found = _first_bad(tensors, bad)
        if found is not None:
            raise ValueError(f"DWCriterion: {found[0]} " + text.format(found[1]))
