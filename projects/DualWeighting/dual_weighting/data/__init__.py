"""Datasets: a generated COCO-format shapes dataset and COCO-format registration helpers; the
release's test-time resize (:mod:`.transforms`); the test loader that batches images of one size
(:mod:`.test_loader`).

Nothing is registered at import; call :func:`ensure_synthetic`, :func:`register_synthetic` or
:func:`register_coco_from_spec`. Real COCO uses detectron2's builtin ``coco_2017_*`` names.
"""

from .datasets import (
    default_synthetic_root,
    ensure_synthetic,
    register_coco_from_spec,
    register_synthetic,
)
from .synthetic import CLASS_NAMES, generate_synthetic_coco, render_image, synthetic_params
from .test_loader import SizeOrderedInferenceSampler, build_dw_test_loader
from .transforms import (
    OpenCVResizeTransform,
    ReleaseResizeShortestEdge,
    build_test_augmentation,
    build_train_augmentation,
    release_resize_shape,
)

__all__ = [
    "CLASS_NAMES",
    "OpenCVResizeTransform",
    "ReleaseResizeShortestEdge",
    "SizeOrderedInferenceSampler",
    "build_dw_test_loader",
    "build_test_augmentation",
    "build_train_augmentation",
    "default_synthetic_root",
    "ensure_synthetic",
    "generate_synthetic_coco",
    "register_coco_from_spec",
    "register_synthetic",
    "release_resize_shape",
    "render_image",
    "synthetic_params",
]
