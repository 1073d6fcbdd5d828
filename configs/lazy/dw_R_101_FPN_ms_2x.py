# Published: 46.1 box AP on COCO val2017. Twin of configs/dw_R_101_FPN_ms_2x.yaml.
from detectron2.config import LazyCall as L

from dual_weighting.data import ReleaseResizeShortestEdge

from .base_dw import dataloader, model, optimizer, train  # noqa: F401
from .common.dw_schedule import release_schedule

# detectron2 hosts no torchvision ResNet-101: make this file with
# tools/convert_torchvision_resnet.py (see README, "Pretrained weights").
train.init_checkpoint = "pretrained/torchvision_R_101.pkl"
model.backbone.bottom_up.depth = 101
dataloader.train.mapper.augmentations[0].short_edge_length = [480, 960]
dataloader.train.mapper.augmentations[0].sample_style = "range"
# Images resized exactly as the release's (OpenCV bilinear, mmcv's size rounding), in training
# (the sizes drawn as before) and at test.
dataloader.train.mapper.augmentations[0]._target_ = ReleaseResizeShortestEdge
dataloader.test.mapper.augmentations = [
    L(ReleaseResizeShortestEdge)(short_edge_length=800, max_size=1333)
]
# Boxes to the original image's size as the release's post-processing brings them (before the
# NMS, no second clip, empty boxes kept).
model.test_release_postprocess = True
# The release's 2x: 24 epochs of 7,330 iterations, lr x0.1 after epochs 16 and 22 (see
# common/dw_schedule.py).
train.max_iter, lr_multiplier = release_schedule(epochs=24)
