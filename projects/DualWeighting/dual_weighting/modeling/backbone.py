"""ResNet-FPN backbone of the DW detector: P3-P7, with P6 computed from P5's output, built from
a yacs config (:func:`build_dw_resnet_fpn_backbone`) or, for LazyConfigs, from arguments
(:func:`dw_fpn` over :func:`dw_resnet`). DCNv2 blocks use torchvision's ops with detectron2's
parameter names, so checkpoints move freely between the two.

Shapes: N images, H, W padded input size (multiples of 32), C = FPN.OUT_CHANNELS; ``p3``..``p7``
are (N, C, ceil(H / s), ceil(W / s)) for strides s = 8, 16, 32, 64, 128.
"""

import inspect

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone import FPN, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.backbone.resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    DeformBottleneckBlock,
)
from fvcore.nn import weight_init
from torch import nn

from ..layers import ModulatedDeformConv, resolve_norm

__all__ = [
    "ModulatedDeformBottleneckBlock",
    "build_dw_resnet",
    "build_dw_resnet_fpn_backbone",
    "dw_fpn",
    "dw_resnet",
]

# Blocks per stage (res2..res5) for each supported depth.
_BLOCKS_PER_STAGE = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


class ModulatedDeformBottleneckBlock(BottleneckBlock):
    """detectron2's ``DeformBottleneckBlock(deform_modulated=True)`` (same module names, so its
    checkpoints load unchanged) without detectron2's compiled ops: :class:`BottleneckBlock`
    builds conv1/conv3/shortcut, ``conv2`` is deformable, the forward is detectron2's.
    ``conv2_offset`` predicts 18 G offsets then 9 G mask logits; it starts at zero (the regular
    3x3 grid, mask 0.5).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        bottleneck_channels,
        stride=1,
        num_groups=1,
        norm="BN",
        stride_in_1x1=False,
        dilation=1,
        deform_num_groups=1,
    ):
        super().__init__(
            in_channels,
            out_channels,
            bottleneck_channels=bottleneck_channels,
            stride=stride,
            num_groups=num_groups,
            norm=norm,
            stride_in_1x1=stride_in_1x1,
            dilation=dilation,
        )
        self.deform_modulated = True  # read by DeformBottleneckBlock.forward
        stride_3x3 = 1 if stride_in_1x1 else stride
        # (dy, dx) for 9 kernel positions + 9 mask logits, per deformable group.
        self.conv2_offset = Conv2d(
            bottleneck_channels,
            27 * deform_num_groups,
            kernel_size=3,
            stride=stride_3x3,
            padding=dilation,
            dilation=dilation,
        )
        self.conv2 = ModulatedDeformConv(
            bottleneck_channels,
            bottleneck_channels,
            kernel_size=3,
            stride=stride_3x3,
            padding=dilation,
            dilation=dilation,
            groups=num_groups,
            deformable_groups=deform_num_groups,
            bias=False,
            norm=get_norm(norm, bottleneck_channels),
        )
        weight_init.c2_msra_fill(self.conv2)
        nn.init.zeros_(self.conv2_offset.weight)
        nn.init.zeros_(self.conv2_offset.bias)

    forward = DeformBottleneckBlock.forward


def dw_resnet(
    *,
    depth: int,
    norm="FrozenStatsBN",
    in_channels: int = 3,
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    num_groups: int = 1,
    width_per_group: int = 64,
    stride_in_1x1: bool = False,
    deform_on_per_stage=(False, False, False, False),
    deform_num_groups: int = 1,
    out_features=("res3", "res4", "res5"),
    freeze_at: int = 2,
) -> ResNet:
    """detectron2's :class:`ResNet` with our DCNv2 blocks, from arguments (the LazyConfig
    constructor; :func:`build_dw_resnet` reads ``cfg.MODEL.RESNETS``). Defaults are the
    release's R-50: stride on the 3x3 conv, "FrozenStatsBN", stem and res2 frozen. Depths 18/34
    use :class:`BasicBlock` (no DCN, ``res2_out_channels`` 64, ``num_groups`` 1).

    Returns:
        ResNet: maps (N, in_channels, H, W) to ``{"res<k>": (N, C_k, H / 2^k, W / 2^k)}`` for
        ``out_features``.
    """
    return _make_resnet(locals(), key=str)


def _make_resnet(args, key) -> ResNet:
    """:func:`dw_resnet` of the dict ``args``; errors name each argument as ``key(name)``."""
    norm = resolve_norm(args["norm"], key=key("norm"))
    depth = args["depth"]
    if depth not in _BLOCKS_PER_STAGE:
        raise ValueError(f"{key('depth')} must be one of {sorted(_BLOCKS_PER_STAGE)}.")
    deform_on = list(args["deform_on_per_stage"])
    basic = depth in (18, 34)
    if basic and (args["res2_out_channels"] != 64 or args["num_groups"] != 1 or any(deform_on)):
        raise ValueError(
            f"ResNet-{depth} needs {key('res2_out_channels')} = 64, {key('num_groups')} = 1 and "
            f"no {key('deform_on_per_stage')} (BasicBlock has no deformable variant)."
        )

    stem = BasicStem(args["in_channels"], args["stem_out_channels"], norm=norm)
    in_channels, out_channels = args["stem_out_channels"], args["res2_out_channels"]
    bottleneck_channels = args["num_groups"] * args["width_per_group"]
    stages = []
    for idx, num_blocks in enumerate(_BLOCKS_PER_STAGE[depth]):
        kwargs = {
            "num_blocks": num_blocks,
            # res2 follows the stem's max-pool; every later stage halves the resolution.
            "stride_per_block": [1 if idx == 0 else 2] + [1] * (num_blocks - 1),
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": norm,
        }
        if basic:
            block_class = BasicBlock
        else:
            kwargs.update(
                bottleneck_channels=bottleneck_channels,
                num_groups=args["num_groups"],
                stride_in_1x1=args["stride_in_1x1"],
            )
            block_class = BottleneckBlock
            if deform_on[idx]:
                block_class = ModulatedDeformBottleneckBlock
                kwargs["deform_num_groups"] = args["deform_num_groups"]
        stages.append(ResNet.make_stage(block_class, **kwargs))
        in_channels, out_channels = out_channels, out_channels * 2
        bottleneck_channels *= 2
    return ResNet(
        stem, stages, out_features=list(args["out_features"]), freeze_at=args["freeze_at"]
    )


def build_dw_resnet(cfg, input_shape: ShapeSpec) -> ResNet:
    """:func:`dw_resnet` of ``cfg.MODEL.RESNETS`` and ``cfg.MODEL.BACKBONE.FREEZE_AT``."""
    res = cfg.MODEL.RESNETS
    if res.RES5_DILATION != 1:
        raise ValueError("MODEL.RESNETS.RES5_DILATION must be 1: the FPN needs a stride-32 res5.")
    if any(res.DEFORM_ON_PER_STAGE) and not res.DEFORM_MODULATED and res.DEPTH >= 50:
        raise ValueError("Only modulated DCN (DCNv2) is supported: set DEFORM_MODULATED True.")
    # dw_resnet's arguments are the keys of MODEL.RESNETS in lower case.
    names = inspect.signature(dw_resnet).parameters.keys() - {"in_channels", "freeze_at"}
    args = {name: res[name.upper()] for name in names}
    args.update(in_channels=input_shape.channels, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
    return _make_resnet(args, key=lambda name: f"MODEL.RESNETS.{name.upper()}")


def dw_fpn(*, bottom_up: Backbone, in_features, out_channels: int, norm="", fuse_type="sum") -> FPN:
    """FPN over ``in_features`` (strides 8, 16, 32) of ``bottom_up``, the LazyConfig
    constructor. Unlike detectron2's ``build_retinanet_resnet_fpn_backbone`` (P6 from res5), P6
    is a 3x3/2 conv on the FPN's P5 output and P7 one on relu(P6), as in the release.
    """
    return _make_fpn(bottom_up, in_features, out_channels, norm, fuse_type, key=str)


def _make_fpn(bottom_up, in_features, out_channels, norm, fuse_type, key) -> FPN:
    """:func:`dw_fpn`; errors name each argument as ``key(name)``."""
    in_features = list(in_features)
    missing = set(in_features) - set(bottom_up.output_shape())
    if missing:
        raise ValueError(
            f"{key('in_features')} {in_features} needs {sorted(missing)} in "
            f"{key('out_features')} ({list(bottom_up.output_shape())})."
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=out_channels,
        norm=norm,
        top_block=LastLevelP6P7(out_channels, out_channels, in_feature="p5"),
        fuse_type=fuse_type,
    )


@BACKBONE_REGISTRY.register()
def build_dw_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """:func:`dw_fpn` on :func:`build_dw_resnet`, from ``MODEL.FPN`` and ``MODEL.RESNETS``.
    ``RESNETS.NORM`` "FrozenStatsBN" trains the BN affine parameters with frozen statistics, as
    the release (detectron2's "FrozenBN" freezes them too); stages up to ``BACKBONE.FREEZE_AT``
    (the release's ``frozen_stages=1`` is 2) are fully frozen either way.
    """
    fpn = cfg.MODEL.FPN
    keys = {"in_features": "MODEL.FPN.IN_FEATURES", "out_features": "MODEL.RESNETS.OUT_FEATURES"}
    return _make_fpn(
        build_dw_resnet(cfg, input_shape),
        fpn.IN_FEATURES,
        fpn.OUT_CHANNELS,
        fpn.NORM,
        fpn.FUSE_TYPE,
        key=keys.get,
    )
