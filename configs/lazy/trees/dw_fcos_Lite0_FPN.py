"""DW-FCOS (the release's head and criterion) on the ImageNet EfficientNet-Lite0-FPN, fine-tuned
on the tree crowns: the `make demo` model. Twin of configs/trees/dw_fcos_Lite0_FPN.yaml."""

from ..common.models.dw_fcos import model
from .base_lite0_fpn import (  # noqa: F401
    _PIXEL_MEAN,
    _PIXEL_STD,
    dataloader,
    lite0_fpn,
    lr_multiplier,
    optimizer,
    train,
)

model.backbone = lite0_fpn()
model.num_classes = 1
model.head.num_convs = 2
model.pixel_mean, model.pixel_std = _PIXEL_MEAN, _PIXEL_STD
