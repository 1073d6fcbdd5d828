# R-101 with box refine, single-scale, 1x: the release's dw_r101_fpn_1x_coco.py and the R-101
# row of the spec's table. No published number or model: the release's R-101 model (46.1 AP) is
# dw_R_101_FPN_ms_2x.py. Twin of configs/dw_R_101_FPN_refine_1x.yaml.
from .dw_R_50_FPN_refine_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# detectron2 hosts no torchvision ResNet-101: make this file with
# tools/convert_torchvision_resnet.py (see README, "Pretrained weights").
train.init_checkpoint = "pretrained/torchvision_R_101.pkl"
model.backbone.bottom_up.depth = 101
