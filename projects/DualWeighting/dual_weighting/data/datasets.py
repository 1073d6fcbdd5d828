"""Registering datasets in detectron2's catalogs: COCO-format (``register_coco_instances``),
Pascal VOC XML and YOLO (read when registered, so a bad file stops the run before training);
all are COCO-evaluated.
"""

import collections
import logging
import os
import re

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from .class_names import near_duplicates
from .voc import FormatError, load_voc, voc_dataset_dicts
from .yolo import first_names, load_yolo

__all__ = [
    "CLASS_NAMES",
    "default_synthetic_root",
    "register_coco_from_spec",
    "register_synthetic",
    "register_voc_from_specs",
    "register_yolo_from_spec",
]

logger = logging.getLogger(__name__)

# The classes of the generated shapes dataset (tools/sample_data/shapes.py), category ids 1..K.
CLASS_NAMES = ("circle", "square", "triangle", "ring", "cross", "star")

# NAME=JSON_PATH:IMAGE_ROOT; ".json" tells the separating colon from colons inside the paths.
_SPEC = re.compile(r"^(?P<name>[^=]+)=(?P<json>.+?\.json):(?P<root>.+)$", re.IGNORECASE)


def default_synthetic_root():
    """``$DETECTRON2_DATASETS/dw_synthetic`` (``datasets/dw_synthetic`` when unset)."""
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


def register_synthetic(root, prefix="dw_synthetic"):
    """Register the generated shapes dataset under ``root`` as ``{prefix}_train`` and
    ``{prefix}_val`` and return the two names. Files are read only when a dataset is loaded; the
    same names with other paths raise ValueError."""
    return _register_splits(root, prefix, ("train", "val"), CLASS_NAMES)


def _register_splits(root, prefix, splits, class_names):
    """Register COCO-format ``root/annotations/instances_{split}.json`` with images in
    ``root/{split}`` as ``{prefix}_{split}``; the tuple of names."""
    return tuple(
        _register(
            f"{prefix}_{split}",
            os.path.join(root, "annotations", f"instances_{split}.json"),
            os.path.join(root, split),
            {"thing_classes": list(class_names)},
        )
        for split in splits
    )


