"""DW-RPN: detectron2's Region Proposal Network trained with Dual Weighting's losses, for the
proposal stage of a two-stage detector (Faster R-CNN's ``GeneralizedRCNN``).

Shapes: N images, L levels, A anchors per location, P anchors over all levels (level l has
H_l x W_l x A of them), G_n ground-truth boxes of image n.

DW here has one class, objectness. Its joint score is ``sigmoid(objectness)`` (the RPN head has
no separate quality branch), its candidates are the anchors whose centre lies strictly inside a
box (the A anchors of a location share the centre, hence the center prior, but each has its own
score and box), and its localisation score is that of the anchor's decoded proposal.
"""

from __future__ import annotations

import math

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from .candidates import candidate_centers
from .criterion import DWCriterion
from .training import dw_training_step

__all__ = ["DWRPN"]

# RPN's arguments for detectron2's labelling (IoU matching, then sampling) and its box loss, which
# DW replaces: DWRPN neither takes nor reads them.
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

    Everything but the training losses is detectron2's: the head (only its objectness bias
    starts elsewhere, see ``objectness_prior_prob``), the anchors, and the proposals
    (:meth:`RPN.predict_proposals`), at inference and in training, where they feed the ROI
    heads. The losses keep detectron2's names and weights: ``loss_rpn_cls`` is DW's
    positive classification loss plus its negative loss, times ``loss_weight["loss_rpn_cls"]``
    (``MODEL.RPN.LOSS_WEIGHT``); ``loss_rpn_loc`` is DW's localisation loss times
    ``loss_weight["loss_rpn_loc"]`` (``BBOX_REG_LOSS_WEIGHT * LOSS_WEIGHT``).

    DW's negative weights act on the single objectness class. In multi-class DW a box lowers the
    negative weight of its own class only, and an anchor inside a box of class A stays a full
    negative for every other class. Here every box claims the same entry: an anchor's negative
    weight is the smallest over all boxes whose bag holds it, so an anchor that is a good
    positive (IoU >= ``neg_iou_thresh``) for *any* object is spared part of its negative
    objectness loss, and no anchor is ever a negative for a "wrong class". Anchors inside no box,
    or predicting boxes of IoU below the threshold, are full negatives.
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
                post_nms_topk, nms_thresh, min_box_size, loss_weight: as :class:`RPN`'s.
                ``box2box_transform`` decodes each anchor's proposal, for the losses as for the
                proposals; ``anchor_generator`` must make axis-aligned boxes (box_dim 4).
            criterion: DW's assignment and losses; :class:`~.criterion.DWCriterion` with the
                release's hyper-parameters if omitted. Its center prior is in units of each
                anchor's level stride.
            objectness_prior_prob: initial objectness probability: the head's
                ``objectness_logits.bias`` is set to ``-log((1 - p) / p)``, as DW's classifier
                starts (``MODEL.DW.PRIOR_PROB``, 0.02 in the release). None keeps detectron2's
                init (bias 0, probability 0.5), under which DW's negative loss, a sum over all
                anchors divided by ``sum(1 - w_neg)`` rather than by a sample size, starts some
                thousand times larger on a COCO-sized image.

        DW decides who is how positive and how negative from the predictions, so there is no
        anchor matcher, sampling or box-loss type (RPN's ``anchor_matcher``,
        ``batch_size_per_image``, ``positive_fraction``, ``anchor_boundary_thresh``,
        ``box_reg_loss_type``, ``smooth_l1_beta``).
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
        """RPN's arguments from ``MODEL.RPN`` and ``MODEL.ANCHOR_GENERATOR``; DW's from
        ``MODEL.DW`` (the criterion's keys and ``PRIOR_PROB``). ``MODEL.RPN``'s keys of matching,
        sampling and the box loss (``IOU_THRESHOLDS``, ``IOU_LABELS``, ``BATCH_SIZE_PER_IMAGE``,
        ``POSITIVE_FRACTION``, ``BOUNDARY_THRESH``, ``BBOX_REG_LOSS_TYPE``, ``SMOOTH_L1_BETA``)
        have no effect."""
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
        """DW labels no anchor before the predictions are seen (its assignment runs in
        :meth:`losses`), so unlike :meth:`RPN.label_and_sample_anchors` this hands on each
        image's boxes and their class, 0 (objectness), instead of per-anchor labels.

        Returns:
            gt_classes: N int64 tensors (G_n,) of zeros.
            gt_boxes: N tensors (G_n, 4), XYXY pixels.
        """
        gt_boxes = [x.gt_boxes.tensor for x in gt_instances]
        return [torch.zeros(len(b), dtype=torch.long, device=b.device) for b in gt_boxes], gt_boxes

    def criterion_inputs(
        self,
        anchors: list[Boxes],
        pred_objectness_logits: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
    ):
        """The RPN's predictions as :class:`~.criterion.DWCriterion` takes them, in float32.

        Args:
            anchors: L Boxes (H_l * W_l * A, 4), from the anchor generator.
            pred_objectness_logits: L tensors (N, H_l * W_l * A).
            pred_anchor_deltas: L tensors (N, H_l * W_l * A, 4).

        Returns:
            ``(points, strides, cls_logits, quality_logits, pred_boxes)``: anchor centres
            (P, 2), each anchor's level stride (P,), objectness logits (N, P, 1), None (no
            quality factor), and each anchor's decoded proposal (N, P, 4), XYXY pixels.
        """
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
        """DW's losses of the RPN's predictions, under detectron2's RPN loss names.

        Args:
            anchors: L Boxes (H_l * W_l * A, 4).
            pred_objectness_logits: L tensors (N, H_l * W_l * A).
            gt_labels: N int64 tensors (G_n,), each box's class (0), from
                :meth:`label_and_sample_anchors`.
            pred_anchor_deltas: L tensors (N, H_l * W_l * A, 4).
            gt_boxes: N tensors (G_n, 4), XYXY pixels, from :meth:`label_and_sample_anchors`.

        Returns:
            ``{"loss_rpn_cls", "loss_rpn_loc"}``, scalars, weighted by ``self.loss_weight``.
        """
        dw, assignment = dw_training_step(
            self.criterion,
            "DW-RPN",
            [pred_objectness_logits, pred_anchor_deltas],
            lambda: self.criterion_inputs(anchors, pred_objectness_logits, pred_anchor_deltas),
            gt_boxes,
            gt_labels,
        )
        # (anchor, box) pairs with the anchor's centre inside the box, per image.
        get_event_storage().put_scalar("rpn/num_candidates", len(assignment.image) / len(gt_boxes))
        losses = {
            "loss_rpn_cls": dw["loss_cls_pos"] + dw["loss_cls_neg"],
            "loss_rpn_loc": dw["loss_loc"],
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}
