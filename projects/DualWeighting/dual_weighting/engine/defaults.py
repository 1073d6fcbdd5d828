"""The command line of ``train_net.py`` and the tools: arguments, yacs config setup (LazyConfig in
:mod:`.lazy`), the dataset registration every worker runs and the checks before any starts."""

import argparse
import functools
import os

import torch
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from omegaconf import OmegaConf

from ..config import add_dw_config
from ..data import (
    default_synthetic_root,
    parse_class_names,
    register_coco_from_spec,
    register_synthetic,
    register_trees,
    register_voc_from_specs,
    register_yolo_from_spec,
)
from .checks import (
    SetupError,
    check_device,
    check_num_gpus,
    check_weights,
    check_yacs_overrides,
    config_kind,
    require_kind,
)
from .dataset_checks import (
    LAZY_NUM_CLASSES,
    YACS_NUM_CLASSES,
    check_class_names,
    check_datasets,
    check_num_classes,
    model_class_names,
)
from .lazy import load_lazy_config
from .run_log import setup_dw_logger


def default_dw_argument_parser(epilog=None):
    """detectron2's ``default_argument_parser`` plus the dataset flags ``--register-coco``,
    ``--register-voc``, ``--register-yolo`` and ``--voc-classes``."""
    return _with_dataset_flags(default_argument_parser(epilog=epilog))


def _with_dataset_flags(parser):
    """``parser`` with the dataset flags, which :func:`register_datasets` reads."""
    flags = (
        ("coco", "NAME=JSON:IMAGE_ROOT", "a COCO-format dataset"),
        (
            "voc",
            "NAME=ANNOTATIONS[:IMAGE_DIR]",
            "a Pascal VOC dataset: a folder of .xml files or an ImageSets/Main/*.txt list; "
            "class names from --voc-classes, else from the files, sorted, shared by all "
            "--register-voc datasets",
        ),
        ("yolo", "NAME=DATA_YAML:SPLIT", "a split of a YOLO dataset (Ultralytics data.yaml)"),
    )
    for kind, metavar, what in flags:
        parser.add_argument(
            f"--register-{kind}",
            action="append",
            default=[],
            metavar=metavar,
            help=f"register {what} under NAME (repeatable)",
        )
    parser.add_argument(
        "--voc-classes",
        metavar="FILE_OR_LIST",
        help="the class names of the --register-voc datasets, in the order of the model's class "
        "numbers: a file of one name a line (a training run's class_names.txt) or the names "
        "separated by commas; default: the names in the files, sorted",
    )
    return parser


