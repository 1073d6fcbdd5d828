"""Deployment (docs/EXPORT.md): DW-FCOS as a TorchScript (traced, :mod:`.torchscript`) or ONNX
(:mod:`.onnx`, recording :mod:`.graph`) model that takes an image tensor and returns the PyTorch
model's detections (:mod:`.adapter`), checked (:mod:`.verify`) and COCO-evaluated (:mod:`.eval`).

A graph differs from eager PyTorch (:func:`~..layers.capturing_graph` picks its form) by rounding
or on exact ties only: box refine reads with ``grid_sample``; the NMS is torchvision's op with the
threshold rounded to float32 (the same on exact ties, it can differ within one float32 rounding
of the threshold or on equal scores); a non-finite image gives no detections, the detectors
check their input first (:func:`check_image`).
"""

from .adapter import (
    MIN_IMAGE_SIDE,
    ExportError,
    build_export_model,
    check_image,
    deformable_layers,
    detections,
    sample_image,
    script_model,
    tracing_adapter,
)
from .eval import ExportedModel, evaluate_exported
from .graph import DetectionGraph, graph_detections
from .onnx import OnnxRuntimeDetector, check_onnx_runtime, export_onnx, onnx_opset
from .torchscript import TorchScriptDetector, export_torchscript, load_torchscript
from .verify import DetectionMatch, match_detections, verify_exported

__all__ = [
    "MIN_IMAGE_SIDE",
    "DetectionGraph",
    "DetectionMatch",
    "ExportError",
    "ExportedModel",
    "OnnxRuntimeDetector",
    "TorchScriptDetector",
    "build_export_model",
    "check_image",
    "check_onnx_runtime",
    "deformable_layers",
    "detections",
    "evaluate_exported",
    "export_onnx",
    "export_torchscript",
    "graph_detections",
    "load_torchscript",
    "match_detections",
    "onnx_opset",
    "sample_image",
    "script_model",
    "tracing_adapter",
    "verify_exported",
]
