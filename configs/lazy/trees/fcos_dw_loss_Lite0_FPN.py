"""detectron2's own FCOS trained with DW's losses (DWLossFCOS) on the ImageNet
EfficientNet-Lite0-FPN, fine-tuned on the tree crowns: fcos_Lite0_FPN.py with the model class
changed. Twin of configs/trees/fcos_dw_loss_Lite0_FPN.yaml."""

from detectron2.config import LazyCall as L

from dual_weighting import DWCriterion
from dual_weighting.modeling import DWLossFCOS

from .fcos_Lite0_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model._target_ = DWLossFCOS
# FCOS's focal loss has no place in DW's losses.
del model.focal_loss_alpha
del model.focal_loss_gamma
model.criterion = L(DWCriterion)(**DWCriterion.defaults())