def register_coco_from_spec(spec):
    """Register a COCO-format dataset given as ``NAME=JSON_PATH:IMAGE_ROOT``, e.g.
    ``my_val=/data/my/annotations/val.json:/data/my/images``; return NAME. A ValueError for a
    malformed spec or NAME registered with other paths, FileNotFoundError for missing paths.
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


def _split_spec(spec, flag, form, example, ok=lambda rest: True):
    """``(NAME, rest)`` of ``spec`` ``NAME=rest``; a ValueError unless ``ok(rest)``."""
    name, sep, rest = spec.strip().partition("=")
    if not sep or not name.strip() or not rest.strip() or not ok(rest.strip()):
        raise ValueError(f"Malformed {flag} spec {spec!r}: expected {form} (e.g. {example}).")
    return name.strip(), rest.strip()


def _registered_as(name, spec):
    """True when ``name`` is registered from ``spec`` already; ValueError when from another."""
    if name not in DatasetCatalog.list():
        return False
    old = MetadataCatalog.get(name).get("dw_spec")
    if old == spec:
        return True
    raise ValueError(
        f"Dataset {name!r} is already registered ({old or 'not from a spec'}); cannot register "
        f"it again from {spec!r}. Use another name."
    )


def _register_dicts(name, records, class_names, spec, notes=()):
    """Register ``records``; ``notes``, (logging level, message) pairs, are logged when the
    dataset is first loaded, after the run has set up its logging."""
    unsaid = list(notes)

    def load():
        while unsaid:
            logger.log(*unsaid.pop(0))
        return records

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names), evaluator_type="coco", dw_spec=spec
    )
    return name


def register_voc_from_specs(specs, class_names=None):
    """Register Pascal VOC datasets given as ``NAME=ANNOTATIONS[:IMAGE_DIR]`` (``--register-voc``;
    :func:`.voc.voc_xml_files`, :func:`.voc.default_voc_image_dir`); return the names.

    ``class_names`` (``--voc-classes``) gives the order of the model's classes, and must hold
    every object's name; None: the sorted names of all ``specs``' objects together, so that
    train and test share one order, refused when some differ only in case.

    Raises ValueError (a malformed spec, NAME registered from another), FormatError (a malformed
    file, an unknown or near-duplicate name, named by file and line) or FileNotFoundError.
    """
    parsed = []
    for spec in specs:
        name, rest = _split_spec(
            spec, "--register-voc", "NAME=ANNOTATIONS[:IMAGE_DIR]", "my_train=VOC/Annotations"
        )
        path, _, image_dir = rest.partition(":")
        parsed.append((name, spec.strip(), load_voc(path, image_dir or None)))
    objects = [(o, ann.path) for _, _, loaded in parsed for ann, _ in loaded for o in ann.objects]
    class_names = _voc_class_names(objects, class_names)
    names = []
    for name, spec, loaded in parsed:
        if not _registered_as(name, spec):
            records = voc_dataset_dicts(loaded, class_names)
            _register_dicts(name, records, class_names, spec, _clipped_notes(spec, loaded))
        names.append(name)
    return names


def _voc_class_names(objects, given):
    """The class list of VOC ``objects`` ((VocObject, xml path) pairs): ``given``, where every
    object's name must be, or else their sorted names, refused when some differ only in case."""
    first = {}
    for o, path in objects:
        first.setdefault(o.name, f"{path}, line {o.line}")
    if given is not None:
        missing = [name for name in first if name not in given]
        if missing:
            close = {n.casefold(): n for n in given}
            hint = close.get(missing[0].casefold())
            hint = f" (did you mean {hint!r}?)" if hint else ""
            raise FormatError(
                f"{first[missing[0]]}: class {missing[0]!r} is not in the class list "
                f"({', '.join(given)}){hint}; {len(missing)} name(s) are missing from it: "
                f"{', '.join(map(repr, missing))}"
            )
        return list(given)
    close = near_duplicates(first)
    if close:
        count = collections.Counter(o.name for o, _ in objects)
        shown = "; ".join(
            " and ".join(f"{n!r} ({count[n]} objects, first {first[n]})" for n in group)
            for group in close
        )
        raise FormatError(
            f"Pascal VOC class names differ only in case: {shown}. Correct the files, or give "
            "the class list with --voc-classes (names that it lists are kept apart)."
        )
    return sorted(first)


def _clipped_notes(spec, loaded):
    """The (level, message) notes on the boxes of :func:`.voc.load_voc`'s ``loaded`` clipped to
    their image: how many, the first few by file and line."""
    clipped = [(ann.path, o) for ann, _ in loaded for o in ann.objects if o.clipped]
    if not clipped:
        return []
    shown = first_names(
        [
            f"{path}, line {o.line} ({o.name!r}, now [{', '.join(f'{v:g}' for v in o.box)}])"
            for path, o in clipped
        ]
    )
    message = f"{spec}: {len(clipped)} boxes reached past their image, clipped to it: {shown}"
    return [(logging.WARNING, message)]


def register_yolo_from_spec(spec):
    """Register a YOLO dataset given as ``NAME=DATA_YAML:SPLIT`` (``--register-yolo``,
    :func:`.yolo.load_yolo`); return NAME. Errors as :func:`register_voc_from_specs`'."""

    def ok(rest):
        data_yaml, sep, split = rest.rpartition(":")
        return sep and data_yaml and split

    name, rest = _split_spec(
        spec, "--register-yolo", "NAME=DATA_YAML:SPLIT", "my_val=data.yaml:val", ok
    )
    data_yaml, _, split = rest.rpartition(":")
    if not _registered_as(name, spec.strip()):
        notes = []
        class_names, records = load_yolo(data_yaml, split, report=lambda *note: notes.append(note))
        _register_dicts(name, records, class_names, spec.strip(), notes)
    return name
