"""TorchScript export by tracing: the graph of :func:`~.adapter.detections` for any image size."""

from __future__ import annotations

import torch

from .adapter import check_image, tracing_adapter

__all__ = ["TorchScriptDetector", "export_torchscript", "load_torchscript"]


def export_torchscript(model, image: torch.Tensor, path=None):
    """The module of ``model`` (a DWFCOS) traced on the (3, H, W) float32 ``image``,
    ``module(image) -> (boxes, scores, classes)`` for any image size, saved to ``path`` unless
    None; it runs without Python (with torchvision's ops loaded)."""
    adapter = tracing_adapter(model, image)
    traced = torch.jit.trace(adapter, (image,), check_trace=False)
    if path is not None:
        traced.save(str(path))
    return traced


class TorchScriptDetector:
    """The ``module`` saved by :func:`export_torchscript`, called like
    :class:`~.onnx.OnnxRuntimeDetector`, its input checked by :func:`~.adapter.check_image`."""

    def __init__(self, path, device="cpu"):
        self.module = torch.jit.load(str(path), map_location=device)

    def __call__(self, image):
        check_image(image)
        return self.module(torch.as_tensor(image))


def load_torchscript(path, device="cpu") -> TorchScriptDetector:
    """The :class:`TorchScriptDetector` of ``path`` on ``device``."""
    return TorchScriptDetector(path, device)
