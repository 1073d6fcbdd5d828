"""refine_boxes against a hand-written bilinear sampler and hand-worked maps."""

from __future__ import annotations

import math

import pytest
import torch

from dual_weighting import refine_boxes


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


def test_gradcheck():
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
