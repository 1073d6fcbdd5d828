# The quick smoke run's model (`make demo-shapes`) as a LazyConfig: a small DW-FCOS trained from
# scratch on CPU on the generated shapes dataset (tools/sample_data/shapes.py, 256x320 images,
# 6 classes).
# Twin of configs/dw_R_18_FPN_synthetic_demo.yaml.
from .base_dw import dataloader, model, optimizer, train  # noqa: F401
from .common.dw_schedule import step_schedule

# Made for CPU; `train.device=cuda` on the command line runs it on a GPU.
train.device = "cpu"
train.init_checkpoint = ""
# From scratch: nothing frozen, and trainable norm (there are no pretrained statistics).
model.backbone.bottom_up.update(depth=18, res2_out_channels=64, norm="BN", freeze_at=0)
model.backbone.out_channels = 128
model.head.num_convs = 2
model.num_classes = 6

dataloader.train.dataset.names = "dw_synthetic_train"
dataloader.test.dataset.names = "dw_synthetic_val"
# Two cores: one loader process leaves the other to the model.
dataloader.train.num_workers = dataloader.test.num_workers = 1
# Training at 3/4 of the images' size buys 45% more iterations in the same time; more
# iterations matter most this early in training. Evaluation is at full size.
dataloader.train.mapper.augmentations[0].update(short_edge_length=[192], max_size=240)
dataloader.test.mapper.augmentations[0].update(short_edge_length=256, max_size=320)

# About 5 minutes on 2 CPU cores (0.9 s an iteration; docs/BENCHMARKS.md). One late lr step: with
# seed 0, AP50 60.4, against 58.2 with steps at 250 and 295.
dataloader.train.total_batch_size = 8
optimizer.lr = 0.01
train.max_iter = 320
lr_multiplier = step_schedule(train.max_iter, steps=(280,), warmup_iters=30)
train.checkpointer.period = 50
train.eval_period = 0
# A fixed seed: on CPU the same seed gives the same run (the soak run of docs/BENCHMARKS.md).
train.seed = 0
