"""DW-FCOS: FCOS trained with Dual Weighting label assignment.

Shapes: N images, C classes, L levels, P anchor points over all levels (level l has
H_l x W_l of them), G_n ground-truth boxes of image n.
"""

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
from .head import build_dw_head
from .image_list import DWImageList, check_finite_images
from .postprocessing import release_rescale
from .training import DWTrainingMixin

__all__ = ["DWFCOS"]


@META_ARCH_REGISTRY.register()
class DWFCOS(DWTrainingMixin, DenseDetector):
    """FCOS whose positives and negatives are weighted by Dual Weighting (Li et al., CVPR 2022).

    Preprocessing, the train/inference branch and postprocessing come from detectron2's
    :class:`DenseDetector`; this class supplies the anchor points, hands the predictions to the
    :class:`~.criterion.DWCriterion` in training and applies the release's inference rules.
    """

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
            backbone: a detectron2 backbone; ``head_in_features`` name the levels the head reads.
            head: a DW head (see ``DW_HEAD_REGISTRY``): ``head(features)`` maps L feature maps
                to per-level (logits, box_ltrb, centerness); at batched inference with
                ``test_mask_padding`` it is called as ``head(features, valid_masks=...)``.
            num_classes: number of foreground classes C.
            criterion: the training losses; :class:`~.criterion.DWCriterion` with the release's
                hyper-parameters if omitted.
            test_score_thresh, test_topk_candidates: per level, keep scores above the threshold,
                then at most this many.
            test_nms_thresh: IoU of the class-aware NMS.
            max_detections_per_image: detections kept per image after NMS.
            test_mask_padding: at inference, compute each image of a batch as if alone
                (:class:`~dual_weighting.layers.BatchPadding`): outside an image's own padded
                extent every convolution's output is zeroed, GroupNorm leaves the cells out and
                no detection comes from them. A batch of mixed sizes raises a ValueError if the
                backbone or head has a layer the mask cannot follow
                (:func:`~dual_weighting.layers.check_maskable`); built from a config that
                batches test images, the model raises it at once.
            test_release_postprocess: at inference, rescale the boxes to the original image as
                the release does, before the NMS (:func:`.postprocessing.release_rescale`),
                instead of after it with detectron2's ``detector_postprocess`` (which also clips
                again and drops empty boxes).
            pixel_mean, pixel_std: input normalisation, in the input's channel order.
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
        # Anchor points at ((j + 0.5) * s, (i + 0.5) * s): the release's offset (detectron2's
        # FCOS gets the same from DefaultAnchorGenerator's default; its yacs key
        # ANCHOR_GENERATOR.OFFSET, 0, is not read). A square "anchor" of side s centred there
        # lets detectron2's linear box transform decode (l, t, r, b) in pixels.
        self.anchor_generator = DefaultAnchorGenerator(
            sizes=[[s] for s in strides], aspect_ratios=[1.0], strides=strides, offset=0.5
        )
        self.box2box_transform = Box2BoxTransformLinear(normalize_by_size=False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_features = list(cfg.MODEL.DW.IN_FEATURES)
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(
                f"MODEL.DW.IN_FEATURES names {missing}, which backbone "
                f"{cfg.MODEL.BACKBONE.NAME} does not output (it has {sorted(shapes)})"
            )
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
        """detectron2's normalisation, padding and batching; at inference a :class:`DWImageList`
        (the batch's padding and output sizes, computed once). At inference it first rejects a
        floating-point input image holding an infinite or NaN pixel with a ValueError naming it
        (training stops on the non-finite predictions instead, naming the iteration).

        A traced graph (an exported model) cannot raise: it skips the check, and the finite-box
        filter of :meth:`inference_single_image` leaves such an image without detections; it
        gets a plain :class:`ImageList` (one image, no padding to mask).
        """
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
        """detectron2's :meth:`DenseDetector.forward`. At inference the backbone and head run
        through :meth:`dense_predictions` (each image of a batch computed as if alone), and
        with ``test_release_postprocess`` the boxes reach each input's ``height`` x ``width``
        as in the release, inside :meth:`inference_single_image`, instead of through
        detectron2's ``detector_postprocess``."""
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
        """The backbone's features of the head's L levels and the head's predictions, with
        ``test_mask_padding`` under :meth:`BatchPadding.masking` when some image is padded
        further in the batch than alone (the head then also gets ``valid_masks``).

        Returns:
            features: L tensors (N, D, H_l, W_l).
            predictions: the head's three lists of L tensors: logits (N, C, H_l, W_l),
                box_ltrb (N, 4, H_l, W_l) in pixels, centerness (N, 1, H_l, W_l).
        """
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
        """Anchor points of all levels, finest first.

        Returns:
            points: (P, 2) float, (x, y) in pixels of the padded input.
            strides: (P,) float, stride of each point's level.
        """
        return candidate_centers(self.anchor_generator(features), self.anchor_generator.strides)

    def criterion_inputs(self, features: list[torch.Tensor], predictions):
        """The head's predictions as the criterion takes them, in float32.

        Args:
            features: L tensors (N, D, H_l, W_l), for the anchor points.
            predictions: the head's logits, box_ltrb and centerness, L tensors each.

        Returns:
            ``(points, strides, cls_logits, quality_logits, pred_boxes)``: (P, 2) and (P,) as
            :meth:`anchor_points`, logits (N, P, C), centerness logits (N, P), and the decoded
            boxes (N, P, 4), XYXY pixels.
        """
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
        """Detections of each image: in its resized frame, or with ``test_release_postprocess``
        in its output size as the release rescales (:meth:`inference_single_image`). With
        ``test_mask_padding``, only from the cells each image has alone, in their order alone.

        Args:
            images: the batch; a :class:`DWImageList` from :meth:`preprocess_image`, or a plain
                ImageList (its padding is then computed here, and detections stay in its resized
                frame).
            features: L tensors (N, D, H_l, W_l).
            predictions: the head's logits, box_ltrb and centerness, L tensors each.

        Returns:
            N Instances with ``pred_boxes``, ``scores`` and ``pred_classes``.
        """
        logits, box_ltrb, centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        own_cells = self._own_cells(images, features)
        # The release rescales to each input's own size, which only a DWImageList knows: a plain
        # ImageList (a traced graph's, which takes the input image alone) keeps the resized frame.
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
            output_size: (height, width) of the original image for the release's
                post-processing: the boxes, clipped to the resized image, are rescaled by
                :func:`.postprocessing.release_rescale` *before* the NMS, which then decides on
                original-image coordinates. None: boxes stay in the resized frame.

        Returns:
            Instances of ``image_size`` (or ``output_size``) with ``pred_boxes`` (R, 4),
            ``scores`` (R,) and ``pred_classes`` (R,), R <= max_detections_per_image.

        Candidates with a NaN score fail the threshold; those with an infinite or NaN box
        (non-finite predictions, from a diverged model or overflowing half precision) are
        dropped, so every returned box is finite, as ``Boxes.clip`` requires.
        """
        pred = self._decode_multi_level_predictions(
            anchors,
            scores,
            box_ltrb,
            self.test_score_thresh,
            self.test_topk_candidates,
            image_size,
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
