"""YOLO-format datasets (Ultralytics' ``data.yaml`` and one ``.txt`` label file per image) read
into detectron2's dataset dicts, every problem named by file and line. A label line is
``CLASS XC YC W H`` in fractions of the image, or a polygon ``CLASS X1 Y1 X2 Y2 ...`` (its box);
an image without a label file has no objects (a background image).
"""

import logging
import os
from typing import NamedTuple

import yaml
from detectron2.structures import BoxMode

from .voc import FormatError, image_size

__all__ = [
    "IMAGE_EXTENSIONS",
    "YoloObject",
    "label_path",
    "load_yolo",
    "read_yolo_labels",
    "yolo_split",
]

logger = logging.getLogger(__name__)

# How many boxes or file names a message lists before the rest are counted.
MAX_SHOWN = 5
# A box past the image by less than this (a fraction of its side, from rounding) is not clipped.
_CLIP_TOLERANCE = 1e-6

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def label_path(image):
    """The label file of the image path ``image`` (``.../images/a/b.jpg`` ->
    ``.../labels/a/b.txt``); beside the image when no folder is called ``images``."""
    parts = os.path.normpath(image).split(os.sep)
    if "images" in parts[:-1]:
        k = len(parts) - 2 - parts[:-1][::-1].index("images")
        parts[k] = "labels"
    return os.path.splitext(os.sep.join(parts))[0] + ".txt"


class YoloObject(NamedTuple):
    """One label line: its class index, its ``box`` [x0, y0, x1, y1] in ``XYXY_ABS`` pixels,
    its ``line`` and whether the box was ``clipped`` to the image."""

    class_index: int
    box: list
    line: int
    clipped: bool


def read_yolo_labels(path, width, height, num_classes):
    """A :class:`YoloObject` per non-empty line of one label file, boxes in ``XYXY_ABS``
    pixels of a ``width`` x ``height`` image, clipped to it (marked ``clipped``). A FormatError
    names the line that is not a class in [0, ``num_classes``) and 4 or an even number >= 6 of
    fractions in [0, 1], or is an empty box.
    """
    objects = []
    with open(path) as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}, line {line_number}"
            values = []
            for field in fields:
                try:
                    values.append(float(field))
                except ValueError:
                    raise FormatError(
                        f"{where}: {line.strip()!r} is not numbers ({field!r} is not a number)"
                    ) from None
            # Ultralytics accepts a class written as an integral float ("2.0").
            if not values[0].is_integer():
                raise FormatError(
                    f"{where}: class {fields[0]!r} is not a whole number (the first value of a "
                    "line is the class index)"
                )
            class_index, values = int(values[0]), values[1:]
            if not 0 <= class_index < num_classes:
                raise FormatError(
                    f"{where}: class {class_index} is not in 0..{num_classes - 1} (the "
                    f"{num_classes} names of the data yaml)"
                )
            if len(values) != 4 and (len(values) < 6 or len(values) % 2):
                raise FormatError(
                    f"{where}: {len(fields)} values; a line is CLASS XC YC W H (box) or CLASS "
                    "X1 Y1 X2 Y2 X3 Y3 ... (polygon)"
                )
            if any(not 0.0 <= v <= 1.0 for v in values):
                raise FormatError(
                    f"{where}: {line.strip()!r} has values outside [0, 1]; YOLO coordinates are "
                    "fractions of the image's width and height"
                )
            if len(values) == 4:
                xc, yc, w, h = values
                box = [xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2]
            else:
                xs, ys = values[0::2], values[1::2]
                box = [min(xs), min(ys), max(xs), max(ys)]
            inside = [min(max(v, 0.0), 1.0) for v in box]
            clipped = any(abs(a - b) > _CLIP_TOLERANCE for a, b in zip(inside, box))
            box = [inside[0] * width, inside[1] * height, inside[2] * width, inside[3] * height]
            if box[2] <= box[0] or box[3] <= box[1]:
                raise FormatError(f"{where}: {line.strip()!r} is an empty box")
            objects.append(YoloObject(class_index, box, line_number, clipped))
    return objects


def _class_names(data, data_yaml):
    names = data.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except ValueError:
            keys = None
        if keys != list(range(len(names))):
            raise FormatError(f"{data_yaml}: the keys of 'names' are not 0..{len(names) - 1}")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if not isinstance(names, list) or not names:
        raise FormatError(
            f"{data_yaml}: 'names' (the class names, a list or {{index: name}}) is missing"
        )
    if "nc" in data and data["nc"] != len(names):
        raise FormatError(f"{data_yaml}: nc is {data['nc']} but 'names' has {len(names)} names")
    return [str(n) for n in names]


