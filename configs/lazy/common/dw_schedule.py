"""The release's schedules in iterations (like detectron2's ``configs/common/coco_schedule.py``).

The release counts epochs. COCO train2017 keeps 117,266 images after the empty-image filter; at
16 a batch an epoch is ceil(117266 / 16) = 7,330 iterations. 1x = 12 epochs with lr x0.1 after
epochs 8 and 11 (87,960 iterations, steps 58,640 and 80,630); 2x = 24 epochs with steps after 16
and 22 (175,920; 117,280 and 161,260). detectron2's own 1x is 90k iterations, steps 60k/80k.
"""

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

COCO_ITERS_PER_EPOCH = 7330


def step_schedule(max_iter, steps, warmup_iters=1000):
    """The release's lr multiplier over ``max_iter`` iterations: linear warm-up from 0.001 over
    ``warmup_iters`` iterations, then x0.1 at each iteration of ``steps``.

    As every detectron2 LazyConfig schedule, it is a function of the fraction of training done:
    overriding ``train.max_iter`` alone stretches it, steps and warm-up included.
    """
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**k for k in range(len(steps) + 1)],
            milestones=list(steps),
            num_updates=max_iter,
        ),
        warmup_length=min(warmup_iters / max_iter, 1.0),
        warmup_method="linear",
        warmup_factor=0.001,
    )


def release_schedule(epochs):
    """``(max_iter, lr_multiplier)`` of the release's ``epochs``-epoch schedule on COCO: 12 (1x,
    steps after epochs 8 and 11) or 24 (2x, after 16 and 22)."""
    step_epochs = {12: (8, 11), 24: (16, 22)}
    if epochs not in step_epochs:
        raise ValueError(f"The release has 12- and 24-epoch schedules, not {epochs}")
    max_iter = epochs * COCO_ITERS_PER_EPOCH
    steps = tuple(e * COCO_ITERS_PER_EPOCH for e in step_epochs[epochs])
    return max_iter, step_schedule(max_iter, steps)
