"""ONNX export with ``torch.onnx.export(..., dynamo=True)`` and the ONNX Runtime session that runs
it. Box refine's read becomes GridSample, DCNv2 ONNX DeformConv (opset 19, translated here; ONNX
Runtime >= 1.25), the NMS NonMaxSuppression. ``onnx``, ``onnxscript`` and ``onnxruntime``
(``pip install -e .[export]``) are imported only when used.
"""

from __future__ import annotations

import numpy as np
import torch

from .adapter import ExportError, check_image, deformable_layers
from .graph import DetectionGraph

__all__ = [
    "DEFORM_CONV_OPSET",
    "ONNX_OPSET",
    "OnnxRuntimeDetector",
    "check_onnx_runtime",
    "export_onnx",
    "onnx_opset",
]

# GridSample needs 16; 18 is the lowest opset the torch.export-based exporter writes natively.
ONNX_OPSET = 18
# The first opset with DeformConv.
DEFORM_CONV_OPSET = 19
# The first ONNX Runtime that runs DeformConv (on CPU and CUDA).
ORT_DEFORM_CONV_VERSION = (1, 25)


def onnx_opset(model) -> int:
    """The opset ``model`` is exported at: :data:`DEFORM_CONV_OPSET` with DCNv2 layers, else
    :data:`ONNX_OPSET`."""
    return DEFORM_CONV_OPSET if deformable_layers(model) else ONNX_OPSET


def _deform_conv2d_onnx(
    input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
    offset_groups, use_mask,
):  # fmt: skip
    """``torchvision::deform_conv2d`` as ONNX DeformConv (same offset and mask layout), an
    onnxscript translation for the exporter; torchvision's mask is zeros without ``use_mask``."""
    from onnxscript import opset19 as op

    return op.DeformConv(
        input,
        weight,
        offset,
        bias,
        mask if use_mask else None,
        strides=[stride_h, stride_w],
        pads=[pad_h, pad_w, pad_h, pad_w],
        dilations=[dil_h, dil_w],
        group=groups,
        offset_group=offset_groups,
    )


def export_onnx(model, image: torch.Tensor, path) -> int:
    """Export ``model`` (a DWFCOS) to the ONNX file ``path``, recording
    :class:`~.graph.DetectionGraph` on the (3, H, W) float32 CPU ``image``; any input size from
    :data:`MIN_IMAGE_SIDE` px. Returns the opset (:func:`onnx_opset`)."""
    opset = onnx_opset(model)
    # DYNAMIC, not bounded dimensions: torch.export's solver cannot state the sample's guards as
    # bounds and would refuse; the graph computes every size from 2 px (tested).
    sizes = {1: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC}
    with torch.no_grad():
        program = torch.onnx.export(
            DetectionGraph(model),
            (image,),
            dynamo=True,
            opset_version=opset,
            input_names=["image"],
            output_names=["boxes", "scores", "classes"],
            dynamic_shapes={"image": sizes},
            custom_translation_table={
                torch.ops.torchvision.deform_conv2d.default: _deform_conv2d_onnx
            },
            verbose=False,
        )
    program.save(str(path))
    return opset


def check_onnx_runtime(model):
    """Raise an :class:`ExportError` if ONNX export of ``model`` cannot run here: a package
    missing, or DCNv2 layers with an ONNX Runtime without DeformConv (< 1.25)."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs both)
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(
            f"--format onnx needs the packages onnx, onnxscript and onnxruntime ({e}): "
            "pip install -e .[export]"
        ) from e
    layers = deformable_layers(model)
    version = tuple(int(v) for v in onnxruntime.__version__.split(".")[:2])
    if layers and version < ORT_DEFORM_CONV_VERSION:
        need = ".".join(map(str, ORT_DEFORM_CONV_VERSION))
        shown = ", ".join(layers[:4]) + (f" and {len(layers) - 4} more" if len(layers) > 4 else "")
        raise ExportError(
            f"Cannot export to ONNX for this ONNX Runtime: the DCNv2 layers {shown} "
            f"(ModulatedDeformConv) become ONNX DeformConv (opset {DEFORM_CONV_OPSET}), which "
            f"onnxruntime {onnxruntime.__version__} cannot run; install onnxruntime>={need}"
        )


class OnnxRuntimeDetector:
    """An exported ONNX model in an ONNX Runtime session: ``detector(image)`` gives ``(boxes,
    scores, classes)`` CPU tensors for an image as :func:`~.adapter.check_image` takes it
    (:func:`~.adapter.sample_image` reads and resizes a file so); boxes in its pixels.

    Args:
        path: the ``.onnx`` file.
        providers: ONNX Runtime execution providers, in order of preference.
        threads: intra-op threads (None: ONNX Runtime's default, all cores).
    """

    def __init__(self, path, providers=("CPUExecutionProvider",), threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=list(providers))

    def __call__(self, image):
        check_image(image)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        boxes, scores, classes = self.session.run(None, {"image": np.ascontiguousarray(image)})
        return torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
