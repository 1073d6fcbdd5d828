"""The tensor-in, tensors-out view of a DW-FCOS model that tracing records, and the check of
what can be exported. The exported model takes one image (3, H, W), float32, 0-255 in
``INPUT.FORMAT`` order, after the test resize, and returns ``boxes`` (K, 4) XYXY in its pixels,
``scores`` (K,) and ``classes`` (K,) int64 by decreasing score, as ``model([{"image": image}])``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.export import TracingAdapter, scripting_with_instances
from detectron2.modeling import build_model
from detectron2.structures import Boxes

from ..checkpoint import DWCheckpointer
from ..data import build_test_augmentation
from ..layers import ModulatedDeformConv

__all__ = [
    "MIN_IMAGE_SIDE",
    "ExportError",
    "build_export_model",
    "check_image",
    "deformable_layers",
    "detections",
    "sample_image",
    "script_model",
    "tracing_adapter",
]


# The smallest image side an exported graph takes, pixels (its sizes are dynamic from here).
MIN_IMAGE_SIDE = 2
# Pixel values this far outside [0, 255] pass (floating-point rounding of a resize).
_PIXEL_TOLERANCE = 0.5


class ExportError(RuntimeError):
    """A model that cannot be exported to, or run in, the requested format (layers named)."""


def check_image(image):
    """Raise a ValueError naming the problem unless ``image`` (a tensor or NumPy array) is what
    an exported model takes: one (3, H, W) float32 image, sides at least
    :data:`MIN_IMAGE_SIDE`, finite pixels of 0 to 255 (one scaled to 0-1 or normalised would
    silently give no detections)."""
    shape, dtype = tuple(image.shape), str(image.dtype).removeprefix("torch.")
    if len(shape) != 3 or shape[0] != 3:
        batch = " (one image, not a batch)" if len(shape) == 4 else ""
        raise ValueError(f"The exported model takes one image (3, H, W){batch}, got shape {shape}")
    if dtype != "float32":
        raise ValueError(
            f"The exported model takes float32 pixel values, got {dtype}: convert the image "
            "first (image.float() / array.astype(numpy.float32))"
        )
    if min(shape[1:]) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"The exported model takes images of at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} px, "
            f"got {shape[1]}x{shape[2]}"
        )
    # One host read; min and max propagate NaN.
    low, high = torch.stack(torch.aminmax(torch.as_tensor(image))).tolist()
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("The exported model got an image with infinite or NaN pixels")
    if 0 < high <= 1 or low < -_PIXEL_TOLERANCE or high > 255 + _PIXEL_TOLERANCE:
        scaled = " (an image scaled to 0-1? multiply it by 255)" if 0 < high <= 1 else ""
        raise ValueError(
            f"The exported model takes pixel values from 0 to 255, as read from an 8-bit image "
            f"file (it subtracts the mean and divides by the std itself), but the image's "
            f"values run from {low:g} to {high:g}{scaled}"
        )


def build_export_model(cfg, seed=0):
    """The config's model in eval mode with ``MODEL.WEIGHTS`` loaded strictly, or, with
    ``MODEL.WEIGHTS`` empty, initialised from ``seed``."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    # A graph takes the input image alone, so it returns boxes in its pixels, NMS'd there
    # (detectron2's post-processing); the release's rescaling needs the original size.
    model.test_release_postprocess = False
    if cfg.MODEL.WEIGHTS:
        DWCheckpointer(model, strict=True).load(cfg.MODEL.WEIGHTS)
    return model


def detections(model, image: torch.Tensor):
    """Boxes (K, 4) XYXY, scores (K,) and classes (K,) int64 of ``model`` (a DWFCOS in eval
    mode) on one (3, H, W) float ``image``."""
    (output,) = model([{"image": image}])
    instances = output["instances"]
    return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def tracing_adapter(model, image: torch.Tensor) -> TracingAdapter:
    """detectron2's ``TracingAdapter`` around ``model`` (set to eval mode) whose ``forward(image)``
    returns :func:`detections`, ready for ``torch.jit.trace`` and ``torch.onnx.export`` with
    ``(image,)``."""
    # The adapter itself in eval mode: the ONNX exporter restores a training adapter's mode, and
    # with it the model's, after exporting.
    return TracingAdapter(model.eval(), image, inference_func=detections).eval()


def deformable_layers(model) -> list[str]:
    """Names of the DCNv2 layers (:class:`ModulatedDeformConv`) of ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, ModulatedDeformConv)]


def script_model(model):
    """``scripting_with_instances`` of ``model``; for DWFCOS an ExportError (docs/EXPORT.md)."""
    fields = {"pred_boxes": Boxes, "scores": torch.Tensor, "pred_classes": torch.Tensor}
    try:
        return scripting_with_instances(model.eval(), fields)
    except Exception as e:  # TorchScript's frontend raises several error types
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        where = next((line for line in lines if line.startswith("File ")), "")
        reason = f"{lines[0] if lines else type(e).__name__} {where}".strip()
        raise ExportError(
            f"--export-method scripting cannot export this model to TorchScript: torch.jit.script "
            f"fails ({reason}). DW-FCOS is not all TorchScript (deformable convs with **kwargs, "
            "head convs with a Python-function activation, the input check of preprocess_image, "
            "the release's NMS loop). Use --export-method tracing: it records the same "
            "computation and gives a TorchScript model."
        ) from e


def sample_image(cfg, path=None, seed=0) -> torch.Tensor:
    """(3, H, W) float32 input for tracing: the image at ``path`` (else 480x640 noise from
    ``seed``) in ``cfg.INPUT.FORMAT``, resized by the config's test resize."""
    if path is None:
        image = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        image = read_image(path, format=cfg.INPUT.FORMAT)
    image, _ = T.apply_augmentations(build_test_augmentation(cfg), image)
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)), dtype=torch.float32)
