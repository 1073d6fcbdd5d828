"""Config keys of Dual Weighting. Defaults equal the authors' release (see DW_SPEC.md)."""

from detectron2.config import CfgNode as CN

from .modeling.criterion import DWCriterion

__all__ = ["add_dw_config"]


def add_dw_config(cfg):
    """Add the keys of DW-FCOS (docs/CONFIG.md) to a detectron2 config, in place.

    Example::

        cfg = get_cfg()
        add_dw_config(cfg)
        cfg.merge_from_file("configs/dw_R_50_FPN_1x.yaml")
    """
    cfg.MODEL.DW = CN()
    # Name of the head in dual_weighting.modeling.DW_HEAD_REGISTRY.
    cfg.MODEL.DW.HEAD_NAME = "DWHead"
    # Number of foreground classes (C); COCO has 80.
    cfg.MODEL.DW.NUM_CLASSES = 80
    # Backbone features the head reads, finest first (strides 8 to 128 with the DW backbone).
    cfg.MODEL.DW.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]

    # Head: two towers (classification, regression) of NUM_CONVS 3x3 convs with NORM and ReLU.
    cfg.MODEL.DW.NUM_CONVS = 4
    # Norm of the tower convs ("GN" is GroupNorm with 32 groups); "" for none. Also the norm of
    # NormRPNHead's conv (MODEL.RPN.HEAD_NAME "NormRPNHead").
    cfg.MODEL.DW.NORM = "GN"
    # Initial foreground probability of the classifier: its bias is -log((1 - p) / p).
    cfg.MODEL.DW.PRIOR_PROB = 0.02
    # Initial bias of the box conv, so initial distances are relu(4) * stride pixels.
    cfg.MODEL.DW.BOX_BIAS_INIT = 4.0
    # Box refinement (the release's `reg_refine`): re-read each box side at learned offsets.
    cfg.MODEL.DW.BOX_REFINE = False
    # DCNv2 on the last conv of both towers (the release's `dcn_on_last_conv`).
    cfg.MODEL.DW.DCN_ON_LAST_CONV = False

    # The DW criterion (dual_weighting.modeling.DWCriterion, which holds the release's values).
    release = DWCriterion.defaults()
    # Center prior: Gaussian of the distance to the box centre, in strides (paper's mu, sigma).
    cfg.MODEL.DW.CENTER_PRIOR_MU = release["center_prior_mu"]
    cfg.MODEL.DW.CENTER_PRIOR_SIGMA = release["center_prior_sigma"]
    # True: that Gaussian; False: the release's hard prior, 1 where the Gaussian exceeds 0.3.
    cfg.MODEL.DW.SOFT_PRIOR = release["soft_prior"]
    # Candidate bag of a box: 0 is the release's, every point inside the box; k > 0 the paper's,
    # only the k points nearest the box centre on each level.
    cfg.MODEL.DW.CANDIDATE_TOPK_PER_LEVEL = release["candidate_topk_per_level"]
    # Localisation score p_loc = exp(-LOC_SCORE_SCALE * GIoU loss).
    cfg.MODEL.DW.LOC_SCORE_SCALE = release["loc_score_scale"]
    # Positive weight: exp(POS_WEIGHT_NUM_SCALE * v) * v * prior, normalised per box by the sum
    # over its bag of exp(POS_WEIGHT_DEN_SCALE * v) * v * prior (5 and 3 in the release).
    cfg.MODEL.DW.POS_WEIGHT_NUM_SCALE = release["pos_weight_num_scale"]
    cfg.MODEL.DW.POS_WEIGHT_DEN_SCALE = release["pos_weight_den_scale"]
    # Factors of the positive classification and localisation losses (0.25 in the release).
    cfg.MODEL.DW.POS_CLS_LOSS_WEIGHT = release["pos_cls_loss_weight"]
    cfg.MODEL.DW.POS_LOC_LOSS_WEIGHT = release["pos_loc_loss_weight"]
    # Predictions with IoU below this stay full negatives (negative weight 1).
    cfg.MODEL.DW.NEG_IOU_THRESH = release["neg_iou_thresh"]
    # False: the negative loss is divided by sum(1 - w_neg), as released; True: by
    # max(sum(1 - w_neg), sum(w_neg q^2)), a bound when every score rises at once.
    cfg.MODEL.DW.BOUNDED_NEG_LOSS = release["bounded_neg_loss"]

    # Inference: score sigmoid(cls) * sigmoid(centerness), per level above the threshold and the
    # top-k, then class-aware NMS; TEST.DETECTIONS_PER_IMAGE kept.
    cfg.MODEL.DW.SCORE_THRESH_TEST = 0.05
    cfg.MODEL.DW.TOPK_CANDIDATES_TEST = 1000
    cfg.MODEL.DW.NMS_THRESH_TEST = 0.6
    # Compute each image of a test batch as if alone (dual_weighting.layers.BatchPadding); False:
    # detectron2's plain padding, where an image padded further than alone detects otherwise.
    cfg.MODEL.DW.MASK_PADDING_TEST = True
    # Rescale boxes to the original image before the NMS as the release does
    # (dual_weighting.modeling.release_rescale), not detectron2's detector_postprocess after it.
    # On in the published-model configs.
    cfg.MODEL.DW.RELEASE_POSTPROCESS_TEST = False

    # Images per batch of the evaluation loader; with MASK_PADDING_TEST more is faster with the
    # same detections, 1 the published numbers' path bit for bit (docs/BATCHED_EVALUATION.md).
    cfg.TEST.IMS_PER_BATCH = 1
    # COCOeval of evaluation: "auto", "faster_coco_eval", "detectron2" or "pycocotools".
    cfg.TEST.COCO_EVAL = "auto"

    # Resize test images as the release does (dual_weighting.data.ReleaseResizeShortestEdge)
    # instead of detectron2's ResizeShortestEdge; on in the published-model configs.
    cfg.INPUT.RELEASE_RESIZE_TEST = False
    # The same for training images (dual_weighting.data.build_train_augmentation).
    cfg.INPUT.RELEASE_RESIZE_TRAIN = False

    # A timm CNN (dual_weighting.modeling.TimmBackbone) for MODEL.BACKBONE.NAME
    # "build_timm_fpn_backbone"; FREEZE_AT k freezes its first k feature levels.
    cfg.MODEL.TIMM = CN()
    # timm model name, built with features_only=True (timm.list_models()).
    cfg.MODEL.TIMM.NAME = "tf_efficientnet_lite0"
    # Features returned, named c<k> for stride 2^k: c3, c4, c5 are strides 8, 16, 32.
    cfg.MODEL.TIMM.OUT_FEATURES = ["c3", "c4", "c5"]
    # BatchNorm of the unfrozen layers: "FrozenBN", "BN" or "SyncBN".
    cfg.MODEL.TIMM.NORM = "FrozenBN"
    # timm's stochastic depth rate over the blocks during training.
    cfg.MODEL.TIMM.DROP_PATH_RATE = 0.0

    # detectron2's FCOS (ConfigurableFCOS, DWLossFCOS with MODEL.DW's criterion keys): its
    # LazyConfig arguments, with their defaults.
    cfg.MODEL.FCOS = CN()
    cfg.MODEL.FCOS.NUM_CLASSES = 80
    cfg.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # FCOSHead: NUM_CONVS 3x3 convs of the backbone's width per tower, with NORM.
    cfg.MODEL.FCOS.NUM_CONVS = 4
    cfg.MODEL.FCOS.NORM = "GN"
    cfg.MODEL.FCOS.PRIOR_PROB = 0.01
    # Inference on detectron2's score sqrt(cls * ctr).
    cfg.MODEL.FCOS.SCORE_THRESH_TEST = 0.2
    cfg.MODEL.FCOS.TOPK_CANDIDATES_TEST = 1000
    cfg.MODEL.FCOS.NMS_THRESH_TEST = 0.6

    # DWRetinaNet: detectron2's RetinaNet (MODEL.RETINANET) trained with MODEL.DW's criterion.
    cfg.MODEL.DW_RETINANET = CN()
    # The quality factor of DW's joint score: "none" (the class score alone) or "objectness"
    # (DWRetinaNetHead's extra conv).
    cfg.MODEL.DW_RETINANET.QUALITY = "none"
