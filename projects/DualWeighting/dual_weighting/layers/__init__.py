"""Layers that reproduce the authors' release where detectron2's differ (frozen-statistics BN,
float32 NMS, DCNv2 without compiled ops), and the padding mask of batched inference."""

from .batch_norm import FrozenStatsBatchNorm2d, resolve_norm
from .deform_conv import ModulatedDeformConv, ModulatedDeformConvPack
from .graph_capture import capturing_graph
from .nms import batched_nms_float32, traceable_batched_nms
from .padding import BatchPadding, check_maskable, masked_group_norm

__all__ = [
    "BatchPadding",
    "FrozenStatsBatchNorm2d",
    "ModulatedDeformConv",
    "ModulatedDeformConvPack",
    "batched_nms_float32",
    "capturing_graph",
    "check_maskable",
    "masked_group_norm",
    "resolve_norm",
    "traceable_batched_nms",
]
