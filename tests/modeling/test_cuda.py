"""The same numbers on CUDA as on CPU, and AMP training on CUDA (skipped without a GPU).

CUDA autocast of the model is tested with the CPU one in test_robustness.py and
test_model_e2e.py.

CI has no GPU; these run where one is lent (docs/TESTING.md, "On a GPU").
"""

import os
import subprocess
import sys
import warnings

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from dw_reference import make_case
from helpers import (
    LOSS_NAMES,
    NEEDS_CUDA,
    YAMLS,
    float64_images,
    largest_relative_difference,
    losses_and_grads,
    perturbed,
    read_metrics,
    run_train_net,
    small_cfg,
    thin_model,
    train_net_args,
    two_box_batch,
)
from helpers import fcos_dw_losses as dw_losses

from dual_weighting.layers.deform_conv import ModulatedDeformConv

pytestmark = NEEDS_CUDA
CUDA = torch.device("cuda")


def to_cuda(x):
    if isinstance(x, list):
        return [t.to(CUDA) for t in x]
    return x.to(CUDA)


@pytest.mark.parametrize("seed", [0, 1])
def test_losses_and_gradients_on_cuda_equal_cpu(seed):
    case = make_case(seed)  # float64, with saturated logits and edge-case boxes
    cpu_values, cpu_grads = losses_and_grads(dw_losses, *case)
    cuda_values, cuda_grads = losses_and_grads(dw_losses, *map(to_cuda, case))
    for name, a, b in zip(LOSS_NAMES, cpu_values, cuda_values):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-9, atol=1e-12, msg=name)
        for ga, gb in zip(cpu_grads[name], cuda_grads[name]):
            torch.testing.assert_close(gb.cpu(), ga, rtol=1e-9, atol=1e-12, msg=name)


def test_deformable_conv_on_cuda_equals_cpu():
    torch.manual_seed(0)
    conv = ModulatedDeformConv(8, 6, 3, padding=1, deformable_groups=2).double()
    x = torch.randn(2, 8, 11, 13, dtype=torch.float64)
    offset = 3 * torch.randn(2, 2 * 2 * 9, 11, 13, dtype=torch.float64)  # reaches outside
    mask = torch.rand(2, 2 * 9, 11, 13, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (x, offset, mask)]
    cpu_out = conv(*inputs)
    cpu_grads = torch.autograd.grad(cpu_out.square().sum(), [*inputs, conv.weight])
    conv_cuda = conv.to(CUDA)
    cuda_inputs = [t.detach().to(CUDA).requires_grad_() for t in inputs]
    cuda_out = conv_cuda(*cuda_inputs)
    cuda_grads = torch.autograd.grad(cuda_out.square().sum(), [*cuda_inputs, conv_cuda.weight])
    torch.testing.assert_close(cuda_out.cpu(), cpu_out, rtol=1e-9, atol=1e-9)
    for a, b in zip(cpu_grads, cuda_grads):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("box_refine", [False, True])
def test_model_losses_on_cuda_equal_cpu(box_refine):
    torch.manual_seed(0)
    opts = ["MODEL.DW.BOX_REFINE", str(box_refine), "MODEL.DW.DCN_ON_LAST_CONV", "True"]
    cpu_model = build_model(small_cfg(*opts)).double()
    cuda_model = build_model(small_cfg(*opts, "MODEL.DEVICE", "cuda")).double()
    cuda_model.load_state_dict(cpu_model.state_dict())
    batch = two_box_batch()
    batch[0]["image"] = batch[0]["image"].double()
    with EventStorage():
        cpu_losses = cpu_model.train()(batch)
        cuda_losses = cuda_model.train()(batch)
    for name, value in cpu_losses.items():
        torch.testing.assert_close(cuda_losses[name].cpu(), value, rtol=1e-6, atol=1e-9)


