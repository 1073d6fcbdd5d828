"""DCNv2 (modulated deformable convolution) on ``torchvision.ops.deform_conv2d``: a drop-in for
detectron2's :class:`detectron2.layers.ModulatedDeformConv` without its compiled ``_C``, with
the same arguments, parameter names and ``forward(x, offset, mask)``, so checkpoints move freely.

Layout (detectron2's, mmcv's and torchvision's), G deformable groups, K = kh * kw positions in
row-major order: ``offset`` (N, G * 2 * K, Ho, Wo), channel ``g * 2K + 2k`` the dy and
``g * 2K + 2k + 1`` the dx of position k of group g, input pixels; ``mask`` (N, G * K, Ho, Wo),
channel ``g * K + k``. Samples are bilinear, zero outside the input.
"""

import torch
from torch import nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

__all__ = ["ModulatedDeformConv", "ModulatedDeformConvPack", "deform_conv2d_full_precision"]

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def deform_conv2d_full_precision(input, offset, weight, bias=None, mask=None, **kwargs):
    """``torchvision.ops.deform_conv2d`` (``kwargs``: stride, padding, dilation) with autocast
    off and half precision in float32 (its CPU kernel has none), and NaN offsets kept away from
    the kernel, whose CPU version turns them into out-of-bounds indices (a segmentation fault,
    torchvision 0.29): they go in as 0 and their output cells come out NaN
    (:func:`split_nan_offsets`). Branch-free; finite offsets give the plain op's output.
    """

    def full(t):
        return t.float() if t is not None and t.dtype in _HALF_DTYPES else t

    offset, nan_cells = split_nan_offsets(offset)
    with torch.autocast(input.device.type, enabled=False):
        out = deform_conv2d(
            full(input), full(offset), full(weight), full(bias), mask=full(mask), **kwargs
        )
    # In place: deform_conv2d's backward does not read its output.
    return out.masked_fill_(nan_cells, float("nan"))


def split_nan_offsets(offset):
    """``(offset without NaN, nan_cells)`` of (N, 2K, Ho, Wo) ``offset``: every NaN replaced by
    0, and the (N, 1, Ho, Wo) bool cells where any offset is NaN, which the caller sets to NaN
    after sampling so that the NaN reaches its finite checks. Branch-free."""
    nan_offset = offset.isnan()
    return offset.masked_fill(nan_offset, 0), nan_offset.any(dim=1, keepdim=True)


class ModulatedDeformConv(nn.Module):
    """Modulated deformable convolution (DCNv2, :paper:`deformconv2`).

    Args:
        in_channels (int): input channels Ci.
        out_channels (int): output channels Co.
        kernel_size, stride, padding, dilation, groups, bias: as in :class:`torch.nn.Conv2d`.
        deformable_groups (int): G, the number of channel groups that share one offset field.
        norm (nn.Module, optional): applied after the convolution.
        activation (callable, optional): applied after ``norm``.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        deformable_groups=1,
        bias=True,
        norm=None,
        activation=None,
    ):
        super().__init__()
        if in_channels % groups != 0 or out_channels % groups != 0:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                f"divisible by groups ({groups})."
            )
        if in_channels % deformable_groups != 0:
            raise ValueError(
                f"in_channels ({in_channels}) must be divisible by deformable_groups "
                f"({deformable_groups})."
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.with_bias = bias
        self.norm = norm
        self.activation = activation

        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x, offset, mask):
        """(N, Co, Ho, Wo) output of (N, Ci, H, W) ``x``, after ``norm`` and ``activation``;
        ``offset`` and ``mask`` as in the module docstring."""
        # torchvision infers G from the offset's channels; check it against the constructor.
        num_positions = self.kernel_size[0] * self.kernel_size[1]
        if offset.shape[1] != 2 * self.deformable_groups * num_positions:
            raise ValueError(
                f"offset has {offset.shape[1]} channels, expected "
                f"2 * deformable_groups * kh * kw = {2 * self.deformable_groups * num_positions}."
            )
        x = deform_conv2d_full_precision(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def extra_repr(self):
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, groups={self.groups}, "
            f"deformable_groups={self.deformable_groups}, bias={self.with_bias}"
        )


class ModulatedDeformConvPack(ModulatedDeformConv):
    """DCNv2 conv that predicts its own offsets and mask (through a sigmoid) with a conv,
    ``conv_offset``, split as detectron2's and MMCV's; it starts at zero (a plain conv)."""

    def __init__(self, in_channels, out_channels, kernel_size, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)
        k = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset = nn.Conv2d(
            in_channels,
            3 * self.deformable_groups * k,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x):
        offset_x, offset_y, mask = torch.chunk(self.conv_offset(x), 3, dim=1)
        return super().forward(x, torch.cat((offset_x, offset_y), dim=1), mask.sigmoid())
