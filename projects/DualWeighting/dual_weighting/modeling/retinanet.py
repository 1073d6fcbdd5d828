"""DW-RetinaNet: detectron2's RetinaNet trained with Dual Weighting instead of IoU matching and
focal loss; all but the training targets and losses is detectron2's. A DW candidate is an
*anchor*, at its centre, with its level's stride, its box decoded by ``Box2BoxTransform``.

Shapes: N images, C classes, L levels, A anchors per location, P = sum_l H_l * W_l * A anchors
in the order of :meth:`DenseDetector._transpose_dense_predictions` (level, row, column, anchor).
"""

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from .candidates import candidate_centers, decode_per_candidate
from .criterion import DWCriterion
from .training import DWTrainingMixin

__all__ = ["DWRetinaNet", "DWRetinaNetHead", "QUALITIES"]

# The quality factor of DW's joint score (MODEL.DW_RETINANET.QUALITY).
QUALITIES = ("none", "objectness")

# RetinaNet's arguments of IoU matching and losses, which DW replaces: not taken, not read.
_UNUSED_RETINANET_ARGUMENTS = (
    "anchor_matcher",
    "focal_loss_alpha",
    "focal_loss_gamma",
    "smooth_l1_beta",
    "box_reg_loss_type",
)


class DWRetinaNetHead(RetinaNetHead):
    """detectron2's RetinaNet head with an objectness branch: one more 3x3 conv on the box tower
    giving A quality logits per location (the joint score's ``sigmoid(quality)``, as FCOS'
    centerness). Same config keys as :class:`RetinaNetHead`; init normal(std 0.01), bias 0.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: list[ShapeSpec],
        num_classes: int,
        num_anchors: int,
        conv_dims: list[int],
        norm="",
        prior_prob: float = 0.01,
    ):
        """Arguments as :class:`RetinaNetHead`'s."""
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            num_anchors=num_anchors,
            conv_dims=conv_dims,
            norm=norm,
            prior_prob=prior_prob,
        )
        self.quality_pred = nn.Conv2d(conv_dims[-1], num_anchors, kernel_size=3, padding=1)
        nn.init.normal_(self.quality_pred.weight, mean=0, std=0.01)
        nn.init.constant_(self.quality_pred.bias, 0)

    def forward(self, features: list[torch.Tensor]):
        """L tensors each of logits (N, A * C, H_l, W_l), anchor deltas (N, A * 4, H_l, W_l)
        and objectness logits (N, A, H_l, W_l) of the L ``features`` (N, D, H_l, W_l)."""
        assert len(features) == self._num_features
        logits, bbox_reg, quality = [], [], []
        for feature in features:
            logits.append(self.cls_score(self.cls_subnet(feature)))
            # One pass for both outputs (a CycleBatchNormList norm advances once per call).
            box_feature = self.bbox_subnet(feature)
            bbox_reg.append(self.bbox_pred(box_feature))
            quality.append(self.quality_pred(box_feature))
        return logits, bbox_reg, quality


