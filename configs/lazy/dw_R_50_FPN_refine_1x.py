# Published: 42.1 box AP on COCO val2017. Twin of configs/dw_R_50_FPN_refine_1x.yaml.
from .dw_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.head.box_refine = True
