"""The config that the picture tools (demo, assignment maps) run a model with."""

import torch

from ..engine.defaults import load_yacs_config


def load_cfg(config_file, opts=()):
    """:func:`~dual_weighting.engine.load_yacs_config` of ``config_file`` and ``opts`` (KEY
    VALUE list), not frozen; a config that asks for CUDA on a machine without it runs on the
    CPU (said on stdout), since drawing a few images needs no GPU.

    Raises:
        SetupError: ``config_file`` is a LazyConfig (the picture tools take yacs configs); the
            message names its yaml twin.
    """
    cfg = load_yacs_config(config_file, opts)
    cfg.defrost()
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available: running on the CPU.")
        cfg.MODEL.DEVICE = "cpu"
    return cfg
