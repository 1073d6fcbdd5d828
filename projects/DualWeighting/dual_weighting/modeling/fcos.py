"""detectron2's own FCOS built from a yacs config (detectron2 registers none for it);
:func:`fcos_arguments` also builds :class:`~.fcos_dw_loss.DWLossFCOS`, so a pair is built alike.
"""

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead

__all__ = ["ConfigurableFCOS", "check_in_features", "fcos_arguments"]


def check_in_features(cfg, key: str, in_features, shapes: dict):
    """Raise a ValueError naming the yacs ``key`` if ``shapes`` (the backbone's output shapes)
    lacks a feature of ``in_features``."""
    missing = [f for f in in_features if f not in shapes]
    if missing:
        raise ValueError(
            f"{key} names {missing}, which backbone "
            f"{cfg.MODEL.BACKBONE.NAME} does not output (it has {sorted(shapes)})"
        )


def fcos_arguments(cfg):
    """The arguments of detectron2's :class:`FCOS` from ``MODEL.FCOS``; a ValueError names
    ``MODEL.FCOS.IN_FEATURES`` when the backbone lacks a feature or its levels differ in width.
    """
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    fcos = cfg.MODEL.FCOS
    check_in_features(cfg, "MODEL.FCOS.IN_FEATURES", fcos.IN_FEATURES, shapes)
    input_shape = [shapes[f] for f in fcos.IN_FEATURES]
    channels = {s.channels for s in input_shape}
    if len(channels) != 1:
        raise ValueError(
            f"FCOSHead needs equally wide levels in MODEL.FCOS.IN_FEATURES, got {channels}"
        )
    head = FCOSHead(
        input_shape=[ShapeSpec(channels=s.channels, stride=s.stride) for s in input_shape],
        conv_dims=[channels.pop()] * fcos.NUM_CONVS,
        num_classes=fcos.NUM_CLASSES,
        prior_prob=fcos.PRIOR_PROB,
        norm=fcos.NORM,
    )
    return {
        "backbone": backbone,
        "head": head,
        "head_in_features": list(fcos.IN_FEATURES),
        "num_classes": fcos.NUM_CLASSES,
        "test_score_thresh": fcos.SCORE_THRESH_TEST,
        "test_topk_candidates": fcos.TOPK_CANDIDATES_TEST,
        "test_nms_thresh": fcos.NMS_THRESH_TEST,
        "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        "pixel_mean": cfg.MODEL.PIXEL_MEAN,
        "pixel_std": cfg.MODEL.PIXEL_STD,
    }


@META_ARCH_REGISTRY.register()
class ConfigurableFCOS(FCOS):
    """detectron2's :class:`FCOS`, unchanged, with a ``from_config`` so that
    ``MODEL.META_ARCHITECTURE: "ConfigurableFCOS"`` builds it from ``MODEL.FCOS``."""

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
        return fcos_arguments(cfg)
