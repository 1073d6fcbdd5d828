#!/usr/bin/env python
"""Train and evaluate DW-FCOS (or any detectron2 LazyConfig model) with detectron2's trainer.

The config decides the style: a yacs ``.yaml`` takes ``KEY VALUE`` overrides, a LazyConfig
``.py`` (or a run's saved ``config.yaml``) takes ``key=value`` overrides.

    python train_net.py --num-gpus 8 --config-file configs/dw_R_50_FPN_1x.yaml
    python train_net.py --config-file configs/dw_R_50_FPN_1x.yaml --eval-only \\
        MODEL.WEIGHTS output/model_final.pth

    python train_net.py --num-gpus 8 --config-file configs/lazy/dw_R_50_FPN_1x.py
    python train_net.py --config-file configs/lazy/dw_R_50_FPN_1x.py --eval-only \\
        train.init_checkpoint=output/model_final.pth

Any COCO-format dataset can be registered by name from the command line, without code:

    python train_net.py --config-file ... --register-coco my_train=ann.json:images/ \\
        DATASETS.TRAIN '("my_train",)'        (or dataloader.train.dataset.names=my_train)
"""

import sys

from detectron2.engine import launch

from dual_weighting.engine import (
    DWTrainer,
    SetupError,
    check_command_line,
    config_kind,
    default_dw_argument_parser,
    lazy_main,
    register_datasets,
    setup_cfg,
)


def main(args):
    register_datasets(args)
    if config_kind(args.config_file) == "lazy":
        return lazy_main(args)
    cfg = setup_cfg(args)
    if args.eval_only:
        return DWTrainer.evaluate_checkpoint(cfg, cfg.MODEL.WEIGHTS, resume=args.resume)
    trainer = DWTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_dw_argument_parser(epilog=__doc__).parse_args()
    print("Command Line Args:", args)
    # Set-up mistakes (config, overrides, device, GPUs, datasets) stop here, in one paragraph,
    # before any worker starts.
    try:
        check_command_line(args)
    except SetupError as e:
        sys.exit(f"train_net.py: error: {e}")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
