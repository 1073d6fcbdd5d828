"""Real aerial photographs with tree crowns boxed by people (the sample data of the DeepForest
wheel, Weinstein et al., MIT licence; NEON AOP orthophotos, CC0), cut into COCO-format tiles by
``tools/prepare_trees.py`` (``tools/sample_data/trees.py`` says how) and registered as
``deepforest_trees_train`` / ``deepforest_trees_val`` (:func:`register_trees`).
"""

import os

from .datasets import _register_splits

__all__ = ["CLASS_NAMES", "TREES_SPLITS", "default_trees_root", "register_trees"]

# The annotation files (in the wheel's data folder) of each split.
TREES_SPLITS = {
    "train": ("2019_YELL_2_528000_4978000_image_crop2.xml", "OSBS_029.xml"),
    "val": ("2019_YELL_2_541000_4977000_image_crop.xml",),
}
CLASS_NAMES = ("Tree",)


def default_trees_root():
    """``$DETECTRON2_DATASETS/deepforest_trees`` (``datasets/deepforest_trees`` when unset)."""
    return os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "deepforest_trees")


def register_trees(root=None, prefix="deepforest_trees"):
    """Register the converted set under ``root`` as ``{prefix}_train`` and ``{prefix}_val``
    (read only when loaded); return the two names."""
    root = default_trees_root() if root is None else os.fspath(root)
    return _register_splits(root, prefix, TREES_SPLITS, CLASS_NAMES)
