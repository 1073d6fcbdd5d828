"""The detectors of the speed section on one backbone: detectron2's own ``FCOS`` (from its
model-zoo config), the same trained with DW's criterion, and DW-FCOS."""

import copy
import functools
from pathlib import Path

import torch
from detectron2.config import instantiate
from detectron2.modeling import build_backbone, build_model

from dual_weighting import DWCriterion
from dual_weighting.engine import load_yacs_config
from dual_weighting.engine.lazy import model_zoo
from dual_weighting.modeling import DWLossFCOS

# The checkout whose configs/ the benchmarks read; the one place that knows this folder's depth.
REPO = Path(__file__).resolve().parents[2]
SMALL_CONFIG = REPO / "configs" / "dw_R_18_FPN_synthetic_demo.yaml"
R50_CONFIG = REPO / "configs" / "dw_R_50_FPN_1x.yaml"

VARIANTS = {
    "fcos": "FCOS (d2)",
    "fcos_dw": "FCOS (d2), DW losses",
    "dw": "DW",
    "dw_refine": "DW+refine",
}
# The meta-architectures built from detectron2's FCOS config (build_fcos): its own, and its class
# trained with DW's criterion (DWLossFCOS). Both score sqrt(cls * ctr).
FCOS_CLASSES = {"fcos": "FCOS", "fcos_dw": "DWLossFCOS"}


@functools.cache
def _fcos_zoo_model():
    return model_zoo.get_config("COCO-Detection/fcos_R_50_FPN_1x.py").model


def make_cfg(config_file, variant, opts=(), device="cpu"):
    """The DW config of ``config_file`` and ``opts`` for one variant, random init. "fcos" and
    "fcos_dw" set a ``MODEL.META_ARCHITECTURE`` that only :func:`build_detector` understands
    (detectron2's FCOS is not registered); "dw_refine" turns on ``MODEL.DW.BOX_REFINE``."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    cfg = load_yacs_config(str(config_file), opts)
    cfg.defrost()
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""  # random init (the R-50 configs name ImageNet weights)
    if variant in FCOS_CLASSES:
        cfg.MODEL.META_ARCHITECTURE = FCOS_CLASSES[variant]
    cfg.MODEL.DW.BOX_REFINE = variant == "dw_refine"
    return cfg


def build_fcos(cfg):
    """detectron2's FCOS from its model-zoo config on the DW backbone of ``cfg``, with its
    threshold ``MODEL.FCOS.SCORE_THRESH_TEST`` (on sqrt(cls * ctr)). The backbone is built first,
    as ``DWFCOS`` does, so one random state gives both detectors the same backbone weights."""
    backbone = build_backbone(cfg)
    in_features = list(cfg.MODEL.DW.IN_FEATURES)
    shapes = backbone.output_shape()
    model = copy.deepcopy(_fcos_zoo_model())
    model.backbone = backbone
    model.head_in_features = in_features
    model.num_classes = cfg.MODEL.DW.NUM_CLASSES
    model.head.input_shape = [shapes[f] for f in in_features]
    model.head.conv_dims = [cfg.MODEL.FPN.OUT_CHANNELS] * cfg.MODEL.DW.NUM_CONVS
    model.head.norm = cfg.MODEL.DW.NORM
    model.pixel_mean = list(cfg.MODEL.PIXEL_MEAN)
    model.pixel_std = list(cfg.MODEL.PIXEL_STD)
    model.test_score_thresh = cfg.MODEL.FCOS.SCORE_THRESH_TEST
    dw_loss = cfg.MODEL.META_ARCHITECTURE == "DWLossFCOS"
    if dw_loss:  # the same model trained with DW's criterion (MODEL.DW keys), not FCOS's losses
        model._target_ = DWLossFCOS
        del model.focal_loss_alpha, model.focal_loss_gamma
    model = instantiate(model)
    if dw_loss:
        model.criterion = DWCriterion(cfg)
    return model.to(torch.device(cfg.MODEL.DEVICE))


def build_detector(cfg):
    """FCOS (``MODEL.META_ARCHITECTURE`` "FCOS") or a registered meta-architecture (DWFCOS)."""
    if cfg.MODEL.META_ARCHITECTURE in FCOS_CLASSES.values():
        return build_fcos(cfg)
    return build_model(cfg)
