"""DW box refinement (docs/DW_SPEC.md, "Box refinement"): re-read each side of a predicted box
near that side, at learned offsets. Shapes: ``N`` images, ``K`` channels, ``H`` x ``W`` cells.
Distances and corners are in pixels, offsets in feature cells.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..layers.deform_conv import deform_conv2d_full_precision, split_nan_offsets
from ..layers.graph_capture import capturing_graph

__all__ = ["read_at_offsets", "refine_boxes"]


def read_at_offsets(maps: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Channel ``k`` of output cell ``(i, j)`` is channel ``k`` of ``maps`` read bilinearly at
    ``(i + offsets[:, 2k], j + offsets[:, 2k + 1])``, zeros outside the map.

    The read of ``torchvision.ops.deform_conv2d(maps, offsets, ones(K, 1, 1, 1))`` with
    ``F.grid_sample``, which ONNX (GridSample, opset 16) and TorchScript run without
    torchvision's ops; the two agree to rounding. Offsets as
    :func:`~.deform_conv.deform_conv2d_full_precision` handles them: a cell with a NaN offset is
    NaN, with no gradient; reads outside the map, infinite ones included, are 0. Branch-free.

    Args:
        maps: (N, K, H, W) values; float16/bfloat16 are read in float32, with autocast off.
        offsets: (N, 2K, H, W) read offsets, cells, (dy, dx) per channel.

    Returns:
        (N, K, H, W), in ``maps``' dtype promoted to at least float32; differentiable.
    """
    n, k, height, width = maps.shape
    dtype = torch.promote_types(maps.dtype, torch.float32)
    offsets, nan_cells = split_nan_offsets(offsets)
    with torch.autocast(maps.device.type, enabled=False):
        dy, dx = offsets.to(dtype).reshape(n, k, 2, height, width).unbind(2)
        rows = torch.arange(height, dtype=dtype, device=maps.device).view(1, 1, height, 1)
        cols = torch.arange(width, dtype=dtype, device=maps.device).view(1, 1, 1, width)
        y = (rows + dy).clamp(-2, height + 1)
        x = (cols + dx).clamp(-2, width + 1)
        # align_corners=False: cell c is at (2c + 1) / size - 1 (True breaks maps of size 1).
        grid = torch.stack(((2 * x + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)
        out = F.grid_sample(
            maps.to(dtype).reshape(n * k, 1, height, width),
            grid.reshape(n * k, height, width, 2),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
    return out.view(n, k, height, width).masked_fill(nan_cells, float("nan"))


def refine_boxes(
    box_ltrb_map: torch.Tensor,
    offsets: torch.Tensor,
    stride: int,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Refined (left, top, right, bottom) distances of one feature level: each side of the box
    map ``(px - l, py - t, px + r, py + b)`` re-read near that side, moved by the learned offsets
    (the table of docs/DW_SPEC.md). Eager mode reads with the release's deformable 1x1
    convolution; a traced graph with :func:`read_at_offsets`, which exports to ONNX.

    Args:
        box_ltrb_map: (N, 4, H, W) predicted distances, pixels, >= 0.
        offsets: (N, 8, H, W) learned offsets, cells, (dy, dx) per side x1, y1, x2, y2.
        stride: the level's stride, pixels.
        valid: optional (N, 1, H, W) bool, each image's own part of a padded batch: the box
            map reads as zero outside it.

    Returns:
        (N, 4, H, W) refined distances, pixels, clipped below at 0; differentiable.
    """
    _, _, height, width = box_ltrb_map.shape
    # Anchor x (1, 1, W) and y (1, H, 1): ((j + 0.5) * stride, (i + 0.5) * stride), pixels.
    like = {"dtype": box_ltrb_map.dtype, "device": box_ltrb_map.device}
    px = ((torch.arange(width, **like) + 0.5) * stride).view(1, 1, width)
    py = ((torch.arange(height, **like) + 0.5) * stride).view(1, height, 1)
    left, top, right, bottom = box_ltrb_map.unbind(1)  # each (N, H, W)
    corners = torch.stack((px - left, py - top, px + right, py + bottom), dim=1)  # (N, 4, H, W)
    if valid is not None:
        corners = torch.where(valid, corners, 0)

    d_left, d_top, d_right, d_bottom = (box_ltrb_map / stride).unbind(1)
    o = offsets.unbind(1)
    sample_offsets = torch.stack(
        (o[0], o[1] - d_left, o[2] - d_top, o[3], o[4], o[5] + d_right, o[6] + d_bottom, o[7]),
        dim=1,
    )  # (N, 8, H, W): (dy, dx) of channels x1, y1, x2, y2
    # Eager mode keeps torchvision's kernel (the release's form bit for bit).
    if capturing_graph():
        sampled = read_at_offsets(corners, sample_offsets)
    else:
        # Weight (4, 1, 1, 1): each output channel copies its own channel.
        weight = corners.new_ones(4, 1, 1, 1)
        sampled = deform_conv2d_full_precision(corners, sample_offsets, weight)
    # (N, 4, H, W), XYXY pixels
    x1, y1, x2, y2 = sampled.unbind(1)
    refined = torch.stack((px - x1, py - y1, x2 - px, y2 - py), dim=1)
    return refined.clamp(min=0)
