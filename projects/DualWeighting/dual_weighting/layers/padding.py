"""Batched inference computed as if one image at a time (docs/BATCHED_EVALUATION.md).

An image padded further in a batch than alone would read that padding in every convolution and
GroupNorm. :class:`BatchPadding` knows each image's own padded extent at every power-of-two
stride; :meth:`BatchPadding.masking` zeroes every wider-than-1x1 convolution's input and output
outside it and leaves it out of GroupNorm's statistics. That is exact, to rounding, for
convolutions, GroupNorm, per-cell layers, nearest upsampling by 2 and max pooling of a
convolution's non-negative output (ResNet and RegNetX with FPN, the DW head); any other layer is
refused by name.

Shapes: N images; a feature map (N, C, H, W) at stride s has ``H = ceil(H_batch / s)``.
"""

import contextlib
import math
import weakref

import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.structures import ImageList
from torch import nn

from .deform_conv import ModulatedDeformConv

__all__ = ["BatchPadding", "check_maskable", "masked_group_norm"]

# Convolutions wider than one cell, and deformable ones, are masked.
_CONVOLUTIONS = (nn.Conv2d, ModulatedDeformConv)
# Layers that compute each cell from that cell alone (BatchNorm in eval mode, as at inference),
# so zeros stay zeros up to a per-channel constant the next convolution's mask removes.
_PER_CELL = (
    nn.BatchNorm2d,
    nn.SyncBatchNorm,
    FrozenBatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Identity,
    nn.Dropout,
    nn.ParameterList,
)


