"""DW-FCOS: FCOS trained with Dual Weighting label assignment.
Shapes: N images, C classes, L levels of H_l x W_l anchor points, P of them in all."""

from contextlib import nullcontext

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ..layers import BatchPadding, batched_nms_float32, capturing_graph, check_maskable
from .assignment import decode_ltrb
from .candidates import candidate_centers
from .criterion import DWCriterion
from .fcos import check_in_features
from .head import build_dw_head
from .image_list import DWImageList, check_finite_images
from .postprocessing import release_rescale
from .training import DWTrainingMixin

__all__ = ["DWFCOS"]


@META_ARCH_REGISTRY.register()
class DWFCOS(DWTrainingMixin, DenseDetector):
    """FCOS whose positives and negatives are weighted by Dual Weighting (Li et al., CVPR 2022).
    detectron2's :class:`DenseDetector` does the rest; this class supplies the anchor points,
    the :class:`~.criterion.DWCriterion` in training and the release's inference rules."""

    DETECTOR_NAME = "DW-FCOS"

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: list[str] | None = None,
        num_classes: int,
        criterion: DWCriterion | None = None,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        test_mask_padding: bool = True,
        test_release_postprocess: bool = False,
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            backbone, head_in_features: a detectron2 backbone and the levels the head reads.
            head: a DW head (see ``DW_HEAD_REGISTRY``).
            num_classes: number of foreground classes C.
            criterion: the training losses; :class:`~.criterion.DWCriterion` with the release's
                hyper-parameters if omitted.
            test_score_thresh, test_topk_candidates: per level, keep scores above the threshold,
                then at most this many.
            test_nms_thresh: IoU of the class-aware NMS.
            test_mask_padding: at inference, compute each image of a batch as if alone
                (:class:`~dual_weighting.layers.BatchPadding`); a batch of mixed sizes raises a
                ValueError if a layer cannot follow the mask
                (:func:`~dual_weighting.layers.check_maskable`), from a config at build time.
            test_release_postprocess: rescale the boxes to the original image before the NMS as
                the release does (:func:`.postprocessing.release_rescale`), instead of after it
                with detectron2's ``detector_postprocess``.
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        self.num_classes = num_classes
        self.criterion = DWCriterion() if criterion is None else criterion
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.test_mask_padding = test_mask_padding
        self.test_release_postprocess = test_release_postprocess

        shapes = backbone.output_shape()
        strides = [shapes[f].stride for f in self.head_in_features]
        # Anchor points at ((j + 0.5) * s, (i + 0.5) * s), the release's (ANCHOR_GENERATOR.OFFSET
        # is not read); a square anchor of side s there lets the linear transform decode ltrb.
        self.anchor_generator = DefaultAnchorGenerator(
            sizes=[[s] for s in strides], aspect_ratios=[1.0], strides=strides, offset=0.5
        )
        self.box2box_transform = Box2BoxTransformLinear(normalize_by_size=False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_features = list(cfg.MODEL.DW.IN_FEATURES)
        check_in_features(cfg, "MODEL.DW.IN_FEATURES", in_features, shapes)
        dw = cfg.MODEL.DW
        head = build_dw_head(cfg, [shapes[f] for f in in_features])
        if dw.MASK_PADDING_TEST and cfg.TEST.IMS_PER_BATCH > 1:
            # Refused now rather than at the first evaluation, hours into training.
            check_maskable(backbone=backbone, head=head)
        return {
            "backbone": backbone,
            "head": head,
            "head_in_features": in_features,
            "num_classes": dw.NUM_CLASSES,
            "criterion": DWCriterion(cfg),
            "test_score_thresh": dw.SCORE_THRESH_TEST,
            "test_topk_candidates": dw.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": dw.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "test_mask_padding": dw.MASK_PADDING_TEST,
            "test_release_postprocess": dw.RELEASE_POSTPROCESS_TEST,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """detectron2's normalisation, padding and batching. At inference a :class:`DWImageList`,
        after a ValueError for a non-finite pixel; a traced graph skips both (plain ImageList)."""
        if self.training or capturing_graph():
            return super().preprocess_image(batched_inputs)
        check_finite_images(batched_inputs)
        images = super().preprocess_image(batched_inputs)
        output_sizes = [
            (x.get("height", h), x.get("width", w))
            for x, (h, w) in zip(batched_inputs, images.image_sizes)
        ]
        return DWImageList(images, BatchPadding.of(images, self.backbone), output_sizes)

    def forward(self, batched_inputs: list[dict]):
        """detectron2's :meth:`DenseDetector.forward`; at inference through
        :meth:`dense_predictions`, and ``detector_postprocess`` unless
        ``test_release_postprocess``."""
        if self.training or torch.jit.is_scripting() or capturing_graph():
            return super().forward(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features, predictions = self.dense_predictions(images)
        results = self.forward_inference(images, features, predictions)
        if not self.test_release_postprocess:
            results = [
                detector_postprocess(r, *size) for r, size in zip(results, images.output_sizes)
            ]
        return [{"instances": r} for r in results]

    def dense_predictions(self, images: ImageList):
        """The L (N, D, H_l, W_l) features the head reads and its predictions (logits,
        box_ltrb, centerness), under :meth:`BatchPadding.masking` with ``test_mask_padding``
        when some image is padded further than alone (the head then gets ``valid_masks``)."""
        padding = self._padding_of(images)
        masked = self.test_mask_padding and padding.needed
        with padding.masking(backbone=self.backbone, head=self.head) if masked else nullcontext():
            features = self.backbone(images.tensor)
            features = [features[f] for f in self.head_in_features]
            if masked:
                masks = [padding.valid_mask(*f.shape[-2:], f.device) for f in features]
                return features, self.head(features, valid_masks=masks)
            return features, self.head(features)

    def anchor_points(self, features: list[torch.Tensor]):
        """(P, 2) anchor points (x, y) of all levels, finest first, and (P,) their strides;
        float, pixels of the padded input."""
        return candidate_centers(self.anchor_generator(features), self.anchor_generator.strides)

    def criterion_inputs(self, features: list[torch.Tensor], predictions):
        """``(points, strides, cls_logits, quality_logits, pred_boxes)`` in float32: (P, 2) and
        (P,) as :meth:`anchor_points`, logits (N, P, C), centerness logits (N, P), decoded boxes
        (N, P, 4) XYXY pixels, from the L-level ``features`` and the head's ``predictions``."""
        logits, box_ltrb, centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        points, strides = self.anchor_points(features)
        return (
            points,
            strides,
            torch.cat(logits, dim=1).float(),
            torch.cat(centerness, dim=1).squeeze(2).float(),
            decode_ltrb(points, torch.cat(box_ltrb, dim=1).float()),
        )

    def forward_inference(
        self, images: ImageList, features: list[torch.Tensor], predictions: list[list[torch.Tensor]]
    ) -> list[Instances]:
        """N Instances with ``pred_boxes``, ``scores`` and ``pred_classes``: in each image's
        resized frame, or its output size with ``test_release_postprocess`` and a
        :class:`DWImageList`; with ``test_mask_padding`` only from the cells it has alone."""
        logits, box_ltrb, centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        own_cells = self._own_cells(images, features)
        # Only a DWImageList knows the output sizes; a traced graph's ImageList keeps its frame.
        release = self.test_release_postprocess and isinstance(images, DWImageList)
        results: list[Instances] = []
        for i, image_size in enumerate(images.image_sizes):
            # Joint score s * o, without the square root of detectron2's FCOS.
            scores = [x[i].sigmoid() * y[i].sigmoid() for x, y in zip(logits, centerness)]
            ltrb = [x[i] for x in box_ltrb]
            image_anchors = anchors
            if own_cells is not None:
                cells = own_cells[i]
                scores = [x if c is None else x[c] for x, c in zip(scores, cells)]
                ltrb = [x if c is None else x[c] for x, c in zip(ltrb, cells)]
                image_anchors = [x if c is None else x[c] for x, c in zip(anchors, cells)]
            output_size = images.output_sizes[i] if release else None
            results.append(
                self.inference_single_image(image_anchors, scores, ltrb, image_size, output_size)
            )
        return results

    def _padding_of(self, images: ImageList) -> BatchPadding:
        if isinstance(images, DWImageList):
            return images.padding
        return BatchPadding.of(images, self.backbone)

    def _own_cells(self, images: ImageList, features: list[torch.Tensor]):
        """With ``test_mask_padding``: per image, per level, :meth:`BatchPadding.own_cells` (None
        for a level the image fills); None when no image is padded further than alone."""
        if not self.test_mask_padding or capturing_graph():
            return None
        padding = self._padding_of(images)
        if not padding.needed:
            return None
        per_level = [padding.own_cells(*f.shape[-2:], f.device) for f in features]
        return list(zip(*per_level))

    def inference_single_image(
        self,
        anchors: list[Boxes],
        scores: list[torch.Tensor],
        box_ltrb: list[torch.Tensor],
        image_size: tuple[int, int],
        output_size: tuple[int, int] | None = None,
    ) -> Instances:
        """
        Args:
            anchors: L Boxes, the square anchors around each level's points.
            scores: L tensors (H_l * W_l, C), joint scores in [0, 1].
            box_ltrb: L tensors (H_l * W_l, 4), distances in pixels.
            image_size: (height, width) of the resized input, before padding.
            output_size: (height, width) of the original image: the clipped boxes are rescaled
                by :func:`.postprocessing.release_rescale` *before* the NMS. None: boxes stay in
                the resized frame.

        Returns:
            Instances of ``image_size`` (or ``output_size``) with ``pred_boxes`` (R, 4), finite,
            ``scores`` (R,) and ``pred_classes`` (R,), R <= max_detections_per_image.
        """
        pred = self._decode_multi_level_predictions(
            anchors, scores, box_ltrb, self.test_score_thresh, self.test_topk_candidates, image_size
        )
        pred = pred[torch.isfinite(pred.pred_boxes.tensor).all(dim=1)]
        pred.pred_boxes.clip(image_size)
        if output_size is not None:
            pred = release_rescale(pred, *output_size)
        # The release's rule: IoU against the threshold in float32 (torchvision's is double).
        keep = batched_nms_float32(
            pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh
        )
        return pred[keep[: self.max_detections_per_image]]
