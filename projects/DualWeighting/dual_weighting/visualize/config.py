"""The config that the picture tools (demo, assignment maps) run a model with."""

import torch
from detectron2.config import get_cfg

from ..config import add_dw_config
from ..engine.checks import require_kind


def load_cfg(config_file, opts=()):
    """detectron2's and DW's defaults, then ``config_file``, then ``opts`` (KEY VALUE list); a
    config that asks for CUDA on a machine without it runs on the CPU (said on stdout), since
    drawing a few images needs no GPU. Not frozen.

    Raises:
        SetupError: ``config_file`` is a LazyConfig (the picture tools take yacs configs); the
            message names its yaml twin.
    """
    require_kind(config_file, "yacs", "this tool")
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available: running on the CPU.")
        cfg.MODEL.DEVICE = "cpu"
    return cfg
