"""DW box refinement: re-read each side of a predicted box near that side, at learned offsets.

See docs/DW_SPEC.md, "Box refinement". Shapes: ``N`` images, a feature level of ``H`` rows
and ``W`` columns. Distances (left, top, right, bottom) and box corners are in pixels; offsets are
in feature cells.
"""

from __future__ import annotations

import torch

from .deform_conv import deform_conv2d_full_precision

__all__ = ["refine_boxes"]


def _anchor_grid(height: int, width: int, stride: int, like: torch.Tensor):
    """Anchor x (1, 1, W) and y (1, H, 1): ``((j + 0.5) * stride, (i + 0.5) * stride)``, pixels."""
    cols = (torch.arange(width, dtype=like.dtype, device=like.device) + 0.5) * stride
    rows = (torch.arange(height, dtype=like.dtype, device=like.device) + 0.5) * stride
    return cols.view(1, 1, width), rows.view(1, height, 1)


def refine_boxes(box_ltrb_map: torch.Tensor, offsets: torch.Tensor, stride: int) -> torch.Tensor:
    """Refined (left, top, right, bottom) distances of one feature level.

    The box ``(x1, y1, x2, y2) = (px - l, py - t, px + r, py + b)`` at every anchor point makes a
    4-channel map. Channel ``k`` of the output cell ``(i, j)`` is channel ``k`` of that map read
    bilinearly (zeros outside the map) at ``(i + dy_k, j + dx_k)``, in cells, where
    ``d = ltrb / stride``:

    ====  ==============  ==============
    side  dy              dx
    ====  ==============  ==============
    x1    o0              o1 - d_l
    y1    o2 - d_t        o3
    x2    o4              o5 + d_r
    y2    o6 + d_b        o7
    ====  ==============  ==============

    so each side is re-read near the position of that side, moved by the learned offsets ``o``.
    A deformable 1x1 convolution with an all-ones weight and one group per channel is exactly
    this sampling. The refined box is turned back into distances from the same anchor point.

    Args:
        box_ltrb_map: (N, 4, H, W) predicted distances, pixels, >= 0.
        offsets: (N, 8, H, W) learned offsets, cells, (dy, dx) per side in the order above.
        stride: the level's stride, pixels.

    Returns:
        (N, 4, H, W) refined distances, pixels, clipped below at 0. Differentiable with respect
        to both inputs.
    """
    _, _, height, width = box_ltrb_map.shape
    px, py = _anchor_grid(height, width, stride, box_ltrb_map)
    left, top, right, bottom = box_ltrb_map.unbind(1)  # each (N, H, W)
    corners = torch.stack((px - left, py - top, px + right, py + bottom), dim=1)  # (N, 4, H, W)

    d_left, d_top, d_right, d_bottom = (box_ltrb_map / stride).unbind(1)
    o = offsets.unbind(1)
    sample_offsets = torch.stack(
        (
            o[0],
            o[1] - d_left,
            o[2] - d_top,
            o[3],
            o[4],
            o[5] + d_right,
            o[6] + d_bottom,
            o[7],
        ),
        dim=1,
    )  # (N, 8, H, W): (dy, dx) of channels x1, y1, x2, y2
    # Weight (out 4, in 4 / groups 4 = 1, 1, 1): each output channel copies its own input channel.
    weight = corners.new_ones(4, 1, 1, 1)
    # (N, 4, H, W), XYXY pixels
    sampled = deform_conv2d_full_precision(corners, sample_offsets, weight)

    x1, y1, x2, y2 = sampled.unbind(1)
    refined = torch.stack((px - x1, py - y1, x2 - px, y2 - py), dim=1)
    return refined.clamp(min=0)
