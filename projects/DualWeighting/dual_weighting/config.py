"""Config keys of Dual Weighting. Defaults equal the authors' release (see DW_SPEC.md)."""

from detectron2.config import CfgNode as CN


def add_dw_config(cfg):
    """Add the keys of DW-FCOS to a detectron2 config, in place: ``cfg.MODEL.DW`` and the input
    option ``cfg.INPUT.RELEASE_TEST_RESIZE``.

    Example::

        cfg = get_cfg()
        add_dw_config(cfg)
        cfg.merge_from_file("configs/DW_R_50_FPN_1x.yaml")
    """
    cfg.MODEL.DW = CN()
    # Name of the head in dual_weighting.modeling.head.DW_HEAD_REGISTRY.
    cfg.MODEL.DW.HEAD_NAME = "DWHead"
    # Number of foreground classes (C); COCO has 80.
    cfg.MODEL.DW.NUM_CLASSES = 80
    # Backbone features the head reads, finest first (strides 8 to 128 with the DW backbone).
    cfg.MODEL.DW.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]

    # Head: two towers (classification, regression) of NUM_CONVS 3x3 convs with NORM and ReLU.
    cfg.MODEL.DW.NUM_CONVS = 4
    # Norm of the tower convs ("GN" is GroupNorm with 32 groups); "" for none.
    cfg.MODEL.DW.NORM = "GN"
    # Initial foreground probability of the classifier: its bias is -log((1 - p) / p).
    cfg.MODEL.DW.PRIOR_PROB = 0.02
    # Initial bias of the box conv, so initial distances are relu(4) * stride pixels.
    cfg.MODEL.DW.BOX_BIAS_INIT = 4.0
    # Box refinement (the release's `reg_refine`): re-read each box side at learned offsets.
    cfg.MODEL.DW.BOX_REFINE = False
    # DCNv2 on the last conv of both towers (the release's `dcn_on_last_conv`).
    cfg.MODEL.DW.DCN_ON_LAST_CONV = False

    # Center prior: Gaussian of the distance to the box centre, in strides (paper's mu, sigma).
    cfg.MODEL.DW.CENTER_PRIOR_MU = 0.0
    cfg.MODEL.DW.CENTER_PRIOR_SIGMA = 1.11
    # Localisation score p_loc = exp(-LOC_SCORE_SCALE * GIoU loss).
    cfg.MODEL.DW.LOC_SCORE_SCALE = 5.0
    # Positive weight: exp(POS_WEIGHT_NUM_SCALE * v) * v * prior, normalised per box by the sum
    # over its bag of exp(POS_WEIGHT_DEN_SCALE * v) * v * prior (5 and 3 in the release).
    cfg.MODEL.DW.POS_WEIGHT_NUM_SCALE = 5.0
    cfg.MODEL.DW.POS_WEIGHT_DEN_SCALE = 3.0
    # Factors of the positive classification and localisation losses.
    cfg.MODEL.DW.POS_CLS_LOSS_WEIGHT = 0.25
    cfg.MODEL.DW.POS_LOC_LOSS_WEIGHT = 0.25
    # Predictions with IoU below this stay full negatives (negative weight 1).
    cfg.MODEL.DW.NEG_IOU_THRESH = 0.5

    # Inference: score = sigmoid(cls) * sigmoid(centerness), per level kept above the threshold
    # and the top-k, then class-aware NMS and at most MAX_DETECTIONS_PER_IMAGE.
    cfg.MODEL.DW.TEST_SCORE_THRESH = 0.05
    cfg.MODEL.DW.TEST_TOPK_CANDIDATES = 1000
    cfg.MODEL.DW.TEST_NMS_THRESH = 0.6
    cfg.MODEL.DW.MAX_DETECTIONS_PER_IMAGE = 100
    # Images per batch of the evaluation loader. With TEST_MASK_PADDING each image of a batch is
    # computed as if alone (to float rounding), so more is faster with the same detections; 1 is
    # the published numbers' path bit for bit (README, "Batched evaluation").
    cfg.MODEL.DW.TEST_IMS_PER_BATCH = 1
    # Compute each image of a test batch as if alone: outside an image's own padded extent every
    # convolution's output is zeroed, GroupNorm leaves those cells out and no detection comes
    # from them (dual_weighting.layers.BatchPadding). False: detectron2's plain padding, where an
    # image padded further in its batch than alone gets other detections.
    cfg.MODEL.DW.TEST_MASK_PADDING = True
    # Bring the boxes to the original image's size as the release does: divided by the float32
    # resize factors before the NMS (which then decides on original-image coordinates), no
    # second clip, empty boxes kept. Off: detectron2's detector_postprocess after the NMS. On in
    # the published-model configs, with INPUT.RELEASE_TEST_RESIZE.
    cfg.MODEL.DW.RELEASE_TEST_POSTPROCESS = False
    # COCOeval used by evaluation (dual_weighting.evaluation): "auto" (faster-coco-eval when
    # installed, same numbers), "faster_coco_eval", "detectron2" (its compiled COCOeval_opt) or
    # "pycocotools".
    cfg.MODEL.DW.COCO_EVAL = "auto"

    # Resize test images as the authors' release does (OpenCV bilinear, mmcv's size rounding;
    # dual_weighting.data.ReleaseResizeShortestEdge) instead of detectron2's ResizeShortestEdge
    # (PIL), to evaluate converted release checkpoints on exactly the release's input. An input
    # option, so under INPUT where detectron2 keeps the resize keys. Off here (detectron2's
    # behaviour); the published-model configs turn it on.
    cfg.INPUT.RELEASE_TEST_RESIZE = False
    # The same resize for training images (dual_weighting.data.build_train_augmentation), drawing
    # the shorter side from MIN_SIZE_TRAIN by MIN_SIZE_TRAIN_SAMPLING as detectron2 does, and
    # scaling boxes in float32 as MMDetection does. Off here; on in the published-model configs.
    cfg.INPUT.RELEASE_TRAIN_RESIZE = False
