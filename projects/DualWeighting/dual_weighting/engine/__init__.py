"""Training and evaluation with detectron2's engine, for yacs configs (:class:`DWTrainer`) and
LazyConfigs (:mod:`.lazy`), and the checks of a run's set-up (:mod:`.checks`)."""

from .checks import SetupError, config_kind
from .defaults import (
    check_command_line,
    default_dw_argument_parser,
    load_tool_config,
    load_yacs_config,
    parse_tool_args,
    register_datasets,
    setup_cfg,
    tool_argument_parser,
)
from .lazy import do_test, do_train, lazy_main, load_lazy_config, setup_lazy_cfg
from .trainer import DWTrainer

__all__ = [
    "DWTrainer",
    "SetupError",
    "check_command_line",
    "config_kind",
    "default_dw_argument_parser",
    "do_test",
    "do_train",
    "lazy_main",
    "load_lazy_config",
    "load_tool_config",
    "load_yacs_config",
    "parse_tool_args",
    "register_datasets",
    "setup_cfg",
    "tool_argument_parser",
    "setup_lazy_cfg",
]
