"""DCNv2 (modulated deformable convolution) on top of ``torchvision.ops.deform_conv2d``.

detectron2's :class:`detectron2.layers.ModulatedDeformConv` needs detectron2's compiled ``_C``
extension, which pip/source-only installations lack. This layer is a drop-in replacement: the
same constructor arguments, the same parameter names (``weight``, ``bias``) and the same
``forward(x, offset, mask)``, so checkpoints trained with either layer load into the other.

Offset and mask layout (identical in detectron2's/mmcv's CUDA kernel and in torchvision, so the
tensors are passed through unchanged), with G = deformable groups, K = kh * kw kernel positions
in row-major order:

- ``offset``: (N, G * 2 * K, Ho, Wo); channel ``g * 2K + 2k`` is the vertical (dy) and
  ``g * 2K + 2k + 1`` the horizontal (dx) displacement of kernel position k of group g, in input
  pixels. (detectron2's ``DeformBottleneckBlock`` names the two halves of the first 2GK
  channels of ``conv2_offset`` "offset_x" and "offset_y"; the names do not reflect the layout.)
- ``mask``: (N, G * K, Ho, Wo); channel ``g * K + k`` scales the sample of position k, group g.

Samples are bilinear; pixels outside the input count as zero.
"""

import torch
from torch import nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

__all__ = ["ModulatedDeformConv", "ModulatedDeformConvPack", "deform_conv2d_full_precision"]

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def deform_conv2d_full_precision(input, offset, weight, bias=None, mask=None, **kwargs):
    """``torchvision.ops.deform_conv2d`` with autocast off, half-precision inputs in float32, and
    NaN offsets kept away from the kernel.

    torchvision's own autocast rule does this on CUDA only, and its CPU kernel has no float16 or
    bfloat16 version, so under CPU autocast the plain op fails. float64 inputs stay float64.
    ``kwargs`` are deform_conv2d's (stride, padding, dilation).

    A NaN offset passes the CPU kernel's "outside the input" test (every comparison with NaN is
    false) and becomes an out-of-bounds index: the process dies with a segmentation fault
    (torchvision 0.29). Infinite offsets are caught by that test and read zeros, as any offset
    outside the input does. So NaN offsets go to the kernel as 0, and every output cell
    (all channels) whose offsets held a NaN is set to NaN afterwards: the NaN still reaches the
    caller's finite checks. Branch-free, so no host-device sync on CUDA; finite offsets give the
    bit-identical output of the plain op.
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
    """The offsets with every NaN replaced by 0, and where the output must be NaN instead.

    Deformable sampling kernels turn an offset into an integer index, and a NaN one crashes them
    (see :func:`deform_conv2d_full_precision`); the caller samples with the cleaned offsets and
    sets the returned cells to NaN afterwards, so a NaN still reaches its finite checks.
    Branch-free (no host-device sync).

    Args:
        offset: (N, 2K, Ho, Wo) offsets on the output's grid.

    Returns:
        ``(offset without NaN, nan_cells)``; ``nan_cells`` is (N, 1, Ho, Wo) bool, true where any
        offset of the cell is NaN.
    """
    nan_offset = offset.isnan()
    return offset.masked_fill(nan_offset, 0), nan_offset.any(dim=1, keepdim=True)


class ModulatedDeformConv(nn.Module):
    """Modulated deformable convolution (DCNv2, :paper:`deformconv2`).

    Args:
        in_channels (int): input channels Ci.
        out_channels (int): output channels Co.
        kernel_size (int or tuple[int, int]): (kh, kw).
        stride, padding, dilation (int or tuple[int, int]): as in :class:`torch.nn.Conv2d`.
        groups (int): groups of the convolution (``weight`` is (Co, Ci / groups, kh, kw)).
        deformable_groups (int): G, the number of channel groups that share one offset field.
        bias (bool): whether to add a learnable bias (Co,).
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
        """
        Args:
            x: (N, Ci, H, W) input.
            offset: (N, 2 * G * kh * kw, Ho, Wo) sampling displacements, layout in the module
                docstring.
            mask: (N, G * kh * kw, Ho, Wo) modulation scalars (usually in [0, 1]).

        Returns:
            (N, Co, Ho, Wo) output, after ``norm`` and ``activation`` if given.
        """
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
    """DCNv2 conv that predicts its own offsets and modulation mask with a 3x3 conv.

    The offset conv (``conv_offset``) starts at zero, so the layer starts as a plain conv whose
    sampling grid is then learned. Its output is split like detectron2's and MMCV's: two offset
    halves and a mask passed through a sigmoid.
    """

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
