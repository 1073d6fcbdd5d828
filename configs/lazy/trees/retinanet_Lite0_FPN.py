"""detectron2's RetinaNet (its zoo model: anchors, IoU matching, focal loss, inference) on the
ImageNet EfficientNet-Lite0-FPN, fine-tuned on the tree crowns. Twin of
configs/trees/retinanet_Lite0_FPN.yaml."""

from detectron2.layers import ShapeSpec

from dual_weighting.engine.lazy import model_zoo

from .base_lite0_fpn import (  # noqa: F401
    _FPN_CHANNELS,
    _PIXEL_MEAN,
    _PIXEL_STD,
    dataloader,
    lite0_fpn,
    lr_multiplier,
    optimizer,
    train,
)

# detectron2's lr for RetinaNet, 0.01 at batch 16, scaled to batch 8: at the base config's 0.01
# its losses became NaN at iteration 59 (seed 0, still in the warm-up).
optimizer.lr = 0.005

model = model_zoo.get_config("COCO-Detection/retinanet_R_50_FPN_1x.py").model
model.backbone = lite0_fpn()
model.num_classes = 1
# Two-conv towers, as the FCOS detectors of configs/lazy/trees/, on the FPN's width.
model.head.input_shape = [ShapeSpec(channels=_FPN_CHANNELS)] * 5
model.head.conv_dims = [_FPN_CHANNELS] * 2
model.pixel_mean, model.pixel_std = _PIXEL_MEAN, _PIXEL_STD
model.input_format = "RGB"
