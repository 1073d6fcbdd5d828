"""Registering COCO-format datasets in detectron2's catalogs.

Everything goes through detectron2's ``register_coco_instances``, so records are read by its
COCO loader (``load_coco_json``) and evaluated by ``COCOEvaluator`` like COCO itself. detectron2's
builtin ``coco_2017_train`` / ``coco_2017_val`` (under ``$DETECTRON2_DATASETS``) are untouched.
"""

import json
import logging
import os
import re

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from .synthetic import CLASS_NAMES, generate_synthetic_coco, synthetic_params

__all__ = [
    "default_synthetic_root",
    "ensure_synthetic",
    "register_coco_from_spec",
    "register_synthetic",
]

logger = logging.getLogger(__name__)

# NAME=JSON_PATH:IMAGE_ROOT. The json path must end in ".json", which tells the separating colon
# apart from colons inside the paths (e.g. Windows drive letters).
_SPEC = re.compile(r"^(?P<name>[^=]+)=(?P<json>.+?\.json):(?P<root>.+)$", re.IGNORECASE)


def default_synthetic_root():
    """``$DETECTRON2_DATASETS/dw_synthetic`` (``datasets/dw_synthetic`` when unset), where
    detectron2 would look for builtin datasets too."""
    return os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "dw_synthetic")


def _register(name, json_file, image_root, metadata=None):
    """``register_coco_instances`` that accepts registering the same thing twice."""
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        old = (meta.get("json_file"), meta.get("image_root"))
        if old[0] is not None and old[1] is not None:
            old = (os.path.abspath(old[0]), os.path.abspath(old[1]))
        if old == (json_file, image_root):
            return name
        raise ValueError(
            f"Dataset {name!r} is already registered with json_file={old[0]!r}, "
            f"image_root={old[1]!r}; cannot register it again with json_file={json_file!r}, "
            f"image_root={image_root!r}. Use another name."
        )
    register_coco_instances(name, metadata or {}, json_file, image_root)
    return name


def _synthetic_paths(root, split):
    return (
        os.path.join(root, "annotations", f"instances_{split}.json"),
        os.path.join(root, split),
    )


def register_synthetic(root, prefix="dw_synthetic"):
    """Register the dataset written by :func:`generate_synthetic_coco` under ``root`` as
    ``{prefix}_train`` and ``{prefix}_val``.

    Files are not read until a dataset is loaded, so this may run before generation. Registering
    the same names with the same paths again does nothing; other paths raise ValueError.

    Returns:
        tuple[str, str]: the train and val dataset names.
    """
    names = []
    for split in ("train", "val"):
        json_file, image_root = _synthetic_paths(root, split)
        metadata = {"thing_classes": list(CLASS_NAMES)}
        names.append(_register(f"{prefix}_{split}", json_file, image_root, metadata))
    return tuple(names)


def ensure_synthetic(root=None, prefix="dw_synthetic", **generate_kwargs):
    """Generate the synthetic dataset under ``root`` unless it is already there, then register
    it (see :func:`register_synthetic`).

    The dataset counts as there when both json files exist and were generated with the same
    arguments (recorded in their ``info``); otherwise it is (re)generated. In multi-process
    training call this in the main process before launching workers.

    Args:
        root (str or None): dataset folder; :func:`default_synthetic_root` when None.
        prefix (str): dataset names are ``{prefix}_train`` and ``{prefix}_val``.
        generate_kwargs: keyword arguments of :func:`generate_synthetic_coco`.

    Returns:
        tuple[str, str]: the train and val dataset names.
    """
    root = default_synthetic_root() if root is None else os.fspath(root)
    if not _synthetic_is_current(root, generate_kwargs):
        logger.info(f"Generating the synthetic dataset in {root} ...")
        generate_synthetic_coco(root, **generate_kwargs)
    return register_synthetic(root, prefix)


def _synthetic_is_current(root, generate_kwargs):
    wanted = synthetic_params(**generate_kwargs)
    for split in ("train", "val"):
        json_file = _synthetic_paths(root, split)[0]
        if not os.path.isfile(json_file):
            return False
        with open(json_file) as f:
            info = json.load(f).get("info", {})
        if any(info.get(k) != v for k, v in wanted.items()):
            return False
    return True


def register_coco_from_spec(spec):
    """Register a COCO-format dataset given as ``NAME=JSON_PATH:IMAGE_ROOT``, e.g.
    ``my_val=/data/my/annotations/val.json:/data/my/images``, as for a command-line flag.

    Raises:
        ValueError: the spec is malformed, or NAME is registered with other paths.
        FileNotFoundError: the json file or the image folder does not exist.

    Returns:
        str: the dataset name.
    """
    match = _SPEC.match(spec.strip())
    if match is None or not match["name"].strip() or not match["root"].strip():
        raise ValueError(
            f"Malformed dataset spec {spec!r}: expected NAME=JSON_PATH:IMAGE_ROOT, where "
            "JSON_PATH ends in .json (e.g. my_val=annotations/val.json:images/val)."
        )
    name, json_file, image_root = match["name"].strip(), match["json"], match["root"]
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO json file {json_file!r} (from spec {spec!r}) not found.")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Image folder {image_root!r} (from spec {spec!r}) not found.")
    return _register(name, json_file, image_root)
