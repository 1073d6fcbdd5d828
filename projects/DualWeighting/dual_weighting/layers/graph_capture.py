"""Whether the model is being recorded as a graph for export (eager-only code must give way)."""

import torch

__all__ = ["capturing_graph"]


def capturing_graph() -> bool:
    """True while ``torch.jit.trace`` (TorchScript, the legacy ONNX exporter) or ``torch.export``
    (the ONNX exporter ``torch.onnx.export(..., dynamo=True)``) records the model."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()
