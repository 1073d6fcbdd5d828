"""Faster R-CNN whose RPN is trained with DW's losses (DWRPN) on the ImageNet
EfficientNet-Lite0-FPN, fine-tuned on the tree crowns: faster_rcnn_Lite0_FPN.py with the proposal
generator and its head's norm changed. Twin of configs/trees/dw_rpn_faster_rcnn_Lite0_FPN.yaml."""

from dual_weighting import NormRPNHead

from ..common.models.dw_rpn import dw_rpn_like
from .faster_rcnn_Lite0_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# detectron2's RPN without its anchor matcher, sampling and box loss, which DW replaces.
model.proposal_generator = dw_rpn_like(model.proposal_generator)
# GroupNorm between the head's conv and its ReLU (MODEL.RPN.HEAD_NAME "NormRPNHead"): with
# detectron2's unnormalised head DW blew up the FPN at iteration 112 (seed 0, docs/BENCHMARKS.md).
model.proposal_generator.head._target_ = NormRPNHead
model.proposal_generator.head.norm = "GN"
