"""Faster R-CNN whose RPN is trained with DW's losses (DWRPN) on the ImageNet
EfficientNet-Lite0-FPN, fine-tuned on the tree crowns: faster_rcnn_Lite0_FPN.py with the proposal
generator changed. Twin of configs/trees/dw_rpn_faster_rcnn_Lite0_FPN.yaml."""

from ..common.models.dw_rpn import dw_rpn_like
from .faster_rcnn_Lite0_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# detectron2's RPN without its anchor matcher, sampling and box loss, which DW replaces.
model.proposal_generator = dw_rpn_like(model.proposal_generator)
