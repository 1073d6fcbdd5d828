"""DW-FCOS: FCOS trained with Dual Weighting label assignment.

Shapes: N images, C classes, P anchor points over all levels, L levels.
"""

import inspect
from contextlib import nullcontext
from typing import Optional

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from ..layers import BatchPadding, batched_nms_float32, check_maskable, traceable_batched_nms
from .head import build_dw_head
from .losses import dw_losses


@META_ARCH_REGISTRY.register()
class DWFCOS(DenseDetector):
    """FCOS whose positives and negatives are weighted by Dual Weighting (Li et al., CVPR 2022).

    Preprocessing, the train/inference branch and postprocessing come from detectron2's
    :class:`DenseDetector`; this class supplies the anchor points, the DW losses and the
    release's inference rules.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Optional[list[str]] = None,
        num_classes: int,
        loss_kwargs: Optional[dict] = None,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        test_mask_padding: bool = True,
        release_postprocess: bool = False,
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            backbone: a detectron2 backbone; ``head_in_features`` name the levels the head reads.
            head: module mapping L feature maps to per-level (logits, box_ltrb, centerness), as
                :class:`DWHead` does.
            num_classes: number of foreground classes C.
            loss_kwargs: keyword hyper-parameters of :func:`dw_losses` (release defaults if
                omitted).
            test_score_thresh, test_topk_candidates: per level, keep scores above the threshold,
                then at most this many.
            test_nms_thresh: IoU of the class-aware NMS.
            max_detections_per_image: detections kept per image after NMS.
            test_mask_padding: at inference, compute each image of a batch as if alone
                (:class:`~.layers.BatchPadding`): outside an image's own padded extent every
                convolution's output is zeroed, GroupNorm leaves the cells out and no detection
                comes from them. A batch of mixed sizes raises a ValueError if the backbone or
                head has a layer the mask cannot follow (:func:`~.layers.check_maskable`);
                built from a config that batches test images, the model raises it at once.
            release_postprocess: at inference, rescale the boxes to the original image as the
                release does, before the NMS (:meth:`inference_single_image`), instead of after
                it with detectron2's ``detector_postprocess`` (which also clips again and drops
                empty boxes).
            pixel_mean, pixel_std: input normalisation, in the input's channel order.
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        self.num_classes = num_classes
        self.loss_kwargs = dict(loss_kwargs or {})
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.test_mask_padding = test_mask_padding
        self.release_postprocess = release_postprocess
        self._head_takes_valid_masks = "valid_masks" in inspect.signature(head.forward).parameters

        shapes = backbone.output_shape()
        strides = [shapes[f].stride for f in self.head_in_features]
        # Anchor points at ((j + 0.5) * s, (i + 0.5) * s): the release's offset, unlike
        # detectron2 FCOS's 0. A square "anchor" of side s centred there lets detectron2's
        # linear box transform decode (l, t, r, b) in pixels.
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
        if dw.TEST_MASK_PADDING and dw.TEST_IMS_PER_BATCH > 1:
            # Refused now rather than at the first evaluation, hours into training.
            check_maskable(backbone=backbone, head=head)
        return {
            "backbone": backbone,
            "head": head,
            "head_in_features": in_features,
            "num_classes": dw.NUM_CLASSES,
            "loss_kwargs": {
                "center_prior_mu": dw.CENTER_PRIOR_MU,
                "center_prior_sigma": dw.CENTER_PRIOR_SIGMA,
                "loc_score_scale": dw.LOC_SCORE_SCALE,
                "pos_weight_num_scale": dw.POS_WEIGHT_NUM_SCALE,
                "pos_weight_den_scale": dw.POS_WEIGHT_DEN_SCALE,
                "pos_cls_weight": dw.POS_CLS_LOSS_WEIGHT,
                "pos_loc_weight": dw.POS_LOC_LOSS_WEIGHT,
                "neg_iou_threshold": dw.NEG_IOU_THRESH,
            },
            "test_score_thresh": dw.TEST_SCORE_THRESH,
            "test_topk_candidates": dw.TEST_TOPK_CANDIDATES,
            "test_nms_thresh": dw.TEST_NMS_THRESH,
            "max_detections_per_image": dw.MAX_DETECTIONS_PER_IMAGE,
            "test_mask_padding": dw.TEST_MASK_PADDING,
            "release_postprocess": dw.RELEASE_TEST_POSTPROCESS,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    def preprocess_image(self, batched_inputs: list[dict]):
        """detectron2's normalisation, padding and batching. At inference, first rejects a
        floating-point input image holding an infinite or NaN pixel with a ValueError naming it
        (training stops on the non-finite predictions instead, naming the iteration).

        A traced graph (an exported model) cannot raise: it skips the check, and the finite-box
        filter of :meth:`inference_single_image` leaves such an image without detections.
        """
        if not self.training and not torch.jit.is_tracing():
            _check_finite_images(batched_inputs)
        return super().preprocess_image(batched_inputs)

    def forward(self, batched_inputs: list[dict]):
        """detectron2's :meth:`DenseDetector.forward`. At inference with ``test_mask_padding``,
        the backbone and head run under :meth:`BatchPadding.masking`, so an image padded further
        in its batch than alone gets the features, and then the detections, it gets alone (to
        rounding). With ``release_postprocess``, boxes reach the original image's size (each
        input's ``height`` and ``width``) as in the release (:meth:`inference_single_image`)
        instead of through detectron2's ``detector_postprocess``."""
        if self.training or torch.jit.is_scripting() or torch.jit.is_tracing():
            return super().forward(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        padding = BatchPadding.of(images, self.backbone)
        features, predictions = self.dense_predictions(images, padding)
        output_sizes = [
            (x.get("height", hw[0]), x.get("width", hw[1]))
            for x, hw in zip(batched_inputs, images.image_sizes)
        ]
        if self.release_postprocess:
            results = self.forward_inference(images, features, predictions, output_sizes, padding)
            return [{"instances": r} for r in results]
        results = self.forward_inference(images, features, predictions, padding=padding)
        return [
            {"instances": detector_postprocess(r, *size)} for r, size in zip(results, output_sizes)
        ]

    def dense_predictions(self, images: ImageList, padding: Optional[BatchPadding] = None):
        """The backbone's features (the head's L levels) and the head's predictions of
        ``images``, under :meth:`BatchPadding.masking` when ``test_mask_padding`` and some image
        is padded further in the batch than alone (the head also gets ``valid_masks`` if its
        ``forward`` takes them). ``padding``: the batch's, if already computed."""
        if padding is None:
            padding = BatchPadding.of(images, self.backbone)
        masked = self.test_mask_padding and padding.needed
        with padding.masking(backbone=self.backbone, head=self.head) if masked else nullcontext():
            features = self.backbone(images.tensor)
            features = [features[f] for f in self.head_in_features]
            if masked and self._head_takes_valid_masks:
                masks = [padding.valid_mask(*f.shape[-2:], f.device) for f in features]
                return features, self.head(features, valid_masks=masks)
            return features, self.head(features)

    def anchor_points(self, features: list[torch.Tensor]):
        """Anchor points of all levels, finest first.

        Returns:
            points: (P, 2) float, (x, y) in pixels of the padded input.
            strides: (P,) float, stride of each point's level.
        """
        per_level = [b.get_centers() for b in self.anchor_generator(features)]
        strides = torch.cat(
            [
                p.new_full((len(p),), float(s))
                for p, s in zip(per_level, self.anchor_generator.strides)
            ]
        )
        return torch.cat(per_level), strides

    def forward_training(self, images, features, predictions, gt_instances):
        logits, box_ltrb, centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        storage = get_event_storage()
        # Check here, in one reduction: the losses' BCE rejects NaN with an error that names
        # neither the cause nor the iteration.
        finite = torch.stack([torch.isfinite(x).all() for x in logits + box_ltrb + centerness])
        if not finite.all():
            raise FloatingPointError(
                f"DW-FCOS predictions became infinite or NaN at iteration={storage.iter}"
            )
        points, strides = self.anchor_points(features)
        storage.put_scalar(
            "num_gt_boxes_per_image", sum(len(x) for x in gt_instances) / len(gt_instances)
        )
        # The losses run in float32 with autocast off: exp(5 v) and the BCE's log clamp are not
        # meant for half precision, and CUDA autocast refuses binary_cross_entropy outright.
        with torch.autocast(points.device.type, enabled=False):
            return dw_losses(
                points,
                strides,
                torch.cat(logits, dim=1).float(),
                torch.cat(centerness, dim=1).squeeze(2).float(),
                torch.cat(box_ltrb, dim=1).float(),
                [x.gt_boxes.tensor for x in gt_instances],
                [x.gt_classes for x in gt_instances],
                **self.loss_kwargs,
            )

    def forward_inference(
        self,
        images: ImageList,
        features: list[torch.Tensor],
        predictions: list[list[torch.Tensor]],
        output_sizes: Optional[list[tuple[int, int]]] = None,
        padding: Optional[BatchPadding] = None,
    ):
        """Detections of each image, in its resized frame, or with ``output_sizes`` (one
        (height, width) an image) rescaled to that size as the release does
        (:meth:`inference_single_image`). ``padding``: the batch's, if already computed."""
        logits, box_ltrb, centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        own_cells = self._own_cells(images, features, padding)
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
            output_size = None if output_sizes is None else output_sizes[i]
            results.append(
                self.inference_single_image(image_anchors, scores, ltrb, image_size, output_size)
            )
        return results

    def _own_cells(self, images: ImageList, features: list[torch.Tensor], padding=None):
        """With ``test_mask_padding``: per image, per level, :meth:`BatchPadding.own_cells` (None
        for a level the image fills); None when no image is padded further than alone.
        Detections then come from the cells the image has alone, in the same order."""
        if not self.test_mask_padding or torch.jit.is_tracing():
            return None
        if padding is None:
            padding = BatchPadding.of(images, self.backbone)
        if not padding.needed:
            return None
        per_level = [padding.own_cells(*f.shape[-2:], f.device) for f in features]
        return list(zip(*per_level))

    def inference_single_image(
        self,
        anchors: list[Boxes],
        scores: list[torch.Tensor],
        box_ltrb: list[torch.Tensor],
        image_size,
        output_size=None,
    ) -> Instances:
        """
        Args:
            anchors: L Boxes, the square anchors around each level's points.
            scores: L tensors (H_l * W_l, C), joint scores in [0, 1].
            box_ltrb: L tensors (H_l * W_l, 4), distances in pixels.
            image_size: (height, width) of the resized input, before padding.
            output_size: optional (height, width) of the original image. Given, the release's
                post-processing: the boxes, clipped to the resized image, are divided by the
                float32 resize factors ``new / old`` per axis *before* the NMS, which then
                decides on original-image coordinates; no second clip, and boxes of zero width
                or height stay. The Instances then have ``image_size = output_size``.

        Candidates with a NaN score fail the threshold; those with an infinite or NaN box
        (non-finite predictions, from a diverged model or overflowing half precision) are
        dropped, so every returned box is finite, as ``Boxes.clip`` requires.

        A traced graph (an exported model) cannot record the release's NMS, a data-dependent
        loop: it runs :func:`~.layers.traceable_batched_nms`, one graph op, instead.
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
            pred = _rescale_as_release(pred, output_size)
        # The release's rule: IoU against the threshold in float32 (torchvision's is double).
        nms = traceable_batched_nms if torch.jit.is_tracing() else batched_nms_float32
        keep = nms(pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh)
        return pred[keep[: self.max_detections_per_image]]


def _rescale_as_release(pred: Instances, output_size) -> Instances:
    """``pred`` (of the resized image) with its boxes divided by the release's resize factors,
    ``float32(new_w / old_w)`` and ``float32(new_h / old_h)`` (mmcv's ``imresize`` scales, which
    MMDetection stores as a float32 ``scale_factor``), as an Instances of ``output_size``."""
    (new_h, new_w), (old_h, old_w) = pred.image_size, output_size
    w_scale, h_scale = np.float32(new_w / old_w), np.float32(new_h / old_h)
    boxes = pred.pred_boxes.tensor
    factors = torch.tensor([w_scale, h_scale, w_scale, h_scale], dtype=torch.float32)
    rescaled = Instances((int(old_h), int(old_w)))
    rescaled.pred_boxes = Boxes(boxes / factors.to(boxes))
    rescaled.scores = pred.scores
    rescaled.pred_classes = pred.pred_classes
    return rescaled


def _check_finite_images(batched_inputs: list[dict]):
    """Raise a ValueError naming each floating-point ``image`` of ``batched_inputs`` that holds an
    infinite or NaN pixel. Integer images (detectron2's mappers give uint8) are finite."""
    floats = [
        (i, x["image"]) for i, x in enumerate(batched_inputs) if x["image"].is_floating_point()
    ]
    if not floats:
        return
    # One host read for the batch.
    finite = torch.stack([torch.isfinite(image).all() for _, image in floats]).tolist()
    bad = []
    for (i, _), ok in zip(floats, finite):
        if not ok:
            source = batched_inputs[i].get("file_name")
            bad.append(f"batched_inputs[{i}]" + (f" ({source})" if source else ""))
    if bad:
        raise ValueError(
            f"DWFCOS got input images with infinite or NaN pixels: {', '.join(bad)}. "
            "Pixel values must be finite."
        )
