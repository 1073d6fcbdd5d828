"""COCO evaluation of an exported model with detectron2's test loader, ``COCOEvaluator`` and
``inference_on_dataset``, exactly as ``train_net.py --eval-only`` evaluates the PyTorch model."""

from __future__ import annotations

import torch
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from ..engine import DWTrainer

__all__ = ["ExportedModel", "evaluate_exported"]


class ExportedModel:
    """An exported ``detector(image) -> (boxes, scores, classes)`` behind the interface of a
    detectron2 model at inference; images go to ``device``."""

    def __init__(self, detector, device="cpu"):
        self.detector = detector
        self.device = device

    def __call__(self, batched_inputs: list[dict]) -> list[dict]:
        """detectron2's batched inputs (``image`` (3, H, W) as the mapper gives it, optional
        ``height`` and ``width`` of the original image) to ``[{"instances": Instances}]`` with
        boxes in the original image's pixels, as ``DWFCOS`` returns them."""
        results = []
        for inputs in batched_inputs:
            image = inputs["image"].to(self.device, torch.float32)
            boxes, scores, classes = self.detector(image)
            height, width = image.shape[-2:]
            instances = Instances(
                (height, width), pred_boxes=Boxes(boxes), scores=scores, pred_classes=classes
            )
            out_size = (inputs.get("height", height), inputs.get("width", width))
            results.append({"instances": detector_postprocess(instances, *out_size)})
        return results


def evaluate_exported(cfg, detector, dataset_name=None, output_dir=None, device="cpu"):
    """detectron2's COCO results of ``detector`` (see :class:`ExportedModel`) on
    ``dataset_name`` (default ``cfg.DATASETS.TEST[0]``) with the trainer's loader and evaluator."""
    dataset_name = dataset_name or cfg.DATASETS.TEST[0]
    loader = DWTrainer.build_test_loader(cfg, dataset_name)
    evaluator = DWTrainer.build_evaluator(cfg, dataset_name, output_dir)
    return inference_on_dataset(ExportedModel(detector, device), loader, evaluator)
