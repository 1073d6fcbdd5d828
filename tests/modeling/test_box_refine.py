"""refine_boxes against a hand-written bilinear sampler and hand-worked maps; its traced
(export) read against the eager one."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import deform_conv2d

from dual_weighting import refine_boxes
from dual_weighting.layers.deform_conv import deform_conv2d_full_precision
from dual_weighting.modeling.box_refine import read_at_offsets


def bilinear(channel, y, x):
    """Bilinear read of an (H, W) map at row ``y``, column ``x`` (cells); zeros outside.

    ``y`` and ``x`` may be scalar tensors: the result is then differentiable in them and in
    ``channel``.
    """
    height, width = channel.shape
    y0, x0 = (math.floor(v.item() if torch.is_tensor(v) else v) for v in (y, x))
    fy, fx = y - y0, x - x0
    value = channel.new_zeros(())
    for row, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for col, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            if 0 <= row < height and 0 <= col < width:
                value = value + wy * wx * channel[row, col]
    return value


def reference_refine(ltrb, offsets, stride):
    """The spec's table, read literally, one output cell and one side at a time."""
    num_images, _, height, width = ltrb.shape
    out = []
    for n in range(num_images):
        px = [[(j + 0.5) * stride for j in range(width)] for _ in range(height)]
        py = [[(i + 0.5) * stride for _ in range(width)] for i in range(height)]
        px, py = torch.tensor(px, dtype=ltrb.dtype), torch.tensor(py, dtype=ltrb.dtype)
        lft, top, rgt, bot = ltrb[n]
        corners = (px - lft, py - top, px + rgt, py + bot)
        o = offsets[n]
        image = []
        for i in range(height):
            for j in range(width):
                d = ltrb[n, :, i, j] / stride
                x1 = bilinear(corners[0], i + o[0, i, j], j + o[1, i, j] - d[0])
                y1 = bilinear(corners[1], i + o[2, i, j] - d[1], j + o[3, i, j])
                x2 = bilinear(corners[2], i + o[4, i, j], j + o[5, i, j] + d[2])
                y2 = bilinear(corners[3], i + o[6, i, j] + d[3], j + o[7, i, j])
                x, y = (j + 0.5) * stride, (i + 0.5) * stride
                sides = torch.stack((x - x1, y - y1, x2 - x, y2 - y))
                image.append(torch.clamp(sides, min=0))
        out.append(torch.stack(image, 1).view(4, height, width))
    return torch.stack(out)


def random_inputs(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    stride = 8
    ltrb = (torch.rand(2, 4, 4, 5, generator=g, dtype=dtype) * 3 * stride).requires_grad_()
    offsets = (torch.randn(2, 8, 4, 5, generator=g, dtype=dtype) * 1.5).requires_grad_()
    return ltrb, offsets, stride


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_hand_written_sampler_values_and_gradients(seed):
    ltrb, offsets, stride = random_inputs(seed)
    actual = refine_boxes(ltrb, offsets, stride)
    expected = reference_refine(ltrb, offsets, stride)
    assert actual.shape == (2, 4, 4, 5)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)
    # Some reads fall outside the map (zeros there), some refined sides are clipped at 0.
    assert (expected == 0).any()

    cotangent = torch.randn(actual.shape, dtype=actual.dtype, generator=torch.Generator())
    grads = torch.autograd.grad(actual, (ltrb, offsets), cotangent)
    expected_grads = torch.autograd.grad(expected, (ltrb, offsets), cotangent)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-9)


def test_refine_boxes_passes_gradcheck_in_float64():
    ltrb, offsets, stride = random_inputs(2)
    assert torch.autograd.gradcheck(
        lambda a, b: refine_boxes(a, b, stride), (ltrb, offsets), eps=1e-6, atol=1e-6
    )


