"""TorchScript export by tracing: the graph of :func:`~.adapter.detections` for any image size."""

from __future__ import annotations

import torch

from .adapter import check_image, tracing_adapter

__all__ = ["TorchScriptDetector", "export_torchscript", "load_torchscript"]


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


class TorchScriptDetector:
    """The TorchScript module saved by :func:`export_torchscript`, called like the ONNX Runtime
    one: ``detector(image)`` with a (3, H, W) float32 tensor or NumPy array, 0-255 pixel values
    at the size the model sees (see :class:`~.onnx.OnnxRuntimeDetector`), gives ``(boxes,
    scores, classes)``, and an input the graph does not take gets a ValueError naming the
    problem (:func:`~.adapter.check_image`) instead of an error from inside the graph or a
    silent empty result.

    Attributes:
        module: the loaded ``torch.jit.ScriptModule``.
    """

    def __init__(self, path, device="cpu"):
        self.module = torch.jit.load(str(path), map_location=device)

    def __call__(self, image):
        check_image(image)
        return self.module(torch.as_tensor(image))


def load_torchscript(path, device="cpu") -> TorchScriptDetector:
    """The TorchScript model saved by :func:`export_torchscript`, on ``device``."""
    return TorchScriptDetector(path, device)
