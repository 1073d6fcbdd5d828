"""The DW-FCOS head: shared classification and regression towers over the FPN levels.
Shapes: N images, C classes, L levels of size (H_l, W_l)."""

import inspect
import math

import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.utils.registry import Registry
from torch import nn
from torch.nn import functional as F

from ..layers import ModulatedDeformConvPack
from .box_refine import refine_boxes

DW_HEAD_REGISTRY = Registry("DW_HEAD")
DW_HEAD_REGISTRY.__doc__ = """
Registry for DW dense heads, built as ``head(cfg, input_shape)`` (a list of ShapeSpec).
``forward(features, valid_masks=None)`` takes L feature maps (N, D, H, W) and, for a masked
batch of mixed sizes, L bool masks (N, 1, H, W) or None (positions read outside them read zeros),
and returns three lists of L tensors: logits (N, C, H, W), distances (left, top, right, bottom)
in pixels (N, 4, H, W) and centerness logits (N, 1, H, W).
"""


def build_dw_head(cfg, input_shape: list[ShapeSpec]):
    """Build the head named by ``cfg.MODEL.DW.HEAD_NAME``."""
    return DW_HEAD_REGISTRY.get(cfg.MODEL.DW.HEAD_NAME)(cfg, input_shape)


@DW_HEAD_REGISTRY.register()
class DWHead(nn.Module):
    """FCOS-style head of the release: GroupNorm towers, centerness on the regression tower,
    per-level learnable scale on the distances, optional box refinement and DCNv2. It only
    needs equally wide feature maps, so it sits on any detectron2 backbone."""

    @configurable
    def __init__(
        self,
        *,
        input_shape: list[ShapeSpec],
        num_classes: int,
        num_convs: int = 4,
        norm: str = "GN",
        prior_prob: float = 0.02,
        box_bias_init: float = 4.0,
        box_refine: bool = False,
        dcn_on_last_conv: bool = False,
    ):
        """Arguments as the ``MODEL.DW`` keys of the same names (``config.py``); the levels of
        ``input_shape`` must be equally wide."""
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"DWHead needs equally wide input levels, got channels {channels}")
        (dim,) = channels
        self.strides = [s.stride for s in input_shape]
        self.box_refine = box_refine

        self.cls_tower = self._make_tower(dim, num_convs, norm, dcn_on_last_conv)
        self.reg_tower = self._make_tower(dim, num_convs, norm, dcn_on_last_conv)
        self.cls_logits = nn.Conv2d(dim, num_classes, kernel_size=3, padding=1)
        self.box = nn.Conv2d(dim, 4, kernel_size=3, padding=1)
        self.centerness = nn.Conv2d(dim, 1, kernel_size=3, padding=1)
        # One learnable multiplier of the distances per level, as in FCOS.
        self.scales = nn.ParameterList(
            [nn.Parameter(torch.tensor(1.0)) for _ in range(len(input_shape))]
        )
        # 8 offsets (dy, dx per box side), in feature cells; see refine_boxes.
        self.box_refine_offsets = (
            nn.Conv2d(dim, 8, kernel_size=3, padding=1) if box_refine else None
        )
        self._init_weights(prior_prob, box_bias_init)

    @staticmethod
    def _make_tower(dim, num_convs, norm, dcn_on_last_conv):
        layers = []
        for i in range(num_convs):
            conv_type = (
                ModulatedDeformConvPack if dcn_on_last_conv and i == num_convs - 1 else Conv2d
            )
            # The release keeps the bias before GroupNorm: its checkpoints convert one to one.
            layers.append(
                conv_type(
                    dim,
                    dim,
                    kernel_size=3,
                    padding=1,
                    bias=True,
                    norm=get_norm(norm, dim),
                    activation=F.relu,
                )
            )
        return nn.Sequential(*layers)

    def _init_weights(self, prior_prob, box_bias_init):
        # conv_offset of a DCN layer keeps its zero init: it is not in this list.
        convs = [*self.cls_tower, *self.reg_tower, self.cls_logits, self.box, self.centerness]
        if self.box_refine_offsets is not None:
            convs.append(self.box_refine_offsets)
        for conv in convs:
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.constant_(self.box.bias, box_bias_init)

    @classmethod
    def from_config(cls, cfg, input_shape):
        # The arguments are the keys of MODEL.DW in lower case.
        names = inspect.signature(DWHead.__init__).parameters.keys() - {"self", "input_shape"}
        return {"input_shape": input_shape, **{n: cfg.MODEL.DW[n.upper()] for n in names}}

    def forward(
        self, features: list[torch.Tensor], valid_masks: list[torch.Tensor | None] | None = None
    ):
        """
        Args:
            features: L feature maps (N, D, H_l, W_l), finest first, matching ``input_shape``.
            valid_masks: optional L bool masks (N, 1, H_l, W_l) or None, each image's own part
                of a padded batch; box refinement reads zeros outside it.

        Returns:
            logits: L tensors (N, C, H_l, W_l), classification logits.
            box_ltrb: L tensors (N, 4, H_l, W_l), distances (left, top, right, bottom) >= 0 in
                pixels from each anchor point (refined if ``box_refine``).
            centerness: L tensors (N, 1, H_l, W_l), centerness (objectness) logits.
        """
        if len(features) != len(self.strides):
            raise ValueError(f"DWHead expects {len(self.strides)} levels, got {len(features)}")
        if valid_masks is None:
            valid_masks = [None] * len(features)
        logits, box_ltrb, centerness = [], [], []
        for feature, valid, scale, stride in zip(features, valid_masks, self.scales, self.strides):
            cls_feature = self.cls_tower(feature)
            reg_feature = self.reg_tower(feature)
            logits.append(self.cls_logits(cls_feature))
            centerness.append(self.centerness(reg_feature))
            ltrb = F.relu(scale * self.box(reg_feature)) * stride
            if self.box_refine:
                ltrb = refine_boxes(ltrb, self.box_refine_offsets(reg_feature), stride, valid)
            box_ltrb.append(ltrb)
        return logits, box_ltrb, centerness