def masked_group_norm(
    x: torch.Tensor,
    valid: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """GroupNorm of each image of ``x`` (N, C, H, W) over its ``valid`` (N, 1, H, W) cells only
    (what lies outside, NaN included, is ignored), zero elsewhere; other arguments as
    :func:`torch.nn.functional.group_norm`'s. Computed in at least float32, returned in
    ``x``'s dtype."""
    n, c, h, w = x.shape
    dtype = torch.promote_types(x.dtype, torch.float32)
    cells = valid.reshape(n, 1, 1, h * w)
    grouped = torch.where(cells, x.to(dtype).reshape(n, num_groups, c // num_groups, h * w), 0)
    count = cells.sum(dim=3, keepdim=True).to(dtype) * (c // num_groups)  # (N, 1, 1, 1)
    mean = grouped.sum(dim=(2, 3), keepdim=True) / count
    centred = torch.where(cells, grouped - mean, 0)
    var = centred.square().sum(dim=(2, 3), keepdim=True) / count
    out = (centred * torch.rsqrt(var + eps)).reshape(n, c, h, w)
    if weight is not None:
        out = out * weight.to(dtype).view(1, c, 1, 1)
    if bias is not None:
        out = out + bias.to(dtype).view(1, c, 1, 1)
    return torch.where(valid, out, 0).to(x.dtype)


def check_maskable(**modules: nn.Module):
    """Raise a ValueError naming the first leaf layer of ``modules`` (name -> module) that is
    not a convolution, a GroupNorm or a per-cell layer, which :meth:`BatchPadding.masking`
    cannot make exact. Functional code in a ``forward`` cannot be seen here."""
    for prefix, module in modules.items():
        for name, layer in module.named_modules(prefix=prefix):
            leaf = next(layer.children(), None) is None
            if leaf and not isinstance(layer, (*_CONVOLUTIONS, nn.GroupNorm, *_PER_CELL)):
                raise ValueError(
                    f"Batched inference cannot be made exact for {name} "
                    f"({type(layer).__name__}): the padding mask follows convolutions, "
                    "GroupNorm and per-cell layers only, and this layer may mix cells otherwise "
                    "(global pooling, attention). Turn the mask off (MODEL.DW.MASK_PADDING_TEST "
                    "False, or model.test_mask_padding=False in a LazyConfig) to run batches "
                    "with detectron2's plain padding, or evaluate one image a batch "
                    "(TEST.IMS_PER_BATCH 1 / dataloader.test.batch_size=1)."
                )


class BatchPadding:
    """Each image's own padded extent, N (height, width) ``own_sizes``, inside a padded batch
    of ``batch_size`` (height, width)."""

    def __init__(self, own_sizes: list[tuple[int, int]], batch_size: tuple[int, int]):
        self.own_sizes = [tuple(int(v) for v in s) for s in own_sizes]
        self.batch_size = tuple(int(v) for v in batch_size)
        # (height, width, device) -> None or (mask, its complement).
        self._masks = {}
        # id -> (weak reference, version) of the tensors _zero_outside returned.
        self._zeroed = {}

    @classmethod
    def of(cls, images: ImageList, backbone) -> "BatchPadding":
        """The padding of ``images`` batched for ``backbone``: each image's own size is what
        :meth:`ImageList.from_tensors` gives it alone."""
        own = [
            ImageList.from_tensors(
                [images.tensor.new_empty((0, h, w))],
                backbone.size_divisibility,
                padding_constraints=backbone.padding_constraints,
            ).tensor.shape[-2:]
            for h, w in images.image_sizes
        ]
        return cls(own, images.tensor.shape[-2:])

    @property
    def needed(self) -> bool:
        """Whether some image is padded further in the batch than alone."""
        return any(s != self.batch_size for s in self.own_sizes)

    def extents(self, height: int, width: int) -> list[tuple[int, int]]:
        """Each image's own (rows, columns), ``ceil(own / s)``, in a feature map of ``height`` x
        ``width`` at the power-of-two stride s it has; a ValueError if there is none."""
        batch_h, batch_w = self.batch_size
        for k in range(max(batch_h, batch_w).bit_length() + 1):
            s = 2**k
            if (math.ceil(batch_h / s), math.ceil(batch_w / s)) == (height, width):
                return [(math.ceil(h / s), math.ceil(w / s)) for h, w in self.own_sizes]
        raise ValueError(
            f"A feature map of {height}x{width} is not the padded batch ({batch_h}x{batch_w}) at "
            "a power-of-two stride, so each image's part of it is unknown"
        )

    def valid_mask(self, height: int, width: int, device) -> torch.Tensor | None:
        """(N, 1, height, width) bool, True inside each image's extent; None where every image
        fills the map."""
        masks = self._mask_and_complement(height, width, device)
        return None if masks is None else masks[0]

    def own_cells(self, height: int, width: int, device) -> list[torch.Tensor | None]:
        """Per image, the flat (row-major) indices of its own extent's cells in a feature map of
        ``height`` x ``width``, in the order they have in the image's map alone; None for an
        image that fills the map."""
        grid = None
        cells = []
        for rows, cols in self.extents(height, width):
            if (rows, cols) == (height, width):
                cells.append(None)
                continue
            if grid is None:
                grid = torch.arange(height * width, device=device).view(height, width)
            cells.append(grid[:rows, :cols].reshape(-1))
        return cells

    def _mask_and_complement(self, height, width, device):
        key = (height, width, str(device))
        if key not in self._masks:
            own = self.extents(height, width)
            if all(e == (height, width) for e in own):
                self._masks[key] = None
            else:
                extents = torch.tensor(own, device=device)
                rows = torch.arange(height, device=device).view(1, 1, height, 1)
                cols = torch.arange(width, device=device).view(1, 1, 1, width)
                valid = (rows < extents[:, 0].view(-1, 1, 1, 1)) & (
                    cols < extents[:, 1].view(-1, 1, 1, 1)
                )
                self._masks[key] = (valid, ~valid)
        return self._masks[key]

    def _zero_outside(self, x):
        """``x`` (N, C, H, W) zeroed outside each image's extent (in place without autograd), or
        None if it has no such cells or is unchanged since this method returned it."""
        zeroed = self._zeroed.get(id(x))
        if zeroed is not None and zeroed[0]() is x and zeroed[1] == x._version:
            return None
        masks = self._mask_and_complement(*x.shape[-2:], x.device)
        if masks is None:
            return None
        if torch.is_grad_enabled():  # autograd may need the values as they are
            x = torch.where(masks[0], x, 0)
        else:
            x = x.masked_fill_(masks[1], 0)
        self._zeroed[id(x)] = (weakref.ref(x), x._version)
        return x

    def _mask_input(self, module, inputs):
        x, *rest = inputs
        x = self._zero_outside(x)
        return None if x is None else (x, *rest)

    def _mask_output(self, module, inputs, output):
        return self._zero_outside(output)

    def _group_norm(self, module, inputs, output):
        (x,) = inputs
        valid = self.valid_mask(*x.shape[-2:], x.device)
        if valid is None:
            return None
        out = masked_group_norm(x, valid, module.num_groups, module.weight, module.bias, module.eps)
        return out.to(output.dtype)  # autocast runs GroupNorm in float32

    @contextlib.contextmanager
    def masking(self, **modules: nn.Module):
        """Within the block, every wider-than-1x1 convolution of ``modules`` (name -> module)
        has its input and output zeroed outside each image's extent (in place without
        autograd), and every GroupNorm normalises over the extent only (forward hooks). After
        :func:`check_maskable`; nothing changes when :attr:`needed` is False."""
        if not self.needed:
            yield
            return
        check_maskable(**modules)
        handles = []
        try:
            for module in modules.values():
                for layer in module.modules():
                    # A 1x1 convolution reads one cell: inside the extent, it reads inside.
                    if isinstance(layer, ModulatedDeformConv) or (
                        isinstance(layer, nn.Conv2d) and layer.kernel_size != (1, 1)
                    ):
                        # The input: layers since the last mask (a bias, a max pool) wrote past
                        # the extent. The output: for functional code reading it (a max pool).
                        handles.append(layer.register_forward_pre_hook(self._mask_input))
                        handles.append(layer.register_forward_hook(self._mask_output))
                    elif isinstance(layer, nn.GroupNorm):
                        handles.append(layer.register_forward_hook(self._group_norm))
            yield
        finally:
            for handle in handles:
                handle.remove()
