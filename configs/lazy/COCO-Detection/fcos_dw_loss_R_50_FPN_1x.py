"""detectron2's own FCOS trained with DW's losses: ``COCO-Detection/fcos_R_50_FPN_1x.py`` of
detectron2's model zoo with its meta-architecture made ``DWLossFCOS`` and nothing else changed
(its head, anchor points, inference, data, solver and schedule stay detectron2's). Twin of
configs/COCO-Detection/fcos_dw_loss_R_50_FPN_1x.yaml."""

from detectron2.config import LazyCall as L

from dual_weighting import DWCriterion
from dual_weighting.engine.lazy import model_zoo
from dual_weighting.modeling import DWLossFCOS

# Underscored: LazyConfig.load leaves it out of the config.
_fcos = model_zoo.get_config("COCO-Detection/fcos_R_50_FPN_1x.py")
dataloader = _fcos.dataloader
optimizer = _fcos.optimizer
lr_multiplier = _fcos.lr_multiplier
train = _fcos.train

model = _fcos.model
model._target_ = DWLossFCOS
# FCOS's focal loss has no place in DW's losses.
del model.focal_loss_alpha
del model.focal_loss_gamma
# DW's release hyper-parameters (model.criterion.<name>=... overrides them).
model.criterion = L(DWCriterion)(**DWCriterion.defaults())
