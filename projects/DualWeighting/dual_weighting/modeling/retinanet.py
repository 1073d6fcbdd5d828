"""DW-RetinaNet: detectron2's RetinaNet trained with Dual Weighting instead of IoU matching and
focal loss.

Everything but the training targets and losses is detectron2's RetinaNet: backbone, head,
anchors, box transform, inference and post-processing. DW needs candidate locations, their
strides, class and quality logits and predicted boxes (:class:`~.criterion.DWCriterion`);
here a candidate is an *anchor*, located at its centre, with the stride of its level, and its
box is decoded from the anchor with RetinaNet's ``Box2BoxTransform``.

Shapes: N images, C classes, L levels, A anchors per location (9 in detectron2's RetinaNet), P
anchors over all levels, ``P = sum_l H_l * W_l * A``, in the order of
:meth:`DenseDetector._transpose_dense_predictions` (level, then row, column, anchor); G_n
ground-truth boxes of image n.
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

# The quality factor of DW's joint score (MODEL.DW_RETINANET.QUALITY), see DWRetinaNet.
QUALITIES = ("none", "objectness")

# RetinaNet's arguments for its labelling (IoU matching) and its losses, which DW replaces:
# DWRetinaNet neither takes nor reads them (MODEL.RETINANET's IOU_*, FOCAL_LOSS_*,
# SMOOTH_L1_LOSS_BETA and BBOX_REG_LOSS_TYPE have no effect).
_UNUSED_RETINANET_ARGUMENTS = (
    "anchor_matcher",
    "focal_loss_alpha",
    "focal_loss_gamma",
    "smooth_l1_beta",
    "box_reg_loss_type",
)


class DWRetinaNetHead(RetinaNetHead):
    """detectron2's RetinaNet head with an objectness branch: one more 3x3 conv on the box tower
    giving A quality logits per location, as FCOS' centerness is used by DW (an objectness
    factor of the joint score ``sigmoid(cls) * sigmoid(quality)``). Built from the same config
    keys as :class:`RetinaNetHead` (``MODEL.RETINANET.*``); init normal(std 0.01), bias 0, like
    the head's other convs and like the release's centerness conv.
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
        """
        Args:
            features: L tensors (N, D, H_l, W_l), finest first.

        Returns:
            logits: L tensors (N, A * C, H_l, W_l).
            bbox_reg: L tensors (N, A * 4, H_l, W_l), (dx, dy, dw, dh) of each anchor.
            quality: L tensors (N, A, H_l, W_l), objectness logits.
        """
        assert len(features) == self._num_features
        logits, bbox_reg, quality = [], [], []
        for feature in features:
            logits.append(self.cls_score(self.cls_subnet(feature)))
            # One pass through the box tower for both of its outputs (a CycleBatchNormList
            # norm advances once per call).
            box_feature = self.bbox_subnet(feature)
            bbox_reg.append(self.bbox_pred(box_feature))
            quality.append(self.quality_pred(box_feature))
        return logits, bbox_reg, quality


@META_ARCH_REGISTRY.register()
class DWRetinaNet(DWTrainingMixin, RetinaNet):
    """RetinaNet whose positives and negatives are weighted by Dual Weighting (Li et al., CVPR
    2022) instead of labelled by IoU with the anchors.

    Candidate bag of a box: every anchor whose *centre* lies strictly inside it, whatever the
    anchor's size or shape (DW's bag of points inside the box; the A anchors of a location share
    their centre, so all or none of them are candidates, each with its own prediction). The
    center prior is measured from the anchor centre in strides of its level. Predicted boxes are
    RetinaNet's, ``box2box_transform.apply_deltas`` from each anchor.

    Joint confidence (``quality``): RetinaNet has no centerness branch.

    - ``"none"`` (the default): detectron2's :class:`RetinaNetHead`; the joint score is
      ``sigmoid(cls)`` in training and at inference.
    - ``"objectness"``: :class:`DWRetinaNetHead`'s extra conv gives a quality logit per anchor,
      DW's quality in training (as FCOS' centerness is DW's); at inference the score is
      ``sigmoid(cls) * sigmoid(quality)``.

    "none" is the default because it did better in a short comparison on CPU: R-18-FPN from
    scratch (BN, 128 FPN channels, 2 convs a tower) on the generated shapes dataset, 320
    iterations of 8 images at 192 px (lr 0.01, step at 280: the demo's schedule), box AP on its
    100 validation images at 256 px. Seeds 0 / 1 / 2: "none" AP 19.6 / 18.1 / 3.4 (AP50 38.2 /
    37.9 / 7.8), "objectness" AP 18.4 / 15.2 / - (AP50 37.6 / 32.8 / -). Seed 2 trained
    badly with both; with "objectness" the head's weights blew up near iteration 95 until every
    score underflowed to 0, where every DW loss and its gradient is exactly 0 with finite
    predictions (training now stops there, see :func:`~.criterion.check_assignment`). Far too
    short to rank the two on COCO.
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
            Other arguments mean the same as in detectron2's :class:`RetinaNet`. Its
            ``anchor_matcher`` and loss parameters (``focal_loss_*``, ``smooth_l1_beta``,
            ``box_reg_loss_type``) have no meaning here and are not accepted: DW decides who is
            positive and computes the losses.
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
        """The head's predictions as the criterion takes them, in float32.

        Args:
            features: L tensors (N, D, H_l, W_l), for the anchors.
            predictions: the head's per-level outputs: logits (N, A * C, H_l, W_l), box deltas
                (N, A * 4, H_l, W_l) and, with ``quality="objectness"``, quality logits
                (N, A, H_l, W_l).

        Returns:
            ``(points, strides, cls_logits, quality_logits, pred_boxes)``: anchor centres
            (P, 2), (x, y) pixels of the padded input; their level's stride (P,), pixels;
            logits (N, P, C); quality logits (N, P), or None with ``quality="none"``; decoded
            boxes (N, P, 4), XYXY pixels.
        """
        logits, deltas, *quality = self._transpose_dense_predictions(
            predictions, self._dense_dims()
        )
        anchors = self.anchor_generator(features)  # L Boxes (H_l * W_l * A, 4)
        points, strides = candidate_centers(anchors, self.anchor_generator.strides)
        pred_boxes = decode_per_candidate(
            self.box2box_transform, torch.cat(deltas, dim=1).float(), Boxes.cat(anchors).tensor
        )
        quality_logits = torch.cat(quality[0], dim=1).squeeze(2).float() if quality else None
        return (
            points,
            strides,
            torch.cat(logits, dim=1).float(),
            quality_logits,
            pred_boxes,
        )

    def forward_inference(
        self, images: ImageList, features: list[torch.Tensor], predictions: list[list[torch.Tensor]]
    ) -> list[Instances]:
        """RetinaNet's inference; with ``quality="objectness"`` on the joint score
        ``sigmoid(cls) * sigmoid(quality)`` (detectron2's decoding, threshold, top-k and NMS).

        Returns:
            N Instances with ``pred_boxes``, ``scores`` and ``pred_classes``, in each image's
            resized frame (``DenseDetector.forward`` post-processes them).
        """
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
