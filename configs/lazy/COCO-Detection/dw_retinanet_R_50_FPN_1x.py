"""detectron2's RetinaNet trained with Dual Weighting: ``COCO-Detection/retinanet_R_50_FPN_1x.py``
of detectron2's model zoo with its model made DW-RetinaNet and nothing else changed (its
backbone, anchors, box transform, inference, data, solver and schedule stay detectron2's).
Twin of configs/COCO-Detection/dw_retinanet_R_50_FPN_1x.yaml."""

from detectron2.config import LazyCall as L

from dual_weighting import DWCriterion, DWRetinaNet
from dual_weighting.engine.lazy import model_zoo

# Underscored: LazyConfig.load leaves it out of the config.
_retinanet = model_zoo.get_config("COCO-Detection/retinanet_R_50_FPN_1x.py")
dataloader = _retinanet.dataloader
optimizer = _retinanet.optimizer
lr_multiplier = _retinanet.lr_multiplier
train = _retinanet.train

model = _retinanet.model
model._target_ = DWRetinaNet
# RetinaNet's IoU matching and its losses have no place in DW, which decides who is positive.
del model.anchor_matcher
del model.focal_loss_alpha
del model.focal_loss_gamma
# The joint score's quality factor (MODEL.DW_RETINANET.QUALITY): the class score alone, with
# detectron2's RetinaNetHead. For "objectness", also give the head its objectness conv:
# model.quality=objectness model.head._target_=dual_weighting.DWRetinaNetHead
model.quality = "none"
# DW's release hyper-parameters (model.criterion.<name>=... overrides them).
model.criterion = L(DWCriterion)(**DWCriterion.defaults())
