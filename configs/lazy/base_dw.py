"""DW-FCOS as released by the authors (MMDetection 2.x), as a detectron2 LazyConfig: the twin of
configs/Base-DW.yaml, built from the pieces in common/ and detectron2's own (``common/optim.py``,
``common/train.py``). The published models are the leaves beside it. See DW_SPEC.md.
"""

from dual_weighting.engine.lazy import model_zoo

from .common.data.dw_coco import dataloader  # noqa: F401
from .common.dw_schedule import release_schedule
from .common.models.dw_fcos import model  # noqa: F401

# SGD, momentum 0.9, weight decay 1e-4 and none on norm parameters (detectron2's common SGD).
optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.01

train = model_zoo.get_config("common/train.py").train
# The release's 1x (common/dw_schedule.py).
train.max_iter, lr_multiplier = release_schedule(epochs=12)
train.checkpointer.period = 10000
train.eval_period = 10000