@META_ARCH_REGISTRY.register()
class DWRetinaNet(DWTrainingMixin, RetinaNet):
    """RetinaNet whose positives and negatives are weighted by Dual Weighting (Li et al., CVPR
    2022) instead of labelled by IoU with the anchors. A box's candidates are the anchors whose
    *centre* lies strictly inside it (the A anchors of a location: all or none), the prior is in
    strides of the anchor's level, predicted boxes are ``box2box_transform``'s.

    ``quality``: ``"none"`` (the default; it did better in a short comparison, docs/CONFIG.md),
    detectron2's :class:`RetinaNetHead`, joint score ``sigmoid(cls)``; ``"objectness"``,
    :class:`DWRetinaNetHead`, joint score ``sigmoid(cls) * sigmoid(quality)``, in training and
    at inference. With ``"none"``, DW can blow up a head without normalisation (scores exactly 0
    or 1); ``"objectness"`` or GroupNorm in the towers prevented it (docs/CONFIG.md).
    """

    DETECTOR_NAME = "DW-RetinaNet"

    @configurable
    def __init__(
        self,
        *,
        backbone,
        head: nn.Module,
        head_in_features: list[str],
        anchor_generator: nn.Module,
        box2box_transform,
        num_classes: int,
        criterion: DWCriterion | None = None,
        quality: str = "none",
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
        pixel_mean,
        pixel_std,
        vis_period: int = 0,
        input_format: str = "BGR",
    ):
        """
        Args:
            criterion: the training losses; :class:`~.criterion.DWCriterion` with the release's
                hyper-parameters if omitted.
            quality: ``"none"``, with a head that returns (logits, bbox_reg) as
                :class:`RetinaNetHead`; or ``"objectness"``, with a head that returns (logits,
                bbox_reg, quality) as :class:`DWRetinaNetHead`.
            Other arguments as detectron2's :class:`RetinaNet`'s; its ``anchor_matcher`` and
            loss parameters are not accepted.
        """
        if quality not in QUALITIES:
            raise ValueError(f"quality={quality!r}; expected one of {QUALITIES}")
        super().__init__(
            backbone=backbone,
            head=head,
            head_in_features=head_in_features,
            anchor_generator=anchor_generator,
            box2box_transform=box2box_transform,
            anchor_matcher=None,
            num_classes=num_classes,
            test_score_thresh=test_score_thresh,
            test_topk_candidates=test_topk_candidates,
            test_nms_thresh=test_nms_thresh,
            max_detections_per_image=max_detections_per_image,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            vis_period=vis_period,
            input_format=input_format,
        )
        self.criterion = DWCriterion() if criterion is None else criterion
        self.quality = quality

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        for name in _UNUSED_RETINANET_ARGUMENTS:
            del ret[name]
        quality = cfg.MODEL.DW_RETINANET.QUALITY
        if quality == "objectness":
            shapes = ret["backbone"].output_shape()
            ret["head"] = DWRetinaNetHead(cfg, [shapes[f] for f in ret["head_in_features"]])
        ret["criterion"] = DWCriterion(cfg)
        ret["quality"] = quality
        return ret

    def _dense_dims(self) -> list[int]:
        """Channels per anchor of each of the head's outputs."""
        return [self.num_classes, 4] + ([1] if self.quality == "objectness" else [])

    def criterion_inputs(self, features: list[torch.Tensor], predictions):
        """``(points, strides, cls_logits, quality_logits, pred_boxes)`` in float32: anchor
        centres (P, 2) and strides (P,), pixels; logits (N, P, C); quality logits (N, P) or None
        with ``quality="none"``; decoded boxes (N, P, 4), XYXY pixels."""
        logits, deltas, *quality = self._transpose_dense_predictions(
            predictions, self._dense_dims()
        )
        anchors = self.anchor_generator(features)  # L Boxes (H_l * W_l * A, 4)
        points, strides = candidate_centers(anchors, self.anchor_generator.strides)
        pred_boxes = decode_per_candidate(
            self.box2box_transform, torch.cat(deltas, dim=1).float(), Boxes.cat(anchors).tensor
        )
        quality_logits = torch.cat(quality[0], dim=1).squeeze(2).float() if quality else None
        return (points, strides, torch.cat(logits, dim=1).float(), quality_logits, pred_boxes)

    def forward_inference(
        self, images: ImageList, features: list[torch.Tensor], predictions: list[list[torch.Tensor]]
    ) -> list[Instances]:
        """RetinaNet's inference; with ``quality="objectness"`` on the joint score
        ``sigmoid(cls) * sigmoid(quality)``. N Instances in each image's resized frame."""
        if self.quality == "none":
            return super().forward_inference(images, features, predictions)
        logits, deltas, quality = self._transpose_dense_predictions(predictions, self._dense_dims())
        anchors = self.anchor_generator(features)
        results: list[Instances] = []
        for i, image_size in enumerate(images.image_sizes):
            scores = [x[i].sigmoid() * q[i].sigmoid() for x, q in zip(logits, quality)]
            results.append(
                self.inference_single_image(anchors, scores, [x[i] for x in deltas], image_size)
            )
        return results
