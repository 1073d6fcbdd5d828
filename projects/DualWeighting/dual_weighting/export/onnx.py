"""ONNX export (PyTorch's TorchScript-based exporter on the traced graph) and the ONNX Runtime
session that runs it.

What each part of DW-FCOS becomes:

- box refine's read: GridSample (opset 16; :func:`~..box_refine.read_at_offsets`);
- DCNv2 (backbone ``DEFORM_ON_PER_STAGE``, head ``DCN_ON_LAST_CONV``): torchvision's
  ``deform_conv2d`` has no ONNX symbolic, so one is registered here mapping it to ONNX
  DeformConv (opset 19), same offset layout and mask; ONNX Runtime runs DeformConv from 1.25;
- NMS: NonMaxSuppression (torchvision's symbolic); everything else: standard ops.

``onnx`` and ``onnxruntime`` (``pip install -e .[export]``) are imported only when used.
"""

from __future__ import annotations

import torch
from torch.onnx import symbolic_helper

from .adapter import ExportError, deformable_layers, tracing_adapter

__all__ = [
    "DEFORM_CONV_OPSET",
    "ONNX_OPSET",
    "OnnxRuntimeDetector",
    "check_onnx_runtime",
    "export_onnx",
    "onnx_opset",
]

# GridSample needs 16; 17 is the TorchScript-based exporter's best-tested opset.
ONNX_OPSET = 17
# The first opset with DeformConv.
DEFORM_CONV_OPSET = 19
# The first ONNX Runtime that runs DeformConv (on CPU and CUDA).
ORT_DEFORM_CONV_VERSION = (1, 25)


def onnx_opset(model) -> int:
    """The opset ``model`` is exported at: :data:`DEFORM_CONV_OPSET` with DCNv2 layers, else
    :data:`ONNX_OPSET`."""
    return DEFORM_CONV_OPSET if deformable_layers(model) else ONNX_OPSET


@symbolic_helper.parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
def _deform_conv2d_symbolic(
    g, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
    offset_groups, use_mask,
):  # fmt: skip
    """``torchvision::deform_conv2d`` as ONNX DeformConv. Both take offsets (N, 2 G kh kw, Ho,
    Wo) as (dy, dx) per kernel position and a mask (N, G kh kw, Ho, Wo); ONNX's mask is optional
    (all ones), torchvision's is a zero tensor when ``use_mask`` is false."""
    inputs = [input, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op(
        "DeformConv",
        *inputs,
        strides_i=[stride_h, stride_w],
        pads_i=[pad_h, pad_w, pad_h, pad_w],
        dilations_i=[dil_h, dil_w],
        group_i=groups,
        offset_group_i=offset_groups,
    )


def export_onnx(model, image: torch.Tensor, path) -> int:
    """Export ``model`` (a DWFCOS) traced on ``image`` to the ONNX file ``path``.

    The graph has one input ``image`` (3, height, width), any height and width, and the outputs
    ``boxes`` (K, 4), ``scores`` (K,), ``classes`` (K,) of :func:`~.adapter.detections`.

    Args:
        image: (3, H, W) float32 sample input, on the CPU.

    Returns:
        The opset exported (:func:`onnx_opset`).
    """
    opset = onnx_opset(model)
    torch.onnx.register_custom_op_symbolic(
        "torchvision::deform_conv2d", _deform_conv2d_symbolic, DEFORM_CONV_OPSET
    )
    torch.onnx.export(
        tracing_adapter(model, image),
        (image,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["image"],
        output_names=["boxes", "scores", "classes"],
        dynamic_axes={
            "image": {1: "height", 2: "width"},
            "boxes": {0: "detections"},
            "scores": {0: "detections"},
            "classes": {0: "detections"},
        },
    )
    return opset


def check_onnx_runtime(model):
    """Raise an :class:`ExportError` if ONNX export of ``model`` cannot be run here: ``onnx`` or
    ``onnxruntime`` missing, or DCNv2 layers (ONNX DeformConv) with an ONNX Runtime older than
    1.25, which has no DeformConv kernel (the message names the layers)."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime
    except ImportError as e:
        raise ExportError(
            f"--format onnx needs the packages onnx and onnxruntime ({e}): pip install -e .[export]"
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
    """An exported ONNX model in an ONNX Runtime session, called like the TorchScript one:
    ``detector(image)`` with a (3, H, W) float32 tensor gives ``(boxes, scores, classes)``
    tensors (on the CPU).

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

    def __call__(self, image: torch.Tensor):
        boxes, scores, classes = self.session.run(None, {"image": image.detach().cpu().numpy()})
        return torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
