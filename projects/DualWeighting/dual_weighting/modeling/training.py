"""DW's training step, shared by the meta-architectures trained with DW: through
:class:`DWTrainingMixin` by :class:`~.meta_arch.DWFCOS`, :class:`~.retinanet.DWRetinaNet` and
:class:`~.fcos_dw_loss.DWLossFCOS`, and by :class:`~.rpn.DWRPN`'s ``losses``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from detectron2.utils.events import get_event_storage

from .assignment import DWAssignment
from .criterion import DWCriterion, check_finite_predictions

__all__ = ["DWTrainingMixin", "dw_training_step"]


def dw_training_step(
    criterion: DWCriterion,
    detector: str,
    predictions,
    criterion_inputs: Callable[[], tuple],
    gt_boxes: list[torch.Tensor],
    gt_classes: list[torch.Tensor],
) -> tuple[dict[str, torch.Tensor], DWAssignment]:
    """The DW losses of a batch, after :func:`~.criterion.check_finite_predictions` and
    :meth:`~.criterion.DWCriterion.check` (which name ``detector`` and the iteration).

    ``predictions`` are the head's lists of L per-level tensors; ``criterion_inputs()``, called
    with autocast off, returns the first arguments of :meth:`DWCriterion.forward`, ``gt_boxes``
    and ``gt_classes`` the last. Returns the losses (scalars) and the assignment.
    """
    iteration = get_event_storage().iter
    check_finite_predictions(predictions, detector, iteration)
    # The losses run in float32 with autocast off: exp(5 v) and the BCE's log clamp are not
    # meant for half precision, and CUDA autocast refuses binary_cross_entropy outright.
    with torch.autocast(predictions[0][0].device.type, enabled=False):
        assignment = criterion.assign(*criterion_inputs(), gt_boxes, gt_classes)
        criterion.check(assignment, detector, iteration)
        losses = criterion.losses(assignment, sum(len(b) for b in gt_boxes))
    return losses, assignment


class DWTrainingMixin:
    """``forward_training`` for a detectron2 :class:`DenseDetector` trained with DW: the class
    provides ``self.criterion`` (a :class:`DWCriterion`), ``criterion_inputs(features,
    predictions)`` (its candidates and predictions as the criterion takes them) and
    ``DETECTOR_NAME`` (named in errors). Put it before the detector in the bases."""

    DETECTOR_NAME = "DW"

    def forward_training(self, images, features, predictions, gt_instances):
        """:func:`dw_training_step` of the head's per-level ``predictions`` and N
        ``gt_instances``; ``{"loss_cls_pos", "loss_loc", "loss_cls_neg"}``, scalars."""
        get_event_storage().put_scalar(
            "num_gt_boxes_per_image", sum(len(x) for x in gt_instances) / len(gt_instances)
        )
        losses, _ = dw_training_step(
            self.criterion,
            self.DETECTOR_NAME,
            predictions,
            lambda: self.criterion_inputs(features, predictions),
            [x.gt_boxes.tensor for x in gt_instances],
            [x.gt_classes for x in gt_instances],
        )
        return losses
