# Published: 47.9 box AP on COCO val2017. Twin of configs/dw_R_50_FPN_DCN_refine_ms_2x.yaml.
from .dw_R_50_FPN_refine_ms_2x import (  # noqa: F401
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

# DCNv2 on the 3x3 convs of res3-res5, and on the last conv of both head towers.
model.backbone.bottom_up.deform_on_per_stage = [False, True, True, True]
model.head.dcn_on_last_conv = True
