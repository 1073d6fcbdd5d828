#!/usr/bin/env python
"""Train and evaluate DW-FCOS with detectron2's trainer.

    python train_net.py --num-gpus 8 --config-file configs/dw_R_50_FPN_1x.yaml
    python train_net.py --config-file configs/dw_R_50_FPN_1x.yaml --eval-only \\
        MODEL.WEIGHTS output/model_final.pth

Any COCO-format dataset can be registered by name from the command line, without code:

    python train_net.py --config-file ... --register-coco my_train=ann.json:images/ \\
        DATASETS.TRAIN '("my_train",)'
"""

import functools
import os
from unittest import mock

from detectron2.config import get_cfg
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.engine import defaults as d2_defaults
from detectron2.evaluation import COCOEvaluator

from dual_weighting import add_dw_config
from dual_weighting.checkpoint import DWCheckpointer
from dual_weighting.data import (
    default_synthetic_root,
    register_coco_from_spec,
    register_synthetic,
)


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer with COCO box evaluation, also on CPU workers."""

    def __init__(self, cfg):
        if cfg.MODEL.DEVICE != "cpu":
            super().__init__(cfg)
            return
        # detectron2 wraps the model in DistributedDataParallel with device_ids=[local rank],
        # which DDP rejects for a CPU model; CPU (gloo) workers need device_ids=None.
        cpu_ddp = functools.partial(d2_defaults.create_ddp_model, device_ids=None)
        with mock.patch.object(d2_defaults, "create_ddp_model", cpu_ddp):
            super().__init__(cfg)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        return COCOEvaluator(dataset_name, tasks=("bbox",), output_dir=output_folder)


def setup(args):
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def register_datasets(args):
    """Register the generated dataset (``dw_synthetic_{train,val}`` under DETECTRON2_DATASETS, as
    detectron2 does for COCO) and those given with --register-coco, in every worker."""
    register_synthetic(default_synthetic_root())
    for spec in args.register_coco:
        register_coco_from_spec(spec)


def main(args):
    register_datasets(args)
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        # Strict: evaluating a checkpoint that leaves weights at their init is always a mistake.
        DWCheckpointer(model, save_dir=cfg.OUTPUT_DIR, strict=True).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def argument_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--register-coco",
        action="append",
        default=[],
        metavar="NAME=JSON:IMAGE_ROOT",
        help="register a COCO-format dataset under NAME (repeatable)",
    )
    return parser


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
