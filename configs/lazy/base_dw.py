"""DW-FCOS as released by the authors (MMDetection 2.x), as a detectron2 LazyConfig: the twin of
configs/Base-DW.yaml. The published models are the leaves beside it. See DW_SPEC.md.

Data, optimizer and training options start from detectron2's own LazyConfig pieces
(``common/data/coco.py``, ``common/optim.py``, ``common/train.py``); only what DW changes is set
here.
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from dual_weighting import DWFCOS, DWHead
from dual_weighting.data import build_dw_test_loader
from dual_weighting.engine.lazy import model_zoo
from dual_weighting.evaluation import DWCOCOEvaluator
from dual_weighting.modeling.backbone import dw_fpn, dw_resnet


def step_schedule(max_iter, steps, warmup_iters=1000):
    """The release's lr multiplier over ``max_iter`` iterations: linear warm-up from 0.001 over
    ``warmup_iters`` iterations, then x0.1 at each iteration of ``steps``.

    As every detectron2 LazyConfig schedule, it is a function of the fraction of training done:
    overriding ``train.max_iter`` alone stretches it, steps and warm-up included.
    """
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**k for k in range(len(steps) + 1)],
            milestones=list(steps),
            num_updates=max_iter,
        ),
        warmup_length=min(warmup_iters / max_iter, 1.0),
        warmup_method="linear",
        warmup_factor=0.001,
    )


model = L(DWFCOS)(
    # ResNet + FPN P3-P7, P6/P7 from P5's output (the release's layout).
    backbone=L(dw_fpn)(
        # torchvision ("pytorch" style) ResNet: stride on the 3x3 conv. The release's BN
        # (norm_eval=True, requires_grad=True): ImageNet statistics frozen, affine parameters
        # trained; stem and res2 fully frozen.
        bottom_up=L(dw_resnet)(
            depth=50,
            norm="FrozenStatsBN",
            stride_in_1x1=False,
            out_features=["res3", "res4", "res5"],
            freeze_at=2,
        ),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
    ),
    head=L(DWHead)(
        # P3-P7; the channels follow model.backbone.out_channels.
        input_shape=[
            ShapeSpec(channels="${....backbone.out_channels}", stride=s)
            for s in (8, 16, 32, 64, 128)
        ],
        num_classes="${..num_classes}",
        num_convs=4,
        norm="GN",
        prior_prob=0.02,
        box_bias_init=4.0,
        box_refine=False,
        dcn_on_last_conv=False,
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    num_classes=80,
    # dw_losses' hyper-parameters (the paper's symbols are in config.py's MODEL.DW keys).
    loss_kwargs={
        "center_prior_mu": 0.0,
        "center_prior_sigma": 1.11,
        "loc_score_scale": 5.0,
        "pos_weight_num_scale": 5.0,
        "pos_weight_den_scale": 3.0,
        "pos_cls_weight": 0.25,
        "pos_loc_weight": 0.25,
        "neg_iou_threshold": 0.5,
    },
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
    # Each image of a test batch computed as if alone (MODEL.DW.TEST_MASK_PADDING).
    test_mask_padding=True,
    # detectron2's post-processing (MODEL.DW.RELEASE_TEST_POSTPROCESS).
    release_postprocess=False,
    # torchvision ResNets: RGB input, torchvision's mean/std.
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
)

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
# Shorter side 800 (one size), longer side at most 1333, and the horizontal flip.
dataloader.train.mapper.augmentations[0].short_edge_length = [800]
# detectron2's test loader, which orders the images by size when batching (build_dw_test_loader).
dataloader.test._target_ = build_dw_test_loader
# One a batch: the published numbers' path bit for bit (MODEL.DW.TEST_IMS_PER_BATCH). More is
# faster with the same detections to rounding (model.test_mask_padding computes each image of a
# batch as if alone).
dataloader.test.batch_size = 1
dataloader.evaluator = L(DWCOCOEvaluator)(
    dataset_name="${..test.dataset.names}",
    tasks=["bbox"],
    output_dir="${...train.output_dir}/inference",
    # COCOeval implementation (MODEL.DW.COCO_EVAL): faster-coco-eval where installed.
    backend="auto",
)

# SGD, momentum 0.9, weight decay 1e-4 and none on norm parameters (detectron2's common SGD).
optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.01

train = model_zoo.get_config("common/train.py").train
# The release's 1x: 12 epochs, lr x0.1 after epochs 8 and 11. COCO train2017 keeps 117,266
# images after the empty-image filter; at 16 a batch an epoch is ceil(117266 / 16) = 7,330
# iterations, so 12 epochs = 87,960, steps at 8 x 7,330 = 58,640 and 11 x 7,330 = 80,630.
train.max_iter = 87960
lr_multiplier = step_schedule(train.max_iter, steps=(58640, 80630))
train.checkpointer.period = 10000
train.eval_period = 10000