def test_float32_gradients_finite_and_nonzero():
    ltrb, offsets, stride = random_inputs(3, torch.float32)
    out = refine_boxes(ltrb, offsets, stride)
    assert out.dtype == torch.float32
    grad_ltrb, grad_offsets = torch.autograd.grad(out.sum(), (ltrb, offsets))
    for grad in (grad_ltrb, grad_offsets):
        assert torch.isfinite(grad).all() and (grad != 0).any()


def test_zero_offsets_two_cells():
    # Stride 8, every side 16 px = 2 cells away: x1 of cell (i, j) is read at cell (i, j - 2),
    # whose box has x1 = (j - 2 + 0.5) * 8 - 16 = px - 32, so the refined left distance is 32.
    # Reads at a column <= -1 or >= W are 0 (outside the map): then left = px - 0 = px, and
    # right = max(0 - px, 0) = 0. The same holds for rows.
    size, stride = 6, 8
    ltrb = torch.full((1, 4, size, size), 16.0, dtype=torch.float64)
    out = refine_boxes(ltrb, torch.zeros(1, 8, size, size, dtype=torch.float64), stride)
    centers = [(k + 0.5) * stride for k in range(size)]
    for i in range(size):
        for j in range(size):
            left = 32.0 if j >= 2 else centers[j]
            top = 32.0 if i >= 2 else centers[i]
            right = 32.0 if j <= size - 3 else 0.0
            bottom = 32.0 if i <= size - 3 else 0.0
            assert out[0, :, i, j].tolist() == [left, top, right, bottom], (i, j)


def test_zero_offsets_half_cell():
    # Every side 4 px = half a cell away: x1 is read halfway between cells j - 1 and j, i.e. the
    # mean of px - 8 - 4 and px - 4, which is px - 8: left 8. In column 0 the other half is
    # outside the map (zero): x1 = (4 - 4) / 2 = 0, so left = px = 4. Right: halfway between j
    # and j + 1 -> px + 8, right 8; in the last column x2 = (px + 4) / 2 < px -> right 0.
    size, stride = 4, 8
    ltrb = torch.full((1, 4, size, size), 4.0, dtype=torch.float64)
    out = refine_boxes(ltrb, torch.zeros(1, 8, size, size, dtype=torch.float64), stride)
    expected_near = [4.0, 8.0, 8.0, 8.0]  # left (by column) and top (by row)
    expected_far = [8.0, 8.0, 8.0, 0.0]  # right (by column) and bottom (by row)
    for i in range(size):
        for j in range(size):
            expected = [expected_near[j], expected_near[i], expected_far[j], expected_far[i]]
            torch.testing.assert_close(out[0, :, i, j].tolist(), expected, rtol=0, atol=1e-12)


def test_offsets_move_the_read():
    # A learned offset o0 = +1 moves the x1 read one row down. Left distances differ by row
    # (8 + 3 i px), so the read lands on a different box than with o0 = 0.
    size, stride = 5, 8
    ltrb = torch.full((1, 4, size, size), 8.0, dtype=torch.float64)
    ltrb[0, 0] += 3.0 * torch.arange(size, dtype=torch.float64)[:, None]
    offsets = torch.zeros(1, 8, size, size, dtype=torch.float64)
    offsets[0, 0] = 1.0
    # d_l = (8 + 3 i) / 8 is fractional in most rows: there, compare with the hand sampler.
    out = refine_boxes(ltrb, offsets, stride)
    torch.testing.assert_close(out, reference_refine(ltrb, offsets, stride), rtol=0, atol=1e-10)
    # Row 0, column 2: d_l = 1, so x1 is read at cell (1, 1): x1 = 12 - 11 = 1, left = 20 - 1.
    assert out[0, 0, 0, 2].item() == pytest.approx(19.0)


# The traced form of the read (grid_sample, for export) against the eager one (torchvision's
# deform_conv2d, the release's form), on maps of sizes that include a single row and a single
# cell; offsets of up to several cells read outside the map too.
READ_SIZES = [(6, 7), (1, 5), (1, 1), (13, 17)]


