"""detectron2's own FCOS trained with DW: its head, anchor points, box transform, inference and
post-processing kept, its losses (FCOS matching, focal loss, GIoU, centerness target) replaced by
the DW criterion, which trains the centerness branch through the joint score as DW does.

Shapes: N images, C classes, P anchor points over all levels.
"""

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.structures import Boxes

from .candidates import candidate_centers, decode_per_candidate
from .criterion import DWCriterion
from .fcos import fcos_arguments
from .training import DWTrainingMixin

__all__ = ["DWLossFCOS"]


@META_ARCH_REGISTRY.register()
class DWLossFCOS(DWTrainingMixin, FCOS):
    """detectron2's :class:`~detectron2.modeling.meta_arch.fcos.FCOS` whose training losses are
    DW's (:class:`~.criterion.DWCriterion`). Unlike :class:`~.meta_arch.DWFCOS`, everything else
    is detectron2's: stride-normalised distances through a ReLU, prior probability 0.01, score
    ``sqrt(cls * ctr)``, torchvision's NMS. Its matching and loss arguments are not accepted.
    """

    DETECTOR_NAME = "DWLossFCOS"

    @configurable
    def __init__(
        self,
        *,
        backbone,
        head,
        head_in_features=None,
        box2box_transform=None,
        num_classes,
        criterion=None,
        test_score_thresh=0.2,
        test_topk_candidates=1000,
        test_nms_thresh=0.6,
        max_detections_per_image=100,
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            criterion: the training losses; :class:`~.criterion.DWCriterion` with the release's
                hyper-parameters if omitted.
            Other arguments mean the same as in detectron2's :class:`FCOS`.
        """
        super().__init__(
            backbone=backbone,
            head=head,
            head_in_features=head_in_features,
            box2box_transform=box2box_transform,
            num_classes=num_classes,
            test_score_thresh=test_score_thresh,
            test_topk_candidates=test_topk_candidates,
            test_nms_thresh=test_nms_thresh,
            max_detections_per_image=max_detections_per_image,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
        )
        self.criterion = DWCriterion() if criterion is None else criterion

    @classmethod
    def from_config(cls, cfg):
        return {**fcos_arguments(cfg), "criterion": DWCriterion(cfg)}

    def criterion_inputs(self, features, predictions):
        """As :meth:`.meta_arch.DWFCOS.criterion_inputs`, boxes decoded by the box transform."""
        logits, deltas, centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        points, strides = candidate_centers(anchors, self.anchor_generator.strides)
        pred_boxes = decode_per_candidate(
            self.box2box_transform, torch.cat(deltas, dim=1).float(), Boxes.cat(anchors).tensor
        )
        return (
            points,
            strides,
            torch.cat(logits, dim=1).float(),
            torch.cat(centerness, dim=1).squeeze(2).float(),
            pred_boxes,
        )