def _read_split(data_yaml, split):
    """Class names, sorted image paths and image folders of ``split`` of ``data_yaml``: a
    folder of images, a ``.txt`` list of them, or a list of either, relative to the yaml's
    ``path`` (from its folder). FormatError for a malformed yaml, FileNotFoundError for a
    missing entry or no image."""
    data_yaml = os.fspath(data_yaml)
    if not os.path.isfile(data_yaml):
        raise FileNotFoundError(f"YOLO data yaml {data_yaml!r} not found")
    try:
        with open(data_yaml) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise FormatError(f"{data_yaml}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{data_yaml}: not a mapping of keys (path, train, val, names)")
    names = _class_names(data, data_yaml)
    if not data.get(split):
        raise FormatError(f"{data_yaml}: has no split {split!r} (it has {sorted(data)})")
    root = os.path.join(os.path.dirname(os.path.abspath(data_yaml)), str(data.get("path") or ""))
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    images, folders = [], []
    for entry in entries:
        where = os.path.join(root, str(entry))
        if os.path.isdir(where):
            folders.append(where)
            images += [
                os.path.join(folder, f)
                for folder, _, files in os.walk(where)
                for f in files
                if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
        elif os.path.isfile(where) and where.endswith(".txt"):
            with open(where) as f:
                images += [os.path.join(root, line.strip()) for line in f if line.strip()]
        else:
            raise FileNotFoundError(
                f"{data_yaml}: {split} entry {entry!r} ({where}) is not a folder of images or a "
                ".txt list of them"
            )
    if not images:
        raise FileNotFoundError(f"{data_yaml}: split {split!r} has no image")
    return names, sorted(images), folders


def yolo_split(data_yaml, split):
    """Class names and sorted image paths of ``split`` of the dataset described by
    ``data_yaml``; see :func:`_read_split`."""
    return _read_split(data_yaml, split)[:2]


def first_names(items):
    """The first :data:`MAX_SHOWN` of ``items``, then how many more there are."""
    more = f" and {len(items) - MAX_SHOWN} more" if len(items) > MAX_SHOWN else ""
    return "; ".join(items[:MAX_SHOWN]) + more


def _orphan_labels(folders, images):
    """The label files under the ``labels`` folders of the image ``folders`` that belong to
    none of ``images`` (their boxes would be lost); labels beside the images are not searched."""
    expected = {os.path.normpath(label_path(image)) for image in images}
    orphans = []
    for folder in folders:
        folder = os.path.normpath(folder)
        labels = os.path.dirname(label_path(os.path.join(folder, "x")))
        if labels == folder or not os.path.isdir(labels):
            continue
        orphans += [
            os.path.join(parent, f)
            for parent, _, files in os.walk(labels)
            for f in files
            if f.endswith(".txt") and os.path.normpath(os.path.join(parent, f)) not in expected
        ]
    return sorted(orphans)


def load_yolo(data_yaml, split, report=None):
    """``(class names, dataset dicts)`` of ``split`` (:func:`yolo_split`,
    :func:`read_yolo_labels`). Images without labels, clipped boxes and labels without an image
    go to ``report(level, message)`` (the logger by default); errors as those functions'."""
    report = report or logger.log
    names, images, folders = _read_split(data_yaml, split)
    records, unlabeled, clipped = [], 0, []
    for image_id, image in enumerate(images):
        if not os.path.isfile(image):
            raise FileNotFoundError(f"{data_yaml}: image {image} of split {split!r} not found")
        width, height = image_size(image)
        labels = label_path(image)
        objects = []
        if os.path.isfile(labels):
            objects = read_yolo_labels(labels, width, height, len(names))
            clipped += [f"{labels}, line {o.line}" for o in objects if o.clipped]
        else:
            unlabeled += 1
        records.append(
            {
                "file_name": image,
                "image_id": image_id,
                "height": height,
                "width": width,
                "annotations": [
                    {"bbox": o.box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": o.class_index}
                    for o in objects
                ],
            }
        )
    if unlabeled:
        report(
            logging.INFO,
            f"{data_yaml} {split}: {unlabeled} of {len(images)} images have no label file "
            "(background images, no objects)",
        )
    if clipped:
        report(
            logging.WARNING,
            f"{data_yaml} {split}: {len(clipped)} boxes reached past their image, clipped to it: "
            + first_names(clipped),
        )
    orphans = _orphan_labels(folders, images)
    if orphans:
        report(
            logging.WARNING,
            f"{data_yaml} {split}: {len(orphans)} label files have no image, their boxes are "
            f"not used: {first_names(orphans)}",
        )
    return names, records
