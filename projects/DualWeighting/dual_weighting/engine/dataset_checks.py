"""The checks of the datasets a run reads, before it starts: registered, on disk, with no more
classes than the model predicts and, when evaluating a trained model, the names it learned. Each
raises :class:`.checks.SetupError` naming the dataset, the config key and the fix."""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..data import saved_class_names
from .checks import SetupError

__all__ = [
    "LAZY_NUM_CLASSES",
    "YACS_NUM_CLASSES",
    "check_class_names",
    "check_datasets",
    "check_num_classes",
    "model_class_names",
]


# The key of the number of classes, by yacs meta-architecture, and the LazyConfig keys tried.
YACS_NUM_CLASSES = {
    "DWFCOS": "MODEL.DW.NUM_CLASSES",
    "DWLossFCOS": "MODEL.FCOS.NUM_CLASSES",
    "ConfigurableFCOS": "MODEL.FCOS.NUM_CLASSES",
    "DWRetinaNet": "MODEL.RETINANET.NUM_CLASSES",
    "RetinaNet": "MODEL.RETINANET.NUM_CLASSES",
    "GeneralizedRCNN": "MODEL.ROI_HEADS.NUM_CLASSES",
}
LAZY_NUM_CLASSES = ("model.num_classes", "model.roi_heads.num_classes")


def check_num_classes(uses, num_classes, key):
    """Raise when a dataset of ``uses``, (name, config key) pairs, has more classes (where known
    before loading) than the model predicts (``num_classes``, from the config ``key``)."""
    for name, used_by in uses:
        classes = MetadataCatalog.get(name).get("thing_classes") if name in DatasetCatalog else None
        if classes and len(classes) > num_classes:
            raise SetupError(
                f"Dataset {name!r} ({used_by}) has {len(classes)} classes ({', '.join(classes)}) "
                f"but the model predicts {key} = {num_classes}: set {key} {len(classes)}."
            )


def _class_list_difference(a, b):
    """Where the class lists ``a`` and ``b`` first differ, in words."""
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"class {k} is {x!r} in one, {y!r} in the other"
    return f"one has {len(a)} classes, the other {len(b)}"


def check_class_names(uses, model_names, model_where):
    """Raise when a dataset of ``uses`` (its classes known before loading) names other classes
    than ``model_names``, or the same in another order; ``model_where`` says where they come
    from."""
    for name, key in uses:
        classes = MetadataCatalog.get(name).get("thing_classes") if name in DatasetCatalog else None
        if classes is None or list(classes) == list(model_names):
            continue
        raise SetupError(
            f"Dataset {name!r} ({key}) has the classes\n  {', '.join(classes)}\nbut the model's "
            f"are ({model_where})\n  {', '.join(model_names)}\n"
            f"({_class_list_difference(list(classes), list(model_names))}), so its class "
            "numbers would mean other classes. Register the data with the model's class list "
            "(for Pascal VOC: --voc-classes with the model's class_names.txt, or the names "
            "separated by commas)."
        )


def model_class_names(uses, weights, train_key):
    """``(names, where)`` of the model's classes: the first training dataset's, else those saved
    beside ``weights`` (:func:`~..data.saved_class_names`); ``(None, None)`` if unknown."""
    train = [name for name, key in uses if key == train_key and name in DatasetCatalog]
    if train:
        names = MetadataCatalog.get(train[0]).get("thing_classes")
        return names, f"those of its training dataset {train[0]!r}"
    names, path = saved_class_names(weights)
    return names, path


def check_datasets(uses):
    """Raise when a dataset of ``uses`` is not registered or its files are not on disk."""
    for name, key in uses:
        if name not in DatasetCatalog.list():
            raise SetupError(
                f"Dataset {name!r} ({key}) is not registered. Register your COCO-format data "
                f"with --register-coco {name}=path/to/annotations.json:path/to/images, or use a "
                "registered name (detectron2's builtin coco_2017_train / coco_2017_val, the "
                "generated dw_synthetic_train / dw_synthetic_val, the tree crowns "
                "deepforest_trees_train / deepforest_trees_val)."
            )
        meta = MetadataCatalog.get(name)
        json_file, image_root = meta.get("json_file"), meta.get("image_root")
        missing = [json_file] if json_file and not os.path.isfile(json_file) else []
        if image_root and not os.path.isdir(image_root):
            missing.append(image_root + os.sep)
        if not missing:
            continue
        where = f"Dataset {name!r} ({key}) reads {' and '.join(missing)}, which"
        where += " do not exist." if len(missing) > 1 else " does not exist."
        if name.startswith("coco_"):
            root = os.getenv("DETECTRON2_DATASETS", "datasets")
            fix = (
                f"detectron2 reads its builtin COCO under $DETECTRON2_DATASETS (now {root!r}): "
                "put coco/annotations/instances_{train,val}2017.json, coco/train2017/ and "
                "coco/val2017/ there (from cocodataset.org), or point DETECTRON2_DATASETS at the "
                "folder that holds coco/. For other COCO-format data, register it with "
                "--register-coco NAME=JSON:IMAGES and name it in DATASETS.TRAIN / DATASETS.TEST "
                "(yaml) or dataloader.train.dataset.names / dataloader.test.dataset.names (py)."
            )
        elif name.startswith("dw_synthetic_"):
            fix = "Generate it with `python tools/generate_dataset.py` (or `make demo`)."
        elif name.startswith("deepforest_trees_"):
            fix = "Download and convert it with `python tools/prepare_trees.py`."
        else:
            fix = "Check the paths it was registered with."
        raise SetupError(f"{where} {fix}")