def tool_argument_parser(doc, config_help="model config", dataset_flags=False):
    """The command line of the tools that load one config (:func:`load_tool_config`): the
    tool's docstring ``doc`` as its help (first paragraph, then from "Examples:" on), a required
    ``--config-file`` and, if ``dataset_flags``, the dataset flags. The tool adds its own
    arguments, then parses with :func:`parse_tool_args`."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog="Examples:" + doc.split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help=config_help)
    return _with_dataset_flags(parser) if dataset_flags else parser


def parse_tool_args(parser, argv=None):
    """``parser.parse_args(argv)`` after adding ``--opts`` (KEY VALUE overrides), last: it takes
    everything after it."""
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides, KEY VALUE pairs (e.g. MODEL.WEIGHTS model_final.pth)",
    )
    return parser.parse_args(argv)


def load_yacs_config(config_file, opts=()):
    """A frozen config: detectron2's defaults, DW's keys, ``config_file``, then the ``KEY VALUE``
    overrides ``opts``; a SetupError for a LazyConfig or a malformed or unknown override."""
    require_kind(config_file, "yacs", "the yacs loader")
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.merge_from_file(config_file)
    check_yacs_overrides(cfg, list(opts), config_file)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def load_tool_config(config_file, opts=()):
    """:func:`load_yacs_config` for the tools that run a model on a few images: not frozen, and
    on the CPU (said on stdout) when it asks for CUDA on a machine without it."""
    cfg = load_yacs_config(config_file, opts)
    cfg.defrost()
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available: running on the CPU.")
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def setup_cfg(args):
    """:func:`load_yacs_config` of ``args.config_file`` and ``args.opts``, then detectron2's
    ``default_setup`` (output folder, logging, seed), this package's loggers included."""
    cfg = load_yacs_config(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_dw_logger(cfg.OUTPUT_DIR)
    return cfg


def register_datasets(args):
    """Register the generated dataset, the tree crowns (under DETECTRON2_DATASETS) and those of
    the dataset flags; run in every worker."""
    register_synthetic(default_synthetic_root())
    register_trees()
    for spec in args.register_coco:
        register_coco_from_spec(spec)
    voc_classes = getattr(args, "voc_classes", None)
    register_voc_from_specs(
        getattr(args, "register_voc", ()), parse_class_names(voc_classes) if voc_classes else None
    )
    for spec in getattr(args, "register_yolo", ()):
        register_yolo_from_spec(spec)


def _names(value):
    return [value] if isinstance(value, str) else list(value or ())


def check_command_line(args):
    """Register the datasets and check, for either kind of config, all that can be checked
    before a worker starts: the config and overrides, the device, ``--num-gpus``, the datasets
    (registered, on disk, class count and names) and the initial weights. A SetupError names
    the problem and the fix."""
    try:
        register_datasets(args)
    except (ValueError, OSError) as e:
        raise SetupError(f"Cannot register a dataset: {e}") from e
    if config_kind(args.config_file) == "yacs":
        cfg = load_yacs_config(args.config_file, args.opts)
        device, device_key = cfg.MODEL.DEVICE, "MODEL.DEVICE"
        weights, weights_key, output_dir = cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS", cfg.OUTPUT_DIR
        classes_key = YACS_NUM_CLASSES.get(cfg.MODEL.META_ARCHITECTURE)
        num_classes = None
        if classes_key:
            num_classes = functools.reduce(getattr, classes_key.split("."), cfg)
        uses = [(n, "DATASETS.TEST") for n in cfg.DATASETS.TEST]
        if not args.eval_only:
            uses = [(n, "DATASETS.TRAIN") for n in cfg.DATASETS.TRAIN] + uses
        train_key = "DATASETS.TRAIN"
    else:
        cfg = load_lazy_config(args.config_file, args.opts)
        device_key = "train.device"
        device = OmegaConf.select(cfg, device_key, default="cuda")
        weights_key = "train.init_checkpoint"
        weights = OmegaConf.select(cfg, weights_key, default="")
        output_dir = OmegaConf.select(cfg, "train.output_dir", default="")
        classes_key = next(
            (k for k in LAZY_NUM_CLASSES if OmegaConf.select(cfg, k, default=None) is not None),
            None,
        )
        num_classes = OmegaConf.select(cfg, classes_key) if classes_key else None
        splits = ("test",) if args.eval_only else ("train", "test")
        uses = [
            (name, key)
            for key in (f"dataloader.{split}.dataset.names" for split in splits)
            for name in _names(OmegaConf.select(cfg, key, default=None))
        ]
        train_key = "dataloader.train.dataset.names"
    check_device(device, device_key, args.config_file)
    check_num_gpus(args.num_gpus, device)
    check_datasets(uses)
    if num_classes is not None:
        check_num_classes(uses, num_classes, classes_key)
    model_names, where = model_class_names(uses, weights, train_key)
    if model_names:
        check_class_names(uses, model_names, where)
    # Last, as it may reach the network. --resume with a checkpoint in the output folder loads
    # that one, not the initial weights.
    if not (args.resume and os.path.isfile(os.path.join(output_dir, "last_checkpoint"))):
        check_weights(weights, weights_key, args.config_file)
