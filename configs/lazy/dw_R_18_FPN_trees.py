# The demo's small DW-FCOS (ResNet-18-FPN, 128 channels, from scratch) on real aerial photographs:
# tree crowns in NEON orthophotos boxed by the DeepForest authors, tiled to 400 x 400 px
# (dual_weighting.data.trees; `python tools/prepare_trees.py` downloads and converts them).
# Twin of configs/dw_R_18_FPN_trees.yaml.
from .dw_R_18_FPN_synthetic_demo import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.num_classes = 1

dataloader.train.dataset.names = "deepforest_trees_train"
dataloader.test.dataset.names = "deepforest_trees_val"
# Tiles at 0.64 of their size (crowns of 5-68 px, median 26), one scale for training and test:
# on 2 CPU cores about 1.4 s an iteration, so that more iterations fit in the same time.
dataloader.train.mapper.augmentations[0].update(short_edge_length=[256], max_size=256)
dataloader.test.mapper.augmentations[0].update(short_edge_length=256, max_size=256)
