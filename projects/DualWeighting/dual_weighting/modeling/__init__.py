"""The DW-FCOS model and DW in detectron2's own detectors. Importing it registers ``DWFCOS``,
``DWLossFCOS``, ``DWRetinaNet`` and ``ConfigurableFCOS`` (META_ARCH_REGISTRY), ``DWRPN``
(PROPOSAL_GENERATOR_REGISTRY), ``NormRPNHead`` (RPN_HEAD_REGISTRY), ``DWHead``
(DW_HEAD_REGISTRY), ``build_dw_resnet_fpn_backbone`` and ``build_timm_fpn_backbone``
(BACKBONE_REGISTRY).
"""

from .assignment import DWAssignment, dw_assign
from .backbone import build_dw_resnet_fpn_backbone, dw_fpn, dw_resnet
from .box_refine import refine_boxes
from .criterion import DWCriterion
from .fcos import ConfigurableFCOS
from .fcos_dw_loss import DWLossFCOS
from .head import DW_HEAD_REGISTRY, DWHead, build_dw_head
from .image_list import DWImageList
from .losses import dw_losses
from .meta_arch import DWFCOS
from .postprocessing import release_rescale
from .retinanet import DWRetinaNet, DWRetinaNetHead
from .rpn import DWRPN, NormRPNHead
from .timm_backbone import TimmBackbone, build_timm_fpn_backbone

__all__ = [
    "ConfigurableFCOS",
    "DWAssignment",
    "DWCriterion",
    "DWFCOS",
    "DWHead",
    "DWImageList",
    "DWLossFCOS",
    "DWRPN",
    "DWRetinaNet",
    "DWRetinaNetHead",
    "DW_HEAD_REGISTRY",
    "NormRPNHead",
    "TimmBackbone",
    "build_dw_head",
    "build_dw_resnet_fpn_backbone",
    "build_timm_fpn_backbone",
    "dw_assign",
    "dw_fpn",
    "dw_losses",
    "dw_resnet",
    "refine_boxes",
    "release_rescale",
]
