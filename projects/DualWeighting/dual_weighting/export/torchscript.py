"""TorchScript export by tracing: the graph of :func:`~.adapter.detections` for any image size."""

from __future__ import annotations

import torch

from .adapter import tracing_adapter

__all__ = ["export_torchscript", "load_torchscript"]


def export_torchscript(model, image: torch.Tensor, path=None):
    """Trace ``model`` (a DWFCOS) on ``image`` and save the TorchScript module to ``path``.

    The traced module runs on images of any size (tracing records the sizes as graph values,
    as detectron2's export does) and without Python: ``torch.jit.load`` in Python or C++ (with
    torchvision's ops loaded, for NMS and DCNv2).

    Args:
        image: (3, H, W) float32 sample input on the model's device.
        path: where to write the ``.ts`` file; None writes nothing.

    Returns:
        The traced module: ``module(image)`` gives ``(boxes, scores, classes)``.
    """
    adapter = tracing_adapter(model, image)
    traced = torch.jit.trace(adapter, (image,), check_trace=False)
    if path is not None:
        traced.save(str(path))
    return traced


def load_torchscript(path, device="cpu"):
    """The TorchScript module saved by :func:`export_torchscript`, on ``device``."""
    return torch.jit.load(str(path), map_location=device)
