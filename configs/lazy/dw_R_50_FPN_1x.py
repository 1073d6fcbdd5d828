# Published: 41.5 box AP on COCO val2017. Twin of configs/dw_R_50_FPN_1x.yaml.
from detectron2.config import LazyCall as L

from dual_weighting.data import ReleaseResizeShortestEdge

from .base_dw import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# torchvision's ImageNet ResNet-50, converted by detectron2.
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
# Images resized exactly as the release's (OpenCV bilinear, mmcv's size rounding), in training
# (the sizes drawn as before) and at test.
dataloader.train.mapper.augmentations[0]._target_ = ReleaseResizeShortestEdge
dataloader.test.mapper.augmentations = [
    L(ReleaseResizeShortestEdge)(short_edge_length=800, max_size=1333)
]
# Boxes to the original image's size as the release's post-processing brings them (before the
# NMS, no second clip, empty boxes kept).
model.test_release_postprocess = True
