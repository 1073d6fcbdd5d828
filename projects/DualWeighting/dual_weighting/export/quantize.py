"""int8 ONNX models for ONNX Runtime on CPU (docs/EXPORT.md): static (calibrated on training
images) and dynamic quantization of the convolutions of :func:`~.onnx.export_onnx`'s file, the
post-processing kept in float32. float16 is not offered (ONNX Runtime's conversion leaves this
graph invalid). ``onnxruntime.quantization`` is imported only when used.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable

import numpy as np
import torch

__all__ = [
    "PRECISIONS",
    "calibration_images",
    "quantize_dynamic_int8",
    "quantize_static_int8",
    "write_precision",
]

# The variants of an exported model: name -> what it is.
PRECISIONS = {
    "fp32": "float32, as exported",
    "int8_static": "int8 weights and activations (QDQ, per-channel weights), calibrated",
    "int8_dynamic": "int8 weights, activations quantized at run time (ConvInteger)",
}
_QUANTIZED_OPS = ["Conv"]


def calibration_images(cfg, count):
    """Static int8's calibration set: the first ``count`` images of ``cfg.DATASETS.TRAIN[0]``
    after the test resize, (3, H, W) float32."""
    import itertools

    from ..engine import DWTrainer

    loader = DWTrainer.build_test_loader(cfg, cfg.DATASETS.TRAIN[0])
    return [x[0]["image"].float() for x in itertools.islice(loader, count)]


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over (3, H, W) float32 images."""

    def __init__(self, images: Iterable[torch.Tensor]):
        self._images = iter(images)

    def get_next(self):
        image = next(self._images, None)
        if image is None:
            return None
        return {"image": np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)}


def quantize_static_int8(src, dst, calibration_images: Iterable[torch.Tensor]):
    """Static int8 quantization of the convolutions of ``src`` into ``dst``: QDQ, per-channel
    int8 weights, uint8 activations MinMax-calibrated on ``calibration_images`` ((3, H, W)
    float32, at least one)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    images = list(calibration_images)
    if not images:
        raise ValueError("Static quantization needs at least one calibration image")
    quantize_static(
        str(src),
        str(dst),
        _Calibration(images),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        op_types_to_quantize=_QUANTIZED_OPS,
        calibrate_method=CalibrationMethod.MinMax,
    )


def quantize_dynamic_int8(src, dst):
    """Dynamic int8 quantization of the convolutions of ``src`` into ``dst``: int8 weights, each
    activation's range measured as the model runs (no calibration)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=_QUANTIZED_OPS
    )


def write_precision(precision, src, dst, calibration_images=()):
    """``src`` (float32 ONNX) in ``precision`` (a key of :data:`PRECISIONS`) written to ``dst``."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose from {sorted(PRECISIONS)}")
    if precision == "fp32":
        shutil.copyfile(src, dst)
    elif precision == "int8_static":
        quantize_static_int8(src, dst, calibration_images)
    else:
        quantize_dynamic_int8(src, dst)
