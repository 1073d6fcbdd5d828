"""DW-FCOS as released by the authors: the model of configs/Base-DW.yaml, as a LazyConfig piece
(like detectron2's ``configs/common/models/fcos.py``)."""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from dual_weighting import DWFCOS, DWCriterion, DWHead
from dual_weighting.modeling.backbone import dw_fpn, dw_resnet

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
    # The release's hyper-parameters, named as the yacs keys MODEL.DW.<NAME> (written once, in
    # DWCriterion; listed here so that model.criterion.<name>=... overrides them).
    criterion=L(DWCriterion)(**DWCriterion.defaults()),
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
    # Each image of a test batch computed as if alone (MODEL.DW.MASK_PADDING_TEST).
    test_mask_padding=True,
    # detectron2's post-processing (MODEL.DW.RELEASE_POSTPROCESS_TEST).
    test_release_postprocess=False,
    # torchvision ResNets: RGB input, torchvision's mean/std.
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
)
