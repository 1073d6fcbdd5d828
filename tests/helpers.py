"""Builders shared by several test modules (not tests themselves)."""

from dual_weighting import DWCriterion
from dual_weighting.modeling.assignment import decode_ltrb


def fcos_dw_losses(points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes, **hp):
    """:class:`DWCriterion`'s losses (hyper-parameters ``hp``, the release's by default) of
    FCOS-style predictions: distances ``box_ltrb`` (N, P, 4) from the points, decoded to boxes as
    DWFCOS decodes them."""
    pred_boxes = decode_ltrb(points.to(box_ltrb), box_ltrb)
    return DWCriterion(**hp)(
        points, strides, cls_logits, ctr_logits, pred_boxes, gt_boxes, gt_classes
    )
