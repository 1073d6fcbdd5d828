"""Precisions of the speed benchmark: float32, and float16 or bfloat16 under autocast as
detectron2's ``AMPTrainer`` trains (``SOLVER.AMP.ENABLED``): autocast around the forward, the
loss scaled by a ``GradScaler`` for float16."""

import warnings

import torch

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_refusal(device_type, dtype):
    """Why ``torch.autocast(device_type, dtype=dtype)`` would not compute in ``dtype``, or None
    where it does. torch disables autocast with only a warning for a dtype the device lacks (e.g.
    float64 on CPU); that warning is the refusal here, not a silent float32 run."""
    if not torch.amp.is_autocast_available(device_type):
        return f"torch has no autocast for device type {device_type!r}"
    if device_type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    if device_type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name()} does not support bfloat16"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.autocast(device_type, dtype=dtype):
            enabled = torch.is_autocast_enabled(device_type)
            actual = torch.get_autocast_dtype(device_type)
    if not enabled or actual != dtype:
        reasons = "; ".join(str(w.message).replace("\n", " ") for w in caught)
        return f"torch's autocast does not run in {dtype} there ({reasons or 'disabled'})"
    return None


def check_precision(precision, device):
    """Raise ``ValueError`` naming ``precision`` and ``device`` where ``precision`` (a key of
    :data:`PRECISIONS`) cannot run on ``device`` (e.g. "cpu", "cuda", "cuda:1")."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose from {list(PRECISIONS)}")
    if precision == "fp32":
        return
    reason = autocast_refusal(torch.device(device).type, PRECISIONS[precision])
    if reason is not None:
        raise ValueError(f"Precision {precision!r} is not supported on device {device!r}: {reason}")


def autocast(precision, device):
    """The context of a forward in ``precision``: autocast to its dtype, off for "fp32"."""
    return torch.autocast(
        torch.device(device).type, dtype=PRECISIONS[precision], enabled=precision != "fp32"
    )


def grad_scaler(precision, device):
    """AMPTrainer's loss scaling for float16 (its gradients underflow without it); a disabled
    scaler, which passes the loss and the optimizer step through, for fp32 and bf16."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def _float32(x):
    if isinstance(x, (list, tuple)):
        return type(x)(_float32(y) for y in x)
    return x.float() if torch.is_tensor(x) and x.is_floating_point() else x


def float32_losses(model, device):
    """Make detectron2's ``FCOS`` ``model`` compute its losses in float32 with autocast off, as
    DW-FCOS computes its own. Without this it cannot train under autocast: its GIoU loss (fvcore's
    ``giou_loss``) writes float32 intersections (the targets are float32) into a tensor of the
    half-precision predicted boxes, which ``index_put`` refuses. Returns ``model``."""
    losses = model.losses

    def losses_in_float32(*args):
        with torch.autocast(torch.device(device).type, enabled=False):
            return losses(*_float32(args))

    model.losses = losses_in_float32
    return model
