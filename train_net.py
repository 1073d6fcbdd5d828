#!/usr/bin/env python
"""Train and evaluate DW-FCOS with detectron2's trainer.

    python train_net.py --num-gpus 8 --config-file configs/dw_R_50_FPN_1x.yaml
    python train_net.py --config-file configs/dw_R_50_FPN_1x.yaml --eval-only \\
        MODEL.WEIGHTS output/model_final.pth

Any COCO-format dataset can be registered by name from the command line, without code:

    python train_net.py --config-file ... --register-coco my_train=ann.json:images/ \\
        DATASETS.TRAIN '("my_train",)'
"""

from detectron2.engine import launch

from dual_weighting.engine import (
    DWTrainer,
    default_dw_argument_parser,
    register_datasets,
    setup_cfg,
)


def main(args):
    register_datasets(args)
    cfg = setup_cfg(args)
    if args.eval_only:
        return DWTrainer.evaluate_checkpoint(cfg, cfg.MODEL.WEIGHTS, resume=args.resume)
    trainer = DWTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_dw_argument_parser(epilog=__doc__).parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
