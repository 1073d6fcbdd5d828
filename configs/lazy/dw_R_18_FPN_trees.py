# The demo's small DW-FCOS (ResNet-18-FPN, 128 channels, from scratch) on real aerial photographs:
# tree crowns in NEON orthophotos boxed by the DeepForest authors, tiled to 400 x 400 px
# (dual_weighting.data.trees registers them; `python tools/prepare_trees.py` converts them).
# Twin of configs/dw_R_18_FPN_trees.yaml.
from .common.dw_schedule import step_schedule
from .dw_R_18_FPN_synthetic_demo import dataloader, model, optimizer, train  # noqa: F401

model.num_classes = 1

dataloader.train.dataset.names = "deepforest_trees_train"
dataloader.test.dataset.names = "deepforest_trees_val"
# Tiles at 0.64 of their size (crowns of 5-68 px, median 26), one scale for training and test:
# on 2 CPU cores about 1.4 s an iteration, so that more iterations fit in the same time.
dataloader.train.mapper.augmentations[0].update(short_edge_length=[256], max_size=256)
dataloader.test.mapper.augmentations[0].update(short_edge_length=256, max_size=256)

# The benchmark's schedule: 400 iterations, lr steps at 309 and 373, a 200-iteration warm-up
# (with 50, DW-FCOS collapsed in two of three runs; docs/BENCHMARKS.md, "Real photographs").
train.max_iter = 400
lr_multiplier = step_schedule(train.max_iter, steps=(309, 373), warmup_iters=200)
