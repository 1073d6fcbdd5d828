"""Training and evaluation with detectron2's engine: the trainer and the command line that
``train_net.py`` and the benchmark share."""

from .defaults import default_dw_argument_parser, register_datasets, setup_cfg
from .trainer import DWTrainer

__all__ = ["DWTrainer", "default_dw_argument_parser", "register_datasets", "setup_cfg"]
