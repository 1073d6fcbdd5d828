"""Faster R-CNN whose RPN is trained with DW's losses (DWRPN) on the ImageNet
EfficientNet-Lite0-FPN, fine-tuned on the tree crowns: faster_rcnn_Lite0_FPN.py with the proposal
generator changed. Twin of configs/trees/dw_rpn_faster_rcnn_Lite0_FPN.yaml."""

from detectron2.config import LazyCall as L

from dual_weighting import DWRPN, DWCriterion

from .faster_rcnn_Lite0_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# detectron2's RPN without its anchor matcher, sampling and box loss, which DW replaces.
_rpn = model.proposal_generator
model.proposal_generator = L(DWRPN)(
    in_features=_rpn.in_features,
    head=_rpn.head,
    anchor_generator=_rpn.anchor_generator,
    box2box_transform=_rpn.box2box_transform,
    pre_nms_topk=_rpn.pre_nms_topk,
    post_nms_topk=_rpn.post_nms_topk,
    nms_thresh=_rpn.nms_thresh,
    criterion=L(DWCriterion)(**DWCriterion.defaults()),
    # DW's classifier init (MODEL.DW.PRIOR_PROB) for the objectness.
    objectness_prior_prob=0.02,
)
