"""DW's RPN in place of detectron2's: a LazyConfig piece for Faster R-CNN configs."""

from detectron2.config import LazyCall as L

from dual_weighting import DWRPN, DWCriterion


def dw_rpn_like(rpn):
    """``L(DWRPN)`` with the features, head, anchors, box transform and proposal settings of
    detectron2's ``L(RPN)`` ``rpn``; its anchor matcher, sampling and box loss, which DW replaces,
    are left out."""
    return L(DWRPN)(
        in_features=rpn.in_features,
        head=rpn.head,
        anchor_generator=rpn.anchor_generator,
        box2box_transform=rpn.box2box_transform,
        pre_nms_topk=rpn.pre_nms_topk,
        post_nms_topk=rpn.post_nms_topk,
        nms_thresh=rpn.nms_thresh,
        # DW's release hyper-parameters (model.proposal_generator.criterion.<name>=... overrides).
        criterion=L(DWCriterion)(**DWCriterion.defaults()),
        # DW's classifier init (MODEL.DW.PRIOR_PROB) for the objectness; None: detectron2's.
        objectness_prior_prob=0.02,
    )
