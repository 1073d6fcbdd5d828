"""DW-RPN: detectron2's Region Proposal Network trained with Dual Weighting's losses, for the
proposal stage of Faster R-CNN's ``GeneralizedRCNN``. DW has one class here: the joint score is
``sigmoid(objectness)``, the candidates the anchors whose centre lies strictly inside a box, the
localisation score that of the anchor's decoded proposal.

Shapes: N images, L levels, A anchors per location, P = sum_l H_l * W_l * A, G_n boxes of image n.
"""

from __future__ import annotations

import math

import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, cat, get_norm
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY, StandardRPNHead
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from .candidates import candidate_centers
from .criterion import DWCriterion
from .training import dw_training_step

__all__ = ["DWRPN", "NormRPNHead"]

# How to put a norm in the RPN head, in the keys of the run's config style: offered when a
# DW-RPN with detectron2's unnormalised head stops, since on the tree crowns NormRPNHead trained
# through every seed on which that head blew up the FPN (docs/BENCHMARKS.md).
_NORM_HEAD_FIX = {
    "yacs": 'set MODEL.RPN.HEAD_NAME "NormRPNHead"',
    "lazy": "make model.proposal_generator.head a NormRPNHead",
    None: "give the RPN a NormRPNHead",
}

# RPN's arguments of IoU matching, sampling and box loss, which DW replaces: not taken, not read.
_UNUSED_RPN_ARGUMENTS = (
    "anchor_matcher",
    "batch_size_per_image",
    "positive_fraction",
    "anchor_boundary_thresh",
    "box_reg_loss_type",
    "smooth_l1_beta",
)


