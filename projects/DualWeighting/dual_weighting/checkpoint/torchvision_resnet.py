"""torchvision ResNet (the release's ImageNet start) -> detectron2 ResNet names:

    conv1.weight                      -> backbone.bottom_up.stem.conv1.weight
    bn1.{weight,bias,running_*}       -> backbone.bottom_up.stem.conv1.norm.*
    layer1.0.conv2.weight             -> backbone.bottom_up.res2.0.conv2.weight
    layer1.0.bn2.*                    -> backbone.bottom_up.res2.0.conv2.norm.*
    layer1.0.downsample.{0,1}.*       -> backbone.bottom_up.res2.0.shortcut.{weight,norm.*}

``fc.*`` and ``num_batches_tracked`` are dropped; any other key is an error. By default names are
the full ones inside an FPN (``backbone.bottom_up.``), matched exactly; prefix "" writes short
names that detectron2 matches by suffix (``matching_heuristics``) into any ResNet model.
``tools/convert_torchvision_resnet.py`` is the command line; in Python::

    model = convert_torchvision_resnet(load_torchvision_state_dict("resnet50-11ad3fa6.pth"))
    save_detectron2_checkpoint(model, "R-50-torchvision.pkl")
"""

import os
import pickle
import re

import torch

__all__ = [
    "DEFAULT_PREFIX",
    "RESNET_RENAMES",
    "convert_torchvision_resnet",
    "load_torchvision_state_dict",
    "rename_resnet",
    "save_detectron2_checkpoint",
]

DEFAULT_PREFIX = "backbone.bottom_up."

_BN = r"(weight|bias|running_mean|running_var)"
_CONV = r"(weight|bias)"
# torchvision's (and MMDetection's) ResNet names: (pattern, detectron2 template); "{stage}" is
# the layer index + 1. The DCNv2 offset conv is MMCV's.
RESNET_RENAMES = [
    (re.compile(rf"conv1\.{_CONV}"), "stem.conv1.{0}"),
    (re.compile(rf"bn1\.{_BN}"), "stem.conv1.norm.{0}"),
    (re.compile(rf"layer([1-4])\.(\d+)\.conv(\d)\.{_CONV}"), "res{stage}.{1}.conv{2}.{3}"),
    (re.compile(rf"layer([1-4])\.(\d+)\.bn(\d)\.{_BN}"), "res{stage}.{1}.conv{2}.norm.{3}"),
    (re.compile(rf"layer([1-4])\.(\d+)\.downsample\.0\.{_CONV}"), "res{stage}.{1}.shortcut.{2}"),
    (re.compile(rf"layer([1-4])\.(\d+)\.downsample\.1\.{_BN}"), "res{stage}.{1}.shortcut.norm.{2}"),
    (
        re.compile(rf"layer([1-4])\.(\d+)\.conv2\.conv_offset\.{_CONV}"),
        "res{stage}.{1}.conv2_offset.{2}",
    ),
]
_DROPPED = re.compile(r"fc\.(weight|bias)|.*\.num_batches_tracked")


def rename_resnet(key):
    """detectron2's short ResNet name (``res2.0.conv1.weight``) of a torchvision ResNet ``key``
    (``layer1.0.conv1.weight``), by :data:`RESNET_RENAMES`; None if no rule matches."""
    for pattern, template in RESNET_RENAMES:
        match = pattern.fullmatch(key)
        if match:
            groups = match.groups()
            stage = int(groups[0]) + 1 if key.startswith("layer") else None
            return template.format(*groups, stage=stage)
    return None


def convert_torchvision_resnet(state_dict, prefix=DEFAULT_PREFIX):
    """detectron2 name (after ``prefix``) -> tensor (detached, on CPU) of a torchvision ResNet
    ``state_dict`` (``module.`` stripped); a ValueError names every unknown key."""
    converted, unmapped = {}, []
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if _DROPPED.fullmatch(key):
            continue
        name = rename_resnet(key)
        if name is None:
            unmapped.append(key)
        else:
            converted[prefix + name] = value.detach().cpu()
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} keys are not torchvision ResNet keys this converter knows: "
            f"{', '.join(unmapped)}"
        )
    if not converted:
        raise ValueError("The input contains no torchvision ResNet weights.")
    return converted


def load_torchvision_state_dict(path):
    """Load a raw state dict, or the one under "state_dict"/"model" of a checkpoint file."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"expected a state dict, got {type(data).__name__}")
    for key in ("state_dict", "model"):
        if isinstance(data.get(key), dict):
            return data[key]
    return data


def save_detectron2_checkpoint(model, path, prefix=DEFAULT_PREFIX):
    """Write ``model`` (detectron2 names) in a format ``DetectionCheckpointer`` loads: a pickle of
    numpy arrays if ``path`` ends in ``.pkl``, else ``torch.save``."""
    checkpoint = {
        "model": model,
        "__author__": "torchvision",
        # Short names need detectron2's suffix matching; full names are matched exactly.
        "matching_heuristics": not prefix,
    }
    if os.fspath(path).endswith(".pkl"):
        checkpoint["model"] = {k: v.numpy() for k, v in model.items()}
        with open(path, "wb") as f:
            pickle.dump(checkpoint, f)
    else:
        torch.save(checkpoint, path)
