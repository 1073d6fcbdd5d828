"""Datasets: a generated COCO-format shapes dataset, real aerial photographs of tree crowns
(:mod:`.trees`), COCO-format, Pascal VOC and YOLO registration helpers; the release's test-time
resize (:mod:`.transforms`); the test loader that batches images of one size
(:mod:`.test_loader`).

Nothing is registered at import; call :func:`ensure_synthetic`, :func:`register_synthetic`,
:func:`ensure_trees` or :func:`register_coco_from_spec`. Real COCO uses detectron2's builtin
``coco_2017_*`` names.
"""

from .class_names import parse_class_names, save_class_names, saved_class_names
from .datasets import (
    default_synthetic_root,
    ensure_synthetic,
    register_coco_from_spec,
    register_synthetic,
    register_voc_from_specs,
    register_yolo_from_spec,
)
from .mapper import DWDatasetMapper
from .synthetic import CLASS_NAMES, generate_synthetic_coco, render_image, synthetic_params
from .test_loader import SizeOrderedInferenceSampler, build_dw_test_loader
from .transforms import (
    OpenCVResizeTransform,
    ReleaseResizeShortestEdge,
    build_test_augmentation,
    build_train_augmentation,
    release_resize_shape,
)
from .trees import convert_trees, default_trees_root, ensure_trees, register_trees
from .voc import FormatError, load_voc, read_voc_xml
from .yolo import load_yolo

__all__ = [
    "CLASS_NAMES",
    "DWDatasetMapper",
    "FormatError",
    "OpenCVResizeTransform",
    "ReleaseResizeShortestEdge",
    "SizeOrderedInferenceSampler",
    "build_dw_test_loader",
    "build_test_augmentation",
    "build_train_augmentation",
    "convert_trees",
    "default_synthetic_root",
    "default_trees_root",
    "ensure_synthetic",
    "ensure_trees",
    "generate_synthetic_coco",
    "load_voc",
    "load_yolo",
    "read_voc_xml",
    "register_coco_from_spec",
    "register_synthetic",
    "register_trees",
    "register_voc_from_specs",
    "register_yolo_from_spec",
    "release_resize_shape",
    "parse_class_names",
    "render_image",
    "save_class_names",
    "saved_class_names",
    "synthetic_params",
]
