"""Datasets (COCO-format, Pascal VOC and YOLO registration; the generated shapes and the tree
crowns), the release's resize and the evaluation loader. Nothing is registered at import.
"""

from .class_names import parse_class_names, save_class_names, saved_class_names
from .datasets import (
    CLASS_NAMES,
    default_synthetic_root,
    register_coco_from_spec,
    register_synthetic,
    register_voc_from_specs,
    register_yolo_from_spec,
)
from .inference_loader import SizeOrderedInferenceSampler, build_dw_test_loader
from .mapper import DWDatasetMapper
from .transforms import (
    OpenCVResizeTransform,
    ReleaseResizeShortestEdge,
    build_test_augmentation,
    build_train_augmentation,
    release_resize_shape,
)
from .trees import default_trees_root, register_trees
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
    "default_synthetic_root",
    "default_trees_root",
    "load_voc",
    "load_yolo",
    "parse_class_names",
    "read_voc_xml",
    "register_coco_from_spec",
    "register_synthetic",
    "register_trees",
    "register_voc_from_specs",
    "register_yolo_from_spec",
    "release_resize_shape",
    "save_class_names",
    "saved_class_names",
]
