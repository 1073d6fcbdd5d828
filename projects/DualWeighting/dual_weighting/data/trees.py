"""Real aerial photographs with tree crowns boxed by people, registered as
``deepforest_trees_train`` / ``deepforest_trees_val`` (:func:`register_trees`): the sample data
that the DeepForest package (Weinstein et al., MIT licence) ships inside its PyPI wheel, cut into
tiles in detectron2's COCO format by ``tools/prepare_trees.py`` (``tools/sample_data/trees.py``
says how: the splits, the tiles, the boxes cut by a tile border).

The images are RGB orthophotos of the US National Ecological Observatory Network's airborne
platform (NEON AOP, 10 cm a pixel, public domain under CC0); the DeepForest authors drew a box on
every tree crown. Training: ``2019_YELL_2_528000_4978000_image_crop2`` and ``OSBS_029``; held out
for evaluation: ``2019_YELL_2_541000_4977000_image_crop``, another place of the same flight.
"""

import os

from .datasets import _register

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
    (files are read only when a dataset is loaded).

    Returns:
        tuple[str, str]: the train and val dataset names.
    """
    root = default_trees_root() if root is None else os.fspath(root)
    return tuple(
        _register(
            f"{prefix}_{split}",
            os.path.join(root, "annotations", f"instances_{split}.json"),
            os.path.join(root, split),
            {"thing_classes": list(CLASS_NAMES)},
        )
        for split in TREES_SPLITS
    )