def read_inputs(size, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = (torch.randn(2, 4, *size, generator=g, dtype=dtype) * 50).requires_grad_()
    offsets = (torch.randn(2, 8, *size, generator=g, dtype=dtype) * 2).requires_grad_()
    return maps, offsets


def deform_read(maps, offsets):
    return deform_conv2d(maps, offsets, maps.new_ones(4, 1, 1, 1))


@pytest.mark.parametrize("size", READ_SIZES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_grid_sample_read_equals_deform_conv_values_and_gradients(size, dtype):
    maps, offsets = read_inputs(size, dtype)
    actual, expected = read_at_offsets(maps, offsets), deform_read(maps, offsets)
    # Reads outside the map are 0: some outputs are exactly 0 in both.
    assert (expected == 0).any() and torch.equal(actual == 0, expected == 0)
    cotangent = torch.randn(actual.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(actual, (maps, offsets), cotangent)
    expected_grads = torch.autograd.grad(expected, (maps, offsets), cotangent)
    if dtype == torch.float64:
        tol = {"rtol": 1e-12, "atol": 1e-10}
    else:
        # Maps of std 50 change by ~70 per cell: grid_sample's coordinate normalisation moves a
        # read by a few float32 ulps of the position, i.e. ~1e-6 * 70 in value.
        tol = {"rtol": 1e-5, "atol": 1e-3}
    torch.testing.assert_close(actual, expected, **tol)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, **tol)


def test_grid_sample_read_no_less_exact_than_deform_conv_in_float32():
    # Against the float64 result, the float32 reads of both forms err alike (input rounding
    # and kernel rounding), so export changes nothing a float32 model would notice.
    maps, offsets = read_inputs((13, 17), torch.float64, seed=3)
    truth = deform_read(maps, offsets).detach()
    maps32, offsets32 = maps.detach().float(), offsets.detach().float()
    err_grid = (read_at_offsets(maps32, offsets32).double() - truth).abs()
    err_deform = (deform_read(maps32, offsets32).double() - truth).abs()
    assert err_grid.mean() < 2 * err_deform.mean()
    assert err_grid.max() < 4 * err_deform.max()


def test_grid_sample_read_of_non_finite_offsets_as_deform_conv_full_precision():
    # A NaN offset makes its output cell NaN (all channels) and nothing else changes; an
    # infinite one reads zeros, as the eager form does.
    maps, offsets = read_inputs((6, 7), torch.float64)
    offsets = offsets.detach().clone()
    offsets[1, 1, 2, 3] = float("nan")
    offsets[1, 2, 4, 5] = float("inf")
    offsets[0, 5, 0, 0] = -float("inf")
    offsets.requires_grad_()
    actual = read_at_offsets(maps, offsets)
    expected = deform_conv2d_full_precision(maps, offsets, maps.new_ones(4, 1, 1, 1))
    assert actual[1, :, 2, 3].isnan().all() and actual.isnan().sum() == 4
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-10, equal_nan=True)
    actual.nan_to_num().sum().backward()
    assert torch.isfinite(maps.grad).all() and torch.isfinite(offsets.grad).all()
    assert offsets.grad[1, :, 2, 3].eq(0).all(), "no gradient through the NaN cell"


def test_traced_refine_uses_grid_sample_at_any_size():
    # torch.jit.trace (and so the ONNX export) records the grid_sample form; the trace made at
    # one size runs at others and equals the eager refine to rounding.
    ltrb, offsets, stride = random_inputs(4, torch.float32)
    with torch.no_grad():
        traced = torch.jit.trace(lambda a, b: refine_boxes(a, b, stride), (ltrb, offsets))
    graph = str(traced.graph)
    assert "grid_sampler" in graph and "deform_conv2d" not in graph
    for size in [(4, 5), (7, 3), (1, 1)]:
        g = torch.Generator().manual_seed(sum(size))
        a = torch.rand(1, 4, *size, generator=g) * 3 * stride
        b = torch.randn(1, 8, *size, generator=g) * 1.5
        torch.testing.assert_close(traced(a, b), refine_boxes(a, b, stride), rtol=1e-5, atol=1e-4)
