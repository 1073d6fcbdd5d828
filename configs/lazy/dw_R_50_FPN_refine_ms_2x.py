# Published: 44.8 box AP on COCO val2017. Twin of configs/dw_R_50_FPN_refine_ms_2x.yaml.
from .common.dw_schedule import release_schedule
from .dw_R_50_FPN_refine_1x import dataloader, model, optimizer, train  # noqa: F401

# Shorter side sampled uniformly in [480, 960].
dataloader.train.mapper.augmentations[0].short_edge_length = [480, 960]
dataloader.train.mapper.augmentations[0].sample_style = "range"
# The release's 2x: 24 epochs of 7,330 iterations, lr x0.1 after epochs 16 and 22 (see
# common/dw_schedule.py).
train.max_iter, lr_multiplier = release_schedule(epochs=24)
