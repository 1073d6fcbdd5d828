"""detectron2's own FCOS trained with DW: its head, anchor points, box transform, inference and
post-processing kept, its losses (FCOS matching, focal loss, GIoU, centerness target) replaced by
the DW criterion, which trains the centerness branch through the joint score as DW does.

Shapes: N images, C classes, P anchor points over all levels.
"""

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead
from detectron2.structures import Boxes

from .candidates import candidate_centers, decode_per_candidate
from .criterion import DWCriterion
from .training import DWTrainingMixin

__all__ = ["DWLossFCOS"]


@META_ARCH_REGISTRY.register()
class DWLossFCOS(DWTrainingMixin, FCOS):
    """detectron2's :class:`~detectron2.modeling.meta_arch.fcos.FCOS` whose training losses are
    DW's (:class:`~.criterion.DWCriterion`); everything else is detectron2's.

    Unlike :class:`~.meta_arch.DWFCOS` (the release's detector), this keeps detectron2's FCOS
    as it is: distances normalised by the stride (decoded through a ReLU) without a per-level
    scale, the head's prior probability 0.01, and at inference the score ``sqrt(cls * ctr)``
    and torchvision's NMS. Its anchor points are at ``((j + 0.5) s, (i + 0.5) s)`` as DW's. The
    candidates of a box are the anchor points inside it, at their level's stride. detectron2's
    FCOS matching, focal-loss and centerness-target arguments have no meaning here and are not
    accepted.
    """

    DETECTOR_NAME = "FCOS"

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
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        fcos = cfg.MODEL.FCOS
        missing = [f for f in fcos.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(
                f"MODEL.FCOS.IN_FEATURES names {missing}, which backbone "
                f"{cfg.MODEL.BACKBONE.NAME} does not output (it has {sorted(shapes)})"
            )
        input_shape = [shapes[f] for f in fcos.IN_FEATURES]
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"FCOSHead needs equally wide input levels, got channels {channels}")
        head = FCOSHead(
            input_shape=[ShapeSpec(channels=s.channels, stride=s.stride) for s in input_shape],
            conv_dims=[channels.pop()] * fcos.NUM_CONVS,
            num_classes=fcos.NUM_CLASSES,
            prior_prob=fcos.PRIOR_PROB,
            norm=fcos.NORM,
        )
        return {
            "backbone": backbone,
            "head": head,
            "head_in_features": list(fcos.IN_FEATURES),
            "num_classes": fcos.NUM_CLASSES,
            "criterion": DWCriterion(cfg),
            "test_score_thresh": fcos.SCORE_THRESH_TEST,
            "test_topk_candidates": fcos.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": fcos.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    def criterion_inputs(self, features, predictions):
        """The head's predictions as the criterion takes them, in float32.

        Returns:
            ``(points, strides, cls_logits, quality_logits, pred_boxes)``: anchor points (P, 2)
            and their strides (P,) in pixels, logits (N, P, C), centerness logits (N, P), and
            the boxes (N, P, 4) XYXY in pixels that detectron2's box transform decodes.
        """
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
