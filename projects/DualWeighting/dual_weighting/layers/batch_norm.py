"""The release's backbone BatchNorm (MMDetection's ``norm_eval=True``): frozen statistics,
trained affine parameters. detectron2's ``BN`` updates the statistics, ``FrozenBN`` freezes all.
"""

import torch.nn.functional as F
from detectron2.layers import get_norm
from torch import nn

__all__ = ["FrozenStatsBatchNorm2d", "resolve_norm"]


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` in train and eval
    mode, (N, C, H, W); only ``weight`` and ``bias`` train.

    A :class:`torch.nn.BatchNorm2d`, so detectron2 gives it ``SOLVER.WEIGHT_DECAY_NORM`` and
    ``FREEZE_AT`` turns it into ``FrozenBatchNorm2d``. Its state dict has
    ``FrozenBatchNorm2d``'s names, without ``num_batches_tracked`` (ignored when loaded), so
    ImageNet weights and converted checkpoints load with no missing or unexpected keys.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__(num_features, eps=eps)
        self.num_batches_tracked = None

    def forward(self, x):
        # training=False: the running statistics, unchanged; gradients reach weight and bias.
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        # Skip BatchNorm's hook, which would add a num_batches_tracked and report it unexpected.
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, statistics frozen"


# Norm names the DW backbone understands on top of detectron2's ``get_norm`` names.
_DW_NORMS = {"FrozenStatsBN": FrozenStatsBatchNorm2d}


def resolve_norm(norm, key="MODEL.RESNETS.NORM"):
    """The ``norm`` for detectron2's ResNet blocks: the class of a DW name ("FrozenStatsBN"),
    else a ``get_norm`` name itself; a ValueError naming ``key`` for anything else."""
    if norm in _DW_NORMS:
        return _DW_NORMS[norm]
    try:
        get_norm(norm, 32)
    except KeyError:
        raise ValueError(
            f"{key} = {norm!r} is not a norm name: use one of {sorted(_DW_NORMS)} or a name of "
            "detectron2's get_norm (BN, SyncBN, FrozenBN, GN, ...)"
        ) from None
    return norm
