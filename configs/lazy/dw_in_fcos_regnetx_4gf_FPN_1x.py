"""DW-FCOS on another detectron2 backbone: detectron2's RegNetX-4GF (from its model zoo's
``COCO-InstanceSegmentation/mask_rcnn_regnetx_4gf_dds_fpn_1x.py``: FrozenBN, pycls' ImageNet
weights, its pixel statistics and weight decay) under the FPN, data and schedule of
``dw_in_fcos_R_50_FPN_1x.py``. The head is unchanged: it only needs P3-P7 of equal width.
"""

from dual_weighting.engine.lazy import model_zoo

from .dw_in_fcos_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

_regnet = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_regnetx_4gf_dds_fpn_1x.py")
model.backbone.bottom_up = _regnet.model.backbone.bottom_up
# Stages s2-s4 have strides 8, 16, 32, as res3-res5 of a ResNet: the FPN makes p3-p5 of them and
# P6/P7 from P5, as before.
model.backbone.bottom_up.out_features = ["s2", "s3", "s4"]
model.backbone.in_features = "${.bottom_up.out_features}"
model.pixel_std = _regnet.model.pixel_std
optimizer.weight_decay = _regnet.optimizer.weight_decay
train.init_checkpoint = _regnet.train.init_checkpoint
train.cudnn_benchmark = _regnet.train.cudnn_benchmark
