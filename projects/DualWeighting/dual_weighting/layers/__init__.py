"""Layers that reproduce the authors' release where detectron2's differ: the backbone BatchNorm
with frozen statistics and trained affine parameters, and the NMS's float32 decision."""

from .batch_norm import FrozenStatsBatchNorm2d, resolve_norm
from .nms import batched_nms_float32

__all__ = ["FrozenStatsBatchNorm2d", "batched_nms_float32", "resolve_norm"]
