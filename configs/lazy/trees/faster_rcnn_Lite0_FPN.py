"""detectron2's Faster R-CNN (its zoo Mask R-CNN without the mask branch: RPN, StandardROIHeads,
box head) on the ImageNet EfficientNet-Lite0-FPN, fine-tuned on the tree crowns. The RPN reads
P3-P7 (one anchor size a level), the RoI heads P3-P5. Twin of
configs/trees/faster_rcnn_Lite0_FPN.yaml."""

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

model = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py").model
for _key in ("mask_in_features", "mask_pooler", "mask_head"):
    model.roi_heads.pop(_key)
model.backbone = lite0_fpn()
model.proposal_generator.in_features = ["p3", "p4", "p5", "p6", "p7"]
model.proposal_generator.anchor_generator.strides = [8, 16, 32, 64, 128]
model.proposal_generator.head.in_channels = _FPN_CHANNELS
model.roi_heads.num_classes = 1
model.roi_heads.box_in_features = ["p3", "p4", "p5"]
model.roi_heads.box_pooler.scales = [1 / 8, 1 / 16, 1 / 32]
model.roi_heads.box_head.input_shape = ShapeSpec(channels=_FPN_CHANNELS, height=7, width=7)
model.pixel_mean, model.pixel_std = _PIXEL_MEAN, _PIXEL_STD
model.input_format = "RGB"