def test_detections_on_cuda_equal_cpu():
    """Threshold 0, untrained: every candidate reaches NMS. With box refine, whose boxes of an
    untrained model are nearly alike, float32 rounding flipped a few NMS decisions (36 against
    40 detections on an H200); its CUDA path is compared in float64 by the losses above."""
    torch.manual_seed(0)
    cpu_model = build_model(small_cfg("MODEL.DW.DCN_ON_LAST_CONV", "True"))
    cuda_model = build_model(small_cfg("MODEL.DW.DCN_ON_LAST_CONV", "True", "MODEL.DEVICE", "cuda"))
    cuda_model.load_state_dict(cpu_model.state_dict())
    batch = two_box_batch()

    # Inference in float32 (detectron2's Boxes are float32), without TF32 convolutions on CUDA,
    # whose 10-bit mantissa would change which of the near-equal untrained scores survive.
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        image = [{"image": batch[0]["image"]}]
        for model in (cpu_model, cuda_model):
            model.eval().test_score_thresh = 0.0
        cpu_det = cpu_model(image)[0]["instances"]
        cuda_det = cuda_model(image)[0]["instances"].to("cpu")
    assert len(cpu_det) == len(cuda_det) > 0
    torch.testing.assert_close(cuda_det.scores, cpu_det.scores, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        cuda_det.pred_boxes.tensor, cpu_det.pred_boxes.tensor, rtol=1e-4, atol=1e-3
    )


@pytest.mark.slow
def test_train_net_with_amp_on_cuda(shapes_dataset, tmp_path):
    """detectron2's AMPTrainer (SOLVER.AMP.ENABLED, CUDA only) trains and evaluates DW-FCOS."""
    out = tmp_path / "out"
    opts = ("MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True")
    run_train_net(train_net_args(shapes_dataset, out, *opts, max_iter=6))
    events = read_metrics(out)
    losses = [e["total_loss"] for e in events if "total_loss" in e]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert any("bbox/AP" in e for e in events)
    assert (out / "model_final.pth").is_file()


# Our wrapper, then torchvision's own CUDA kernel, on NaN offsets (whose CPU kernel segfaults on
# them). In a subprocess: a faulting CUDA kernel would spoil this process's CUDA context.
CUDA_NAN_OFFSETS = """
import torch
from torchvision.ops import deform_conv2d
from dual_weighting.layers.deform_conv import deform_conv2d_full_precision
x = torch.rand(1, 8, 16, 16, device="cuda")
weight = torch.ones(8, 8, 3, 3, device="cuda")
offset = torch.zeros(1, 18, 16, 16, device="cuda")
offset[0, 3, 4, 5] = float("nan")
out = deform_conv2d_full_precision(x, offset, weight, padding=1)
print("wrapped", out[0, :, 4, 5].isnan().all().item(), out.isnan().sum().item(), flush=True)
raw = deform_conv2d(x, torch.full_like(offset, float("nan")), weight, padding=1)
torch.cuda.synchronize()
print("raw", raw.isnan().sum().item(), "NaN of", raw.numel(), flush=True)
"""


def test_nan_offsets_on_cuda_give_nan_cells():
    proc = subprocess.run(
        [sys.executable, "-c", CUDA_NAN_OFFSETS],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        timeout=300,
    )
    lines = proc.stdout.splitlines()
    assert lines and lines[0] == "wrapped True 8", proc.stderr[-3000:]
    # Whether torchvision's CUDA kernel has the CPU kernel's fault: a fact for ROBUSTNESS, reported.
    raw = lines[1] if len(lines) > 1 else proc.stderr.strip()[-300:]
    message = f"torchvision's CUDA deform_conv2d on all-NaN offsets: exit {proc.returncode}, {raw}"
    warnings.warn(message, stacklevel=1)


def test_mixed_size_batch_on_cuda_is_computed_as_one_image_at_a_time():
    path = next(p for p in YAMLS if "DCN" in p.name)  # DCN and refinement: every masked layer
    model = perturbed(thin_model(path)).to(CUDA)
    images = [x.to(CUDA) for x in float64_images()]
    assert largest_relative_difference(model, images) < 1e-10
    model.test_mask_padding = False
    assert largest_relative_difference(model, images) > 1e-3