@PROPOSAL_GENERATOR_REGISTRY.register()
class DWRPN(RPN):
    """detectron2's :class:`RPN` whose objectness and box losses are Dual Weighting's (Li et
    al., CVPR 2022) with a single class, in place of IoU matching, sampling and smooth L1.

    All but the losses is detectron2's (the objectness bias starts at
    ``objectness_prior_prob``). The losses keep detectron2's names and weights: ``loss_rpn_cls``
    is DW's positive classification plus negative loss, ``loss_rpn_loc`` DW's localisation
    loss, times ``loss_weight[name]``.

    With one class every box claims the same entry: an anchor's negative weight is the smallest
    over all boxes whose bag holds it, so a good positive (IoU >= ``neg_iou_thresh``) for *any*
    object is spared part of its negative loss.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: list[str],
        head: torch.nn.Module,
        anchor_generator: torch.nn.Module,
        box2box_transform,
        pre_nms_topk: tuple[float, float],
        post_nms_topk: tuple[float, float],
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        loss_weight: float | dict[str, float] = 1.0,
        criterion: DWCriterion | None = None,
        objectness_prior_prob: float | None = 0.02,
    ):
        """
        Args:
            in_features, head, anchor_generator, box2box_transform, pre_nms_topk,
                post_nms_topk, nms_thresh, min_box_size, loss_weight: as :class:`RPN`'s;
                ``anchor_generator`` must make axis-aligned boxes (box_dim 4).
            criterion: :class:`~.criterion.DWCriterion` with the release's hyper-parameters if
                omitted.
            objectness_prior_prob: initial objectness probability, bias ``-log((1 - p) / p)``
                as DW's classifier (``MODEL.DW.PRIOR_PROB``). None keeps detectron2's bias 0,
                under which DW's negative loss starts some thousand times larger.
        """
        if anchor_generator.box_dim != 4:
            raise ValueError(
                f"DWRPN takes axis-aligned anchors (box_dim 4), not box_dim "
                f"{anchor_generator.box_dim} of {type(anchor_generator).__name__}"
            )
        # RPN stores its matcher and sampling settings; DWRPN leaves them unset.
        super().__init__(
            in_features=in_features,
            head=head,
            anchor_generator=anchor_generator,
            anchor_matcher=None,
            box2box_transform=box2box_transform,
            batch_size_per_image=0,
            positive_fraction=0.0,
            pre_nms_topk=pre_nms_topk,
            post_nms_topk=post_nms_topk,
            nms_thresh=nms_thresh,
            min_box_size=min_box_size,
            loss_weight=loss_weight,
        )
        self.criterion = DWCriterion() if criterion is None else criterion
        if objectness_prior_prob is not None:
            # Unlike detectron2's RPN: DW's focal-style negative loss assumes rare positives.
            objectness = getattr(head, "objectness_logits", None)
            if not isinstance(getattr(objectness, "bias", None), torch.Tensor):
                raise ValueError(
                    f"objectness_prior_prob needs a head with an objectness_logits conv with a "
                    f"bias (as StandardRPNHead); {type(head).__name__} has none: pass None"
                )
            p = objectness_prior_prob
            torch.nn.init.constant_(objectness.bias, -math.log((1 - p) / p))

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        """RPN's arguments, DW's from ``MODEL.DW``; ``MODEL.RPN``'s matching, sampling and box-loss
        keys have no effect."""
        ret = super().from_config(cfg, input_shape)
        for name in _UNUSED_RPN_ARGUMENTS:
            del ret[name]
        ret["criterion"] = DWCriterion(cfg)
        ret["objectness_prior_prob"] = cfg.MODEL.DW.PRIOR_PROB
        return ret

    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: list[Boxes], gt_instances: list[Instances]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """DW assigns in :meth:`losses`, so this hands on each image's classes, N int64 tensors
        (G_n,) of zeros, and boxes, N tensors (G_n, 4) XYXY pixels, not per-anchor labels."""
        gt_boxes = [x.gt_boxes.tensor for x in gt_instances]
        return [torch.zeros(len(b), dtype=torch.long, device=b.device) for b in gt_boxes], gt_boxes

    def criterion_inputs(
        self,
        anchors: list[Boxes],
        pred_objectness_logits: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
    ):
        """``(points, strides, cls_logits, quality_logits, pred_boxes)`` in float32: anchor
        centres (P, 2), strides (P,), objectness logits (N, P, 1), None, and each anchor's
        decoded proposal (N, P, 4), XYXY pixels; from L Boxes ``anchors`` (H_l * W_l * A, 4),
        L tensors (N, H_l * W_l * A) of logits and (N, H_l * W_l * A, 4) of deltas."""
        points, strides = candidate_centers(anchors, self.anchor_generator.strides)
        # The proposals' own decoding (box2box_transform), here with gradients.
        pred_boxes = cat(self._decode_proposals(anchors, pred_anchor_deltas), dim=1).float()
        cls_logits = cat(pred_objectness_logits, dim=1).float()[..., None]
        return points, strides, cls_logits, None, pred_boxes

    def losses(
        self,
        anchors: list[Boxes],
        pred_objectness_logits: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
        gt_boxes: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """DW's ``{"loss_rpn_cls", "loss_rpn_loc"}``, scalars weighted by ``self.loss_weight``;
        arguments as :meth:`criterion_inputs`' and :meth:`label_and_sample_anchors`' outputs."""
        try:
            dw, assignment = dw_training_step(
                self.criterion,
                "DW-RPN",
                [pred_objectness_logits, pred_anchor_deltas],
                lambda: self.criterion_inputs(anchors, pred_objectness_logits, pred_anchor_deltas),
                gt_boxes,
                gt_labels,
            )
        except FloatingPointError as e:
            if not self._head_is_unnormalised():
                raise
            fix = _NORM_HEAD_FIX[self.criterion.config_style]
            raise FloatingPointError(
                f"{e}; the RPN head has no norm, through which DW's negative loss can blow up "
                f"the features below it: {fix}"
            ) from e
        # (anchor, box) pairs with the anchor's centre inside the box, per image.
        get_event_storage().put_scalar("rpn/num_candidates", len(assignment.image) / len(gt_boxes))
        losses = {
            "loss_rpn_cls": dw["loss_cls_pos"] + dw["loss_cls_neg"],
            "loss_rpn_loc": dw["loss_loc"],
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def _head_is_unnormalised(self) -> bool:
        """Whether the head is detectron2's :class:`StandardRPNHead` (or a NormRPNHead without
        a norm, the same head)."""
        head = self.rpn_head
        if isinstance(head, NormRPNHead):
            return not head._norm
        return type(head) is StandardRPNHead


@RPN_HEAD_REGISTRY.register()
class NormRPNHead(StandardRPNHead):
    """detectron2's :class:`StandardRPNHead` with a normalisation between each 3x3 conv and its
    ReLU (``MODEL.RPN.HEAD_NAME: "NormRPNHead"``, the norm ``MODEL.DW.NORM``).

    DW's negative loss covers every anchor, not RPN's 256 sampled an image. When the scores of
    many anchors rise together, its gradient through the unnormalised head and the FPN below
    grows with the features: on the tree crowns, the pretrained DW-RPN's FPN outputs grew 7-fold
    in two steps and every objectness logit fell below -100 (docs/BENCHMARKS.md). A normalised
    conv is invariant to its input's scale, so the gradient it sends down shrinks as they grow.
    """

    @configurable
    def __init__(self, *, norm: str = "GN", **kwargs):
        """
        Args:
            norm: a :func:`detectron2.layers.get_norm` name ("GN": 32 groups); "" is
                :class:`StandardRPNHead`.
            kwargs: :class:`StandardRPNHead`'s ``in_channels``, ``num_anchors``, ``box_dim``,
                ``conv_dims``.
        """
        # Read by _get_rpn_conv, which StandardRPNHead's __init__ calls.
        self._norm = norm
        super().__init__(**kwargs)

    def _get_rpn_conv(self, in_channels: int, out_channels: int) -> Conv2d:
        return Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            padding=1,
            norm=get_norm(self._norm, out_channels),
            activation=torch.nn.ReLU(),
        )

    @classmethod
    def from_config(cls, cfg, input_shape: list[ShapeSpec]):
        return {**super().from_config(cfg, input_shape), "norm": cfg.MODEL.DW.NORM}
