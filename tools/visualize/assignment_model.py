"""A config's model run on dataset records as the trainer feeds them, for assignment pictures:
the model, the mapper, which records to draw, and the DW maps of one mapped record."""

from __future__ import annotations

import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetMapper, detection_utils
from detectron2.modeling import build_model

from .assignment_maps import dw_assignment_maps


def load_model(cfg, seed=0):
    """The config's model in eval mode, with ``MODEL.WEIGHTS`` or, if empty, a seeded init."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model


def training_mapper(cfg):
    """detectron2's training mapper (annotations kept, crowd boxes dropped) with the test resize
    and no flip, so that the picture is deterministic."""
    return DatasetMapper(
        is_train=True,
        augmentations=detection_utils.build_augmentation(cfg, is_train=False),
        image_format=cfg.INPUT.FORMAT,
    )


def select_records(records, indices, images=None):
    """Indices of the records to draw: ``indices``, or the records whose image file is named
    ``images`` (a base name, or a path ending like the record's). ValueError for an image that
    no record has or indices out of range."""
    if images:
        names = [os.path.normpath(r["file_name"]) for r in records]
        selected = []
        for image in images:
            image = os.path.normpath(image)
            found = [i for i, n in enumerate(names) if n == image or n.endswith(os.sep + image)]
            if not found:
                raise ValueError(f"no record of the dataset has the image {image!r}")
            selected += found[:1]
        return selected
    bad = [i for i in indices if not -len(records) <= i < len(records)]
    if bad:
        raise ValueError(f"--indices {bad}: the dataset has {len(records)} records")
    return list(indices)


@torch.no_grad()
def compute_assignment(model, mapped):
    """What the criterion of ``model`` (a :class:`~dual_weighting.DWFCOS`) assigns on one
    ``mapped`` record (:func:`training_mapper`'s), the model run as training runs it.

    Returns:
        ``(maps, level_shapes, level_strides)``: the dict of :func:`dw_assignment_maps` (on the
        CPU) and each level's (H_l, W_l) and stride.
    """
    images = model.preprocess_image([mapped])
    features, predictions = model.dense_predictions(images)
    instances = mapped["instances"].to(model.device)
    assignment = model.criterion.assign(
        *model.criterion_inputs(features, predictions),
        [instances.gt_boxes.tensor],
        [instances.gt_classes],
    )
    maps = dw_assignment_maps(assignment, instances.gt_classes)
    maps = {k: v.cpu() for k, v in maps.items()}
    shapes = [tuple(f.shape[-2:]) for f in features]
    return maps, shapes, list(model.anchor_generator.strides)
