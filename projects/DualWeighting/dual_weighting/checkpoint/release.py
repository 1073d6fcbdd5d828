"""The authors' DW release (MMDetection 2.x) -> detectron2: names, checks, conversion.

Every tensor of the release's MMDetection ``FCOS`` + ``DWHead`` is renamed, not reshaped, to its
name in ``DWFCOS`` built from the paired config; the names and shapes must equal the model's
exactly, or the conversion lists what is missing, unexpected or mis-shaped. The pairs:

    release config                            config here
    dw_r50_fpn_worefine_1x_coco               configs/dw_R_50_FPN_1x.yaml
    dw_r50_fpn_1x_coco (reg_refine default)   configs/dw_R_50_FPN_refine_1x.yaml
    dw_r50_fpn_mstrain_2x_coco                configs/dw_R_50_FPN_refine_ms_2x.yaml
    dw_r50_fpn_dconv_c3-c5_mstrain_2x_coco    configs/dw_R_50_FPN_DCN_refine_ms_2x.yaml
    dw_r101_fpn_worefine_mstrain_2x_coco      configs/dw_R_101_FPN_ms_2x.yaml
    dw_r101_fpn_1x_coco (config only)         configs/dw_R_101_FPN_refine_1x.yaml

Names (release -> detectron2; ``K`` = MMDetection's ResNet layer index, stage ``K + 1`` here):

    backbone.conv1 / backbone.bn1             backbone.bottom_up.stem.conv1 / .conv1.norm
    backbone.layerK.i.convJ / .bnJ            backbone.bottom_up.res{K+1}.i.convJ / .convJ.norm
    backbone.layerK.i.downsample.0 / .1       backbone.bottom_up.res{K+1}.i.shortcut / .norm
    backbone.layerK.i.conv2.conv_offset       backbone.bottom_up.res{K+1}.i.conv2_offset  (DCNv2)
    neck.lateral_convs.i.conv                 backbone.fpn_lateral{3+i}
    neck.fpn_convs.i.conv, i = 0..2           backbone.fpn_output{3+i}
    neck.fpn_convs.3.conv / .4.conv           backbone.top_block.p6 / .p7  (on P5's output)
    bbox_head.{cls,reg}_convs.i.conv / .gn    head.{cls,reg}_tower.i / .norm
    bbox_head.{cls,reg}_convs.i.conv.conv_offset   head.{cls,reg}_tower.i.conv_offset  (DCNv2)
    bbox_head.conv_cls / conv_reg / conv_centerness   head.cls_logits / head.box / head.centerness
    bbox_head.scales.i.scale                  head.scales.i
    bbox_head.reg_offset                      head.box_refine_offsets

DCNv2 offset convs need no reordering (MMCV and detectron2 split them alike); BN's
``num_batches_tracked`` is dropped; ``bbox_head.center_prior.{mean,sigma}``, fixed per-class
copies of mu and sigma, are checked against ``MODEL.DW.CENTER_PRIOR_*`` and dropped. Class order
is the same (both sort COCO's category ids). ``tools/convert_release_checkpoint.py`` is the
command line; in Python::

    cfg = load_yacs_config("configs/dw_R_50_FPN_refine_1x.yaml", ["MODEL.DEVICE", "cpu"])
    model = convert_for_config(load_release_state_dict("dw_r50_1x.pth"), cfg)
    save_converted_release(model, "dw_R_50_FPN_refine_1x.pth")
"""

from __future__ import annotations

import pickle
import re

import torch
from detectron2.modeling import build_model

from .torchvision_resnet import rename_resnet

__all__ = [
    "check_against_model",
    "check_center_prior",
    "convert_for_config",
    "convert_release_state_dict",
    "fpn_stages_of",
    "load_release_state_dict",
    "rename",
    "save_converted_release",
]

_CONV = r"(weight|bias)"
_HEAD_SIMPLE = {
    "conv_cls": "head.cls_logits",
    "conv_reg": "head.box",
    "conv_centerness": "head.centerness",
    "reg_offset": "head.box_refine_offsets",
}
_CENTER_PRIOR = re.compile(r"bbox_head\.center_prior\.(mean|sigma)")
_DROPPED = re.compile(r".*\.num_batches_tracked")


def _rename_backbone(key):
    # MMDetection's ResNet has torchvision's names (and MMCV's DCNv2 offset convs).
    name = rename_resnet(key.removeprefix("backbone."))
    return None if name is None else "backbone.bottom_up." + name


def _rename_neck(key, fpn_stages):
    match = re.fullmatch(rf"neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.{_CONV}", key)
    if match is None:
        return None
    kind, index, param = match[1], int(match[2]), match[3]
    if index < len(fpn_stages):
        name = "fpn_lateral" if kind == "lateral_convs" else "fpn_output"
        return f"backbone.{name}{fpn_stages[index]}.{param}"
    if kind == "fpn_convs":
        # MMDetection's extra convs ("on_output"): P6 from P5's output, then P7 from relu(P6).
        return f"backbone.top_block.p{fpn_stages[-1] + 1 + index - len(fpn_stages)}.{param}"
    return None


def _rename_head(key):
    match = re.fullmatch(
        rf"bbox_head\.(cls|reg)_convs\.(\d+)\.(conv|gn)\.(conv_offset\.)?{_CONV}", key
    )
    if match:
        branch, index, layer, offset, param = match.groups()
        if layer == "gn":
            return None if offset else f"head.{branch}_tower.{index}.norm.{param}"
        return f"head.{branch}_tower.{index}.{offset or ''}{param}"
    match = re.fullmatch(r"bbox_head\.scales\.(\d+)\.scale", key)
    if match:
        return f"head.scales.{match[1]}"
    match = re.fullmatch(rf"bbox_head\.(\w+)\.{_CONV}", key)
    if match and match[1] in _HEAD_SIMPLE:
        return f"{_HEAD_SIMPLE[match[1]]}.{match[2]}"
    return None


