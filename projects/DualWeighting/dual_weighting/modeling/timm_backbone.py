"""Any timm CNN as a detectron2 backbone, and in detectron2's FPN with P6/P7 from P5
(:func:`build_timm_fpn_backbone`, or :func:`dw_fpn` over :class:`TimmBackbone` in LazyConfigs).
Features are named ``c<k>`` for stride 2^k. Weights never come from the hub: a converted
checkpoint loads them under ``backbone.bottom_up.body.<timm name>``
(:mod:`dual_weighting.checkpoint.efficientnet_lite`).
"""

import math

import timm
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from timm.layers import convert_sync_batchnorm, freeze_batch_norm_2d
from torch import nn

from .backbone import _make_fpn

__all__ = ["TimmBackbone", "build_timm_fpn_backbone"]

_NORMS = ("FrozenBN", "BN", "SyncBN")


class TimmBackbone(Backbone):
    """A timm model's feature maps (``features_only=True``) as a detectron2 :class:`Backbone`.

    ``freeze_at`` = k freezes, as detectron2's ResNet, the layers computing the first k levels
    of timm's ``feature_info``, their BatchNorm made frozen BN (for EfficientNet-Lite 2 freezes
    the stride-2 and stride-4 stages, as stem and res2). ``norm`` is the BatchNorm of the rest:
    "FrozenBN" (statistics and affine frozen), "BN" or "SyncBN".
    """

    @configurable
    def __init__(
        self,
        *,
        model_name: str,
        out_features=("c3", "c4", "c5"),
        norm: str = "FrozenBN",
        freeze_at: int = 0,
        in_channels: int = 3,
        drop_path_rate: float = 0.0,
    ):
        """
        Args:
            model_name: a timm model with ``features_only`` support, e.g.
                "tf_efficientnet_lite0".
            out_features: the features returned, ``c<k>`` for stride 2^k.
            drop_path_rate: timm's stochastic depth rate of the blocks (0 at inference).
        """
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, not {norm!r}.")
        if model_name not in timm.list_models():
            raise ValueError(
                f"{model_name!r} is not a timm model (timm {timm.__version__}); "
                "see timm.list_models()."
            )
        # Only models with stochastic depth take drop_path_rate; pass it where it is asked for.
        extra = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        try:
            self.body = timm.create_model(
                model_name, pretrained=False, features_only=True, in_chans=in_channels, **extra
            )
        except TypeError as e:
            if not extra:
                raise
            raise ValueError(
                f"{model_name} has no stochastic depth: drop_path_rate must be 0, not "
                f"{drop_path_rate} ({e})."
            ) from e
        info = self.body.feature_info
        levels = [round(math.log2(s)) for s in info.reduction()]
        names = [f"c{k}" for k in levels]
        if len(set(levels)) != len(levels) or [2**k for k in levels] != info.reduction():
            raise ValueError(
                f"{model_name}'s feature strides {info.reduction()} are not distinct powers of "
                "2; TimmBackbone names features by stride."
            )
        unknown = [f for f in out_features if f not in names]
        if unknown:
            raise ValueError(f"out_features {unknown} are not features of {model_name}: {names}.")
        if not 0 <= freeze_at <= len(names):
            raise ValueError(f"freeze_at must be in [0, {len(names)}] for {model_name}.")
        self._feature_names = names
        self._out_features = list(out_features)
        self._out_feature_channels = dict(zip(names, info.channels()))
        self._out_feature_strides = dict(zip(names, info.reduction()))

        if norm == "FrozenBN":
            self.body = freeze_batch_norm_2d(self.body)
        elif norm == "SyncBN":
            self.body = convert_sync_batchnorm(self.body)
        if freeze_at:
            self._freeze(info.module_name(freeze_at - 1))

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        timm_cfg = cfg.MODEL.TIMM
        return {
            "model_name": timm_cfg.NAME,
            "out_features": timm_cfg.OUT_FEATURES,
            "norm": timm_cfg.NORM,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
            "in_channels": input_shape.channels,
            "drop_path_rate": timm_cfg.DROP_PATH_RATE,
        }

    def _freeze(self, last_module: str):
        """Freeze the modules up to ``last_module`` (in timm's order), BatchNorm as frozen BN."""
        # A features_only wrapper may flatten "blocks.0" to "blocks_0".
        prefixes = {last_module, last_module.replace(".", "_")}
        modules = list(self.body.named_modules())
        inside = [i for i, (name, _) in enumerate(modules) if name in prefixes]
        if not inside:
            raise ValueError(f"No module {last_module!r} in {type(self.body).__name__}.")
        end = inside[0]
        while end + 1 < len(modules) and modules[end + 1][0].startswith(
            tuple(p + "." for p in prefixes)
        ):
            end += 1
        for name, module in modules[1 : end + 1]:
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                parent_name, _, child = name.rpartition(".")
                parent = self.body.get_submodule(parent_name)
                setattr(parent, child, freeze_batch_norm_2d(module))

    def forward(self, x):
        """``{name: (N, channels, ceil(H / stride), ceil(W / stride))}`` of ``out_features``
        for (N, in_channels, H, W) images ``x``."""
        features = dict(zip(self._feature_names, self.body(x)))
        return {name: features[name] for name in self._out_features}

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_timm_fpn_backbone(cfg, input_shape: ShapeSpec):
    """:class:`TimmBackbone` (``MODEL.TIMM``) in :func:`dw_fpn`'s FPN (``MODEL.FPN``)."""
    fpn = cfg.MODEL.FPN
    keys = {"in_features": "MODEL.FPN.IN_FEATURES", "out_features": "MODEL.TIMM.OUT_FEATURES"}
    return _make_fpn(
        TimmBackbone(cfg, input_shape),
        fpn.IN_FEATURES,
        fpn.OUT_CHANNELS,
        fpn.NORM,
        fpn.FUSE_TYPE,
        key=keys.get,
    )
