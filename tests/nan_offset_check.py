"""The NaN-offset check that helpers.run_nan_offset_check runs in a fresh Python process:
torchvision's CPU deform_conv2d segfaults on a NaN offset (0.29), so the checks that could reach
the kernel with one run apart, and a regression fails a test, not the suite. Prints "checked"."""

import torch
from detectron2.layers import ShapeSpec
from torchvision.ops import deform_conv2d

from dual_weighting import DWHead
from dual_weighting.layers.deform_conv import deform_conv2d_full_precision
from dual_weighting.modeling.backbone import ModulatedDeformBottleneckBlock


def main():
    """Raise AssertionError on a wrong value; die with a segmentation fault if a NaN offset
    reached the kernel."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    # The two forms in the package: 3x3 DCNv2 with a mask (backbone, head towers) and the 1x1
    # grouped all-ones sampling of box refine, without a mask.
    forms = [
        ((2, 8, 6, 7), (2, 18, 6, 7), (4, 8, 3, 3), (2, 9, 6, 7), {"padding": 1}),
        ((2, 4, 6, 7), (2, 8, 6, 7), (4, 1, 1, 1), None, {}),
    ]
    for x_shape, offset_shape, weight_shape, mask_shape, kwargs in forms:
        x = torch.randn(x_shape, generator=g, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(weight_shape, generator=g, dtype=torch.float64, requires_grad=True)
        mask = None if mask_shape is None else torch.rand(mask_shape, generator=g).double()
        finite = 3 * torch.randn(offset_shape, generator=g, dtype=torch.float64)
        # One NaN offset of image 1 at cell (2, 3); an infinite one at cell (4, 5).
        offset = finite.clone()
        offset[1, 1, 2, 3] = float("nan")
        offset[1, 2, 4, 5] = float("inf")
        offset.requires_grad_()
        out = deform_conv2d_full_precision(x, offset, weight, mask=mask, **kwargs)
        # The plain op on the offset with the NaN made 0: an independent reference everywhere
        # else, where the output must be bit-identical (the infinite offset reads zeros).
        expected = deform_conv2d(
            x, offset.detach().nan_to_num(nan=0.0), weight, mask=mask, **kwargs
        )
        nan_cell = torch.zeros_like(out, dtype=torch.bool)
        nan_cell[1, :, 2, 3] = True
        assert out[nan_cell].isnan().all(), "the NaN offset's output cell must be NaN"
        assert torch.equal(out[~nan_cell], expected[~nan_cell])
        out.nan_to_num().sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in (x, weight)), "finite gradients"
        assert offset.grad[1, :, 2, 3].eq(0).all(), "no gradient through the NaN cell"

        all_nan = torch.full(offset_shape, float("nan"), dtype=torch.float64)
        assert deform_conv2d_full_precision(x, all_nan, weight, mask=mask, **kwargs).isnan().all()

    # The layers that call it: a DCN bottleneck block (backbone) and a head with DCN towers and
    # box refine, on a NaN pixel and on NaN features: NaN out, where the finite checks see it.
    block = ModulatedDeformBottleneckBlock(16, 32, bottleneck_channels=8, norm="FrozenBN")
    image = torch.randn(1, 16, 9, 9, generator=g)
    image[0, 3, 4, 4] = float("nan")
    with torch.no_grad():
        block.conv2_offset.weight.normal_(generator=g)
        assert block(image).isnan().any()
    shapes = [ShapeSpec(channels=32, stride=s) for s in (8, 16)]
    head = DWHead(input_shape=shapes, num_classes=3, box_refine=True, dcn_on_last_conv=True)
    for value in (float("nan"), float("inf")):
        with torch.no_grad():
            predictions = head([torch.full((1, 32, 6, 8), value), torch.full((1, 32, 3, 4), value)])
        assert all(x.isnan().all() for level in predictions for x in level)
    print("checked")
