"""Deployment: DW-FCOS as a TorchScript or ONNX model that takes an image tensor and returns the
detections of the PyTorch model, for ``tools/export_model.py`` (a thin command line over this).

- ``adapter``: the traced view (image in, boxes/scores/classes out, in the input's pixels), the
  check of an exported model's input, the sample input, scripting's verdict, the export errors;
- ``graph``: the same detections in plain tensor operations, the form ``torch.export`` records
  with a dynamic height and width (the ONNX export);
- ``torchscript``: export by tracing (detectron2's ``TracingAdapter``) and the loaded module;
- ``onnx``: export with ``torch.onnx.export(..., dynamo=True)`` and the ONNX Runtime session;
- ``verify``: whether exported detections equal PyTorch's;
- ``eval``: COCO evaluation of an exported model (detectron2's ``COCOEvaluator``).

What a graph records differs from eager PyTorch in three places, each by rounding or on exact
ties only (:func:`~..layers.capturing_graph` picks the graph's form in the model's own code,
under ``torch.jit.trace`` and ``torch.export`` alike):

- box refine's deformable read is ``grid_sample`` (:func:`~..box_refine.read_at_offsets`);
- the NMS is torchvision's op (ONNX NonMaxSuppression) on the same class-shifted boxes, with the
  threshold rounded to float32, so that it drops a box when ``IoU > float32(threshold)`` in
  float32 as the release's NMS does. On an IoU exactly at the threshold (e.g. 0.6 for boxes of
  320x320 and 320x192 px with a common corner) eager, TorchScript and ONNX Runtime all keep the
  box. They can differ only where the IoU lies within one float32 rounding of the threshold
  without equalling it (the eager rule compares ``inter > threshold * union``, the exported one
  ``inter / union > threshold``), and for boxes of exactly equal scores, whose order
  TorchScript's and ONNX Runtime's top-k and NMS may break differently;
- a non-finite input image gives no detections (a graph cannot raise the eager model's
  ValueError); :class:`TorchScriptDetector` and :class:`OnnxRuntimeDetector` check their input
  first (:func:`check_image`) and raise it.

``onnx``, ``onnxscript`` and ``onnxruntime`` are an extra (``pip install -e .[export]``),
imported only by the functions that need them.
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
