"""The release's backbone BatchNorm: frozen statistics, trained affine parameters.

MMDetection's ``norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True`` (every DW release
config) keeps the BN layers in eval mode while the detector trains: the ImageNet running statistics
are used and never updated, while ``weight`` and ``bias`` are learned. detectron2 has no such norm:
``BN`` updates the statistics and ``FrozenBN`` freezes ``weight`` and ``bias`` too.
"""

import torch.nn.functional as F
from detectron2.layers import get_norm
from torch import nn

__all__ = ["FrozenStatsBatchNorm2d", "resolve_norm"]


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` in train and eval mode.

    Input and output (N, C, H, W). ``running_mean`` and ``running_var`` are buffers that no
    forward pass changes; ``weight`` and ``bias`` are parameters that train.

    A subclass of :class:`torch.nn.BatchNorm2d`, so that detectron2 treats it as the BN it is:
    ``get_default_optimizer_params`` gives its parameters ``SOLVER.WEIGHT_DECAY_NORM``, and
    ``FrozenBatchNorm2d.convert_frozen_batchnorm`` (``MODEL.BACKBONE.FREEZE_AT``) turns it into a
    fully frozen ``FrozenBatchNorm2d``.

    Its state dict holds ``weight``, ``bias``, ``running_mean`` and ``running_var``, the names of
    ``FrozenBatchNorm2d``: checkpoints move between the two, and detectron2's ImageNet weights and
    converted release checkpoints (which drop ``num_batches_tracked``) load with no missing or
    unexpected keys. A ``num_batches_tracked`` in a checkpoint (from ``BN``) is ignored: with
    statistics that never update, the count means nothing.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__(num_features, eps=eps)
        # Not a buffer in the state dict (see the class docstring).
        self.num_batches_tracked = None

    def forward(self, x):
        # training=False: normalise with the running statistics and leave them as they are,
        # whatever self.training says. Gradients still reach weight and bias.
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        # Skip BatchNorm's own hook, which adds a num_batches_tracked to checkpoints without one
        # (such as every converted checkpoint) and so would report it as unexpected.
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, statistics frozen"


# Norm names the DW backbone understands on top of detectron2's ``get_norm`` names.
_DW_NORMS = {"FrozenStatsBN": FrozenStatsBatchNorm2d}


def resolve_norm(norm, key="MODEL.RESNETS.NORM"):
    """What to pass as ``norm`` to detectron2's ResNet blocks for the config value ``norm``.

    Returns the class for the DW names ("FrozenStatsBN"), else ``norm`` itself, which detectron2's
    ``get_norm`` resolves ("BN", "FrozenBN", "SyncBN", "GN", ...; "" for none).

    Raises:
        ValueError: naming ``key`` when ``norm`` is neither.
    """
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