def rename(key, fpn_stages=(3, 4, 5)):
    """detectron2 name of the release's ``key`` (without ``module.``): "" if it is dropped,
    None if unknown. MMDetection's lateral/fpn conv ``i`` is stage ``fpn_stages[i]``."""
    if _DROPPED.fullmatch(key) or _CENTER_PRIOR.fullmatch(key):
        return ""
    if key.startswith("backbone."):
        return _rename_backbone(key)
    if key.startswith("neck."):
        return _rename_neck(key, list(fpn_stages))
    if key.startswith("bbox_head."):
        return _rename_head(key)
    return None


def convert_release_state_dict(state_dict, fpn_stages=(3, 4, 5)):
    """``(converted, center_prior)``: detectron2 name -> tensor (detached, on CPU), and the
    ``{"mean", "sigma"}`` center-prior tensors found. A ValueError names every unknown key, or
    two keys mapping to one name."""
    converted, center_prior, unmapped, sources = {}, {}, [], {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        new_key = rename(key, fpn_stages)
        if new_key is None:
            unmapped.append(key)
            continue
        prior = _CENTER_PRIOR.fullmatch(key)
        if prior:
            center_prior[prior[1]] = value.detach().cpu()
        if not new_key:
            continue
        if new_key in converted:
            raise ValueError(f"{sources[new_key]!r} and {key!r} both map to {new_key!r}")
        converted[new_key], sources[new_key] = value.detach().cpu(), key
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} keys are not DW-release (MMDetection FCOS + DWHead) keys this "
            f"converter knows: {', '.join(unmapped)}"
        )
    if not converted:
        raise ValueError("The input contains no DW-release weights.")
    return converted, center_prior


def check_center_prior(center_prior, mu, sigma, atol=1e-5):
    """Raise ValueError unless every per-class mean equals ``mu`` and every sigma ``sigma``
    (the release learns neither; this project keeps one scalar each)."""
    for name, expected in (("mean", mu), ("sigma", sigma)):
        value = center_prior.get(name)
        if value is not None and not torch.allclose(
            value.float(), torch.full_like(value.float(), expected), atol=atol
        ):
            raise ValueError(
                f"bbox_head.center_prior.{name} is not {expected} everywhere (min "
                f"{value.min().item():g}, max {value.max().item():g}); set MODEL.DW.CENTER_PRIOR_"
                f"{'MU' if name == 'mean' else 'SIGMA'} accordingly (one value for all classes)."
            )


def check_against_model(converted, model_state):
    """``converted`` in the order of the model's ``model_state``, one-element tensors reshaped
    to the model's; a ValueError lists missing, unexpected and mis-shaped names."""
    missing = [k for k in model_state if k not in converted]
    unexpected = [k for k in converted if k not in model_state]
    wrong_shape, result = [], {}
    for key, target in model_state.items():
        if key not in converted:
            continue
        value = converted[key]
        if value.shape != target.shape:
            if value.numel() == target.numel() == 1:
                value = value.reshape(target.shape)
            else:
                wrong_shape.append(f"{key}: {tuple(value.shape)} vs {tuple(target.shape)}")
                continue
        result[key] = value
    problems = []
    for title, names in (
        ("missing (in the model, not in the checkpoint)", missing),
        ("unexpected (in the checkpoint, not in the model)", unexpected),
        ("with other shapes (checkpoint vs model)", wrong_shape),
    ):
        if names:
            problems.append(f"{len(names)} {title}:\n  " + "\n  ".join(names))
    if problems:
        raise ValueError(
            "The converted checkpoint does not fit the config's model; is it the config that "
            "matches the release file (refine, DCN, depth, classes)?\n" + "\n".join(problems)
        )
    return result


def load_release_state_dict(path, unsafe_load=False):
    """The state dict of a release checkpoint (MMDetection's ``{"meta", "state_dict"}`` or raw),
    read with ``torch.load(weights_only=True)`` unless ``unsafe_load`` (trusted files only)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=not unsafe_load)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"cannot read it with torch.load(weights_only=True) ({str(e).splitlines()[0]}); "
            "if you trust the file, pass --unsafe-load"
        ) from e
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict, got {type(data).__name__}")
    if isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError("expected a state dict of tensors, or one under 'state_dict'")
    return data


def fpn_stages_of(model_state):
    """detectron2 stage numbers of the FPN's lateral convs, finest first."""
    stages = {int(m[1]) for k in model_state if (m := re.match(r"backbone\.fpn_lateral(\d+)\.", k))}
    if not stages:
        raise ValueError("The config's model has no detectron2 FPN (backbone.fpn_lateral*).")
    return sorted(stages)


def convert_for_config(state_dict, cfg):
    """Convert ``state_dict`` and check it against the model built from ``cfg``."""
    model_state = build_model(cfg).state_dict()
    converted, center_prior = convert_release_state_dict(state_dict, fpn_stages_of(model_state))
    check_center_prior(center_prior, cfg.MODEL.DW.CENTER_PRIOR_MU, cfg.MODEL.DW.CENTER_PRIOR_SIGMA)
    return check_against_model(converted, model_state)


def save_converted_release(model, path):
    """Write ``model`` (detectron2 name -> tensor) for ``MODEL.WEIGHTS``, matched exactly."""
    torch.save(
        {
            "model": model,
            "__author__": "DW release (MMDetection 2.x), tools/convert_release_checkpoint.py",
            "matching_heuristics": False,
        },
        path,
    )
