"""torchvision ResNet -> detectron2 conversion: names, file formats, and numerical equivalence;
``dual_weighting.checkpoint`` and ``tools/convert_torchvision_resnet.py`` as users run it."""

import os
import pickle
import subprocess
import sys

import pytest
import torch
import torchvision
from detectron2.modeling import build_backbone
from helpers import REPO, RecordingCheckpointer, resnet_fpn_cfg
from torch import nn

import dual_weighting.modeling.backbone  # noqa: F401  (registers build_dw_resnet_fpn_backbone)
from dual_weighting.checkpoint import (
    convert_torchvision_resnet,
    load_torchvision_state_dict,
    save_detectron2_checkpoint,
)

# As torchvision's pretrained ResNets are used: statistics frozen, stem and res2 not trained.
FROZEN = {"norm": "FrozenBN", "freeze_at": 2}


def run_tool(*args):
    """``tools/convert_torchvision_resnet.py ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_torchvision_resnet.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
    )


class _Detector(nn.Module):
    """Stands in for a meta-architecture: the backbone lives under ``backbone.``."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def _torchvision_resnet(depth):
    """Random torchvision ResNet in eval mode, with non-trivial BN statistics and affines."""
    torch.manual_seed(depth)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return model


def _load(cfg, path):
    model = _Detector(build_backbone(cfg)).eval()
    checkpointer = RecordingCheckpointer(model)
    checkpointer.load(str(path))
    return model, checkpointer.incompatible


def _torchvision_c5(model, x):
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        x = getattr(model, name)(x)
    return x


@pytest.mark.parametrize("depth,suffix", [(50, ".pkl"), (18, ".pth")])
def test_converted_weights_load_exactly_and_match_torchvision(tmp_path, depth, suffix):
    tv_model = _torchvision_resnet(depth)
    src, dst = tmp_path / "tv.pth", tmp_path / f"d2{suffix}"
    # A training checkpoint wrapping the state dict, with DataParallel names.
    state = {f"module.{k}": v for k, v in tv_model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 90}, src)
    model = convert_torchvision_resnet(load_torchvision_state_dict(str(src)))
    save_detectron2_checkpoint(model, str(dst))

    model, incompatible = _load(resnet_fpn_cfg(depth, **FROZEN), dst)
    assert incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    assert not [k for k in incompatible.missing_keys if k.startswith("backbone.bottom_up.")]
    # Only the FPN (lateral/output convs and P6/P7) is left to train.
    assert incompatible.missing_keys
    assert all(
        k.startswith(("backbone.fpn_", "backbone.top_block.")) for k in incompatible.missing_keys
    )

    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        res5 = model.backbone.bottom_up(x)["res5"]
        torch.testing.assert_close(res5, _torchvision_c5(tv_model, x), rtol=1e-4, atol=1e-4)


def test_dcn_backbone_misses_only_offset_convs(tmp_path):
    dst = tmp_path / "d2.pkl"
    model = convert_torchvision_resnet(_torchvision_resnet(50).state_dict())
    save_detectron2_checkpoint(model, str(dst))
    _, incompatible = _load(resnet_fpn_cfg(50, (False, True, True, True), **FROZEN), dst)
    assert incompatible.unexpected_keys == []
    bottom_up_missing = {k for k in incompatible.missing_keys if ".bottom_up." in k}
    assert bottom_up_missing and all(".conv2_offset." in k for k in bottom_up_missing)
    assert len(bottom_up_missing) == 2 * (4 + 6 + 3)  # weight + bias per deformable block


def test_names_dropped_keys_and_file_format(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    model = convert_torchvision_resnet(state)
    prefix = "backbone.bottom_up."
    assert model[prefix + "stem.conv1.weight"] is not None
    assert torch.equal(model[prefix + "stem.conv1.norm.running_var"], state["bn1.running_var"])
    assert torch.equal(model[prefix + "res2.1.conv2.weight"], state["layer1.1.conv2.weight"])
    assert torch.equal(
        model[prefix + "res5.0.shortcut.weight"], state["layer4.0.downsample.0.weight"]
    )
    assert torch.equal(
        model[prefix + "res3.0.shortcut.norm.bias"], state["layer2.0.downsample.1.bias"]
    )
    assert not any("num_batches_tracked" in k or "fc" in k for k in model)
    assert len(model) == len([k for k in state if "num_batches_tracked" not in k]) - 2  # fc

    short = convert_torchvision_resnet(state, prefix="")
    assert "res4.1.conv1.norm.weight" in short
    dst = tmp_path / "short.pkl"
    save_detectron2_checkpoint(short, str(dst), prefix="")
    with open(dst, "rb") as f:
        data = pickle.load(f)
    assert data["__author__"] == "torchvision" and data["matching_heuristics"] is True
    assert type(data["model"]["stem.conv1.weight"]).__module__ == "numpy"
    # detectron2's suffix matching places the short names in the backbone.
    model, incompatible = _load(resnet_fpn_cfg(18, **FROZEN), dst)
    assert not [k for k in incompatible.missing_keys if ".bottom_up." in k]
    assert torch.equal(
        model.backbone.bottom_up.res4[1].conv1.norm.weight, short["res4.1.conv1.norm.weight"]
    )


def test_unmapped_keys_fail_with_their_names(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer1.0.se.fc1.weight"] = torch.zeros(1)
    state["aux_head.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="2 keys .*layer1.0.se.fc1.weight, aux_head.weight"):
        convert_torchvision_resnet(state)

    src = tmp_path / "bad.pth"
    torch.save(state, src)
    proc = run_tool(src, tmp_path / "out.pkl")
    assert proc.returncode == 1
    assert "aux_head.weight" in proc.stderr
    assert not (tmp_path / "out.pkl").exists()


def test_cli_help_and_conversion(tmp_path):
    proc = run_tool("--help")
    assert proc.returncode == 0
    assert "torchvision ResNet checkpoint" in proc.stdout

    src, dst = tmp_path / "tv.pth", tmp_path / "d2.pth"
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save({"model": state}, src)
    proc = run_tool(src, dst, "--prefix", "")
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = torch.load(dst, weights_only=True)
    assert saved["matching_heuristics"] is True
    assert torch.equal(saved["model"]["res3.0.conv1.weight"], state["layer2.0.conv1.weight"])
    assert f"Wrote {len(saved['model'])} tensors to {dst}" in proc.stdout
