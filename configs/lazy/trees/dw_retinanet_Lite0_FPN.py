"""detectron2's RetinaNet trained with Dual Weighting (DWRetinaNet) on the ImageNet
EfficientNet-Lite0-FPN, fine-tuned on the tree crowns: retinanet_Lite0_FPN.py with the model
class and the joint score's quality changed. Twin of configs/trees/dw_retinanet_Lite0_FPN.yaml."""

from detectron2.config import LazyCall as L

from dual_weighting import DWCriterion, DWRetinaNet, DWRetinaNetHead

from .retinanet_Lite0_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model._target_ = DWRetinaNet
# RetinaNet's IoU matching and its losses have no place in DW, which decides who is positive.
del model.anchor_matcher
del model.focal_loss_alpha
del model.focal_loss_gamma
# The joint score's quality factor (MODEL.DW_RETINANET.QUALITY): the class score times an
# objectness conv on the box tower. With the class score alone DW blew up the unnormalised
# classification tower (seed 0, iteration 115: docs/BENCHMARKS.md); with objectness, seeds 0-2
# trained through.
model.quality = "objectness"
model.head._target_ = DWRetinaNetHead
model.criterion = L(DWCriterion)(**DWCriterion.defaults())
