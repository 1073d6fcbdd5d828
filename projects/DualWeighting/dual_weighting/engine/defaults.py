"""The command line of ``train_net.py``: detectron2's arguments plus ``--register-coco``, the
config setup and the dataset registration every worker runs."""

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup

from ..config import add_dw_config
from ..data import default_synthetic_root, register_coco_from_spec, register_synthetic


def default_dw_argument_parser(epilog=None):
    """detectron2's ``default_argument_parser`` plus ``--register-coco NAME=JSON:IMAGE_ROOT``."""
    parser = default_argument_parser(epilog=epilog)
    parser.add_argument(
        "--register-coco",
        action="append",
        default=[],
        metavar="NAME=JSON:IMAGE_ROOT",
        help="register a COCO-format dataset under NAME (repeatable)",
    )
    return parser


def setup_cfg(args):
    """A frozen config: detectron2's defaults, DW's keys, ``args.config_file``, ``args.opts``;
    then detectron2's ``default_setup`` (output folder, logging, seed)."""
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def register_datasets(args):
    """Register the generated dataset (``dw_synthetic_{train,val}`` under DETECTRON2_DATASETS, as
    detectron2 does for COCO) and those given with ``--register-coco``; run in every worker."""
    register_synthetic(default_synthetic_root())
    for spec in args.register_coco:
        register_coco_from_spec(spec)
