"""The release's backbone BN (frozen statistics, trained affine): the layer, the backbone built with
it, the optimizer's zero decay, loading ImageNet and release weights, and two gloo workers."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.solver import build_optimizer
from helpers import CONFIGS, RecordingCheckpointer, load_cfg, thin_cfg
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dual_weighting.checkpoint import (
    convert_release_state_dict,
    convert_torchvision_resnet,
    save_detectron2_checkpoint,
)
from dual_weighting.layers import FrozenStatsBatchNorm2d
from dual_weighting.modeling.backbone import build_dw_resnet

R50 = CONFIGS / "dw_R_50_FPN_1x.yaml"
STAT_NAMES = ("running_mean", "running_var")


def randomise_norms(module, seed=0):
    """Statistics and affine parameters away from their init, so that any update shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))
    return module


def stats(module):
    return {k: v.clone() for k, v in module.state_dict().items() if k.endswith(STAT_NAMES)}


def test_layer_normalises_with_running_statistics_in_train_mode():
    torch.manual_seed(0)
    layer = randomise_norms(FrozenStatsBatchNorm2d(3)).train()
    before = stats(layer)
    x = 3 * torch.randn(4, 3, 5, 6, dtype=torch.float64) + 1
    layer.double()
    y = layer(x)
    shape = (1, 3, 1, 1)
    mean, var = before["running_mean"].double(), before["running_var"].double()
    expected = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-5)
    expected = expected * layer.weight.detach().view(shape) + layer.bias.detach().view(shape)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    y.square().sum().backward()
    assert layer.weight.grad.abs().min() > 0 and layer.bias.grad.abs().min() > 0
    for name, value in stats(layer).items():
        assert torch.equal(value.float(), before[name]), name


def test_state_dict_names_are_frozen_bn_names_and_bn_checkpoints_load():
    layer = FrozenStatsBatchNorm2d(4)
    assert set(layer.state_dict()) == set(FrozenBatchNorm2d(4).state_dict())
    assert set(layer.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    # A trained BN's state dict (with num_batches_tracked) loads; the count is ignored.
    bn = randomise_norms(nn.BatchNorm2d(4))
    result = layer.load_state_dict(bn.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name in STAT_NAMES + ("weight", "bias"):
        assert torch.equal(getattr(layer, name), getattr(bn, name)), name
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(layer(x), bn.eval()(x))


def test_backbone_trains_affine_not_statistics_and_optimizer_skips_decay():
    torch.manual_seed(0)
    # A tiny lr: the loss below is arbitrary and its gradients large (the network is random).
    # A narrow R-50 (same blocks and names, fewer channels).
    cfg = thin_cfg(R50, "SOLVER.BASE_LR", "1e-6")
    assert cfg.MODEL.RESNETS.NORM == "FrozenStatsBN" and cfg.MODEL.BACKBONE.FREEZE_AT == 2
    backbone = randomise_norms(build_backbone(cfg)).train()
    bottom_up = backbone.bottom_up
    frozen = [bottom_up.stem, bottom_up.res2]
    trained = [bottom_up.res3, bottom_up.res4, bottom_up.res5]
    # Stem and res2 are fully frozen (the release's frozen_stages=1), res3-res5 use the new norm.
    for stage in frozen:
        assert not any(p.requires_grad for p in stage.parameters())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in stage.modules())
        assert any(isinstance(m, FrozenBatchNorm2d) for m in stage.modules())
    norms = [m for s in trained for m in s.modules() if isinstance(m, FrozenStatsBatchNorm2d)]
    assert len(norms) == 3 * (4 + 6 + 3) + 3  # three per block, one per shortcut
    assert not any(isinstance(m, FrozenBatchNorm2d) for s in trained for m in s.modules())

    # detectron2's optimizer sees them as norms: SOLVER.WEIGHT_DECAY_NORM (0) applies.
    optimizer = build_optimizer(cfg, backbone)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    for norm in norms:
        assert decay[id(norm.weight)] == 0.0 and decay[id(norm.bias)] == 0.0
    assert decay[id(bottom_up.res3[0].conv1.weight)] == cfg.SOLVER.WEIGHT_DECAY == 1e-4

    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    affine_before = [(n.weight.detach().clone(), n.bias.detach().clone()) for n in norms]
    for step in range(3):
        optimizer.zero_grad()
        out = backbone(torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(step)))
        sum(v.mean() for v in out.values()).backward()
        for norm in norms:
            assert norm.weight.grad.abs().sum() > 0 and norm.bias.grad.abs().sum() > 0
        optimizer.step()

    after = backbone.state_dict()
    for key, value in before.items():
        if key.endswith(STAT_NAMES) or key.startswith(("bottom_up.stem.", "bottom_up.res2.")):
            assert torch.equal(after[key], value), key
    for norm, (weight, bias) in zip(norms, affine_before):
        assert not torch.equal(norm.weight, weight) and not torch.equal(norm.bias, bias)


def test_frozen_bn_bn_stay_selectable_and_unknown_norm_is_named():
    for name, expected in (("FrozenBN", FrozenBatchNorm2d), ("BN", nn.BatchNorm2d)):
        backbone = build_backbone(thin_cfg(R50, "MODEL.RESNETS.NORM", name))
        norm = backbone.bottom_up.res3[0].conv1.norm
        assert type(norm) is expected, name
    with pytest.raises(ValueError, match="MODEL.RESNETS.NORM = 'FrozenBNN'"):
        build_backbone(load_cfg(R50, "MODEL.RESNETS.NORM", "FrozenBNN"))


def _torchvision_r50():
    torch.manual_seed(0)
    return randomise_norms(torchvision.models.resnet50()).state_dict()


def _write_detectron2_r50(tv, path):
    """detectron2's ImageNetPretrained/torchvision/R-50.pkl: short names, numpy arrays, matched
    by suffix ("matching_heuristics"), no num_batches_tracked."""
    save_detectron2_checkpoint(convert_torchvision_resnet(tv, prefix=""), path, prefix="")


def _write_converted_release(tv, path):
    """The release's ResNet (MMDetection) has torchvision's names under "backbone.", BN counts
    included; the converter renames them and drops the counts."""
    release = {f"backbone.{k}": v for k, v in tv.items() if not k.startswith("fc.")}
    converted, _ = convert_release_state_dict(release)
    torch.save({"model": converted, "matching_heuristics": False}, path)


@pytest.mark.parametrize(
    "write,file_name,block,torchvision_norm",
    [
        (_write_detectron2_r50, "R-50.pkl", ("res4", 5, "conv3"), "layer3.5.bn3"),
        (_write_converted_release, "release.pth", ("res3", 0, "shortcut"), "layer2.0.downsample.1"),
    ],
    ids=["detectron2_R-50", "converted_release"],
)
def test_weights_load_with_no_missing_or_unexpected_keys(
    tmp_path, write, file_name, block, torchvision_norm
):
    tv = _torchvision_r50()
    write(tv, tmp_path / file_name)
    # Parameters named "backbone.*", as in DWFCOS.
    model = nn.ModuleDict({"backbone": build_backbone(load_cfg(R50))})
    checkpointer = RecordingCheckpointer(model)
    checkpointer.load(str(tmp_path / file_name))
    incompatible = checkpointer.incompatible
    assert [k for k in incompatible.missing_keys if "bottom_up" in k] == []
    assert incompatible.unexpected_keys == []
    stage, index, conv = block
    norm = getattr(getattr(model["backbone"].bottom_up, stage)[index], conv).norm
    assert isinstance(norm, FrozenStatsBatchNorm2d)
    for name in STAT_NAMES + ("weight", "bias"):
        assert torch.equal(getattr(norm, name), tv[f"{torchvision_norm}.{name}"]), name


WORLD_SIZE = 2


def _small_resnet():
    cfg = thin_cfg(R50, "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64")
    torch.manual_seed(0)
    return randomise_norms(build_dw_resnet(cfg, ShapeSpec(channels=3)))


def _worker(rank, init_file, out_dir):
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        # As DWTrainer does on CPU: DDP without device ids, buffers not broadcast.
        model = DistributedDataParallel(_small_resnet().train(), broadcast_buffers=False)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6)
        generator = torch.Generator().manual_seed(100 + rank)  # other images on each worker
        for _ in range(2):
            optimizer.zero_grad()
            out = model(torch.randn(2, 3, 64, 64, generator=generator))
            sum(v.mean() for v in out.values()).backward()
            optimizer.step()
        torch.save(model.module.state_dict(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_workers_leave_statistics_unchanged(tmp_path):
    initial = _small_resnet().state_dict()
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    affine = "res3.0.conv1.norm.weight"
    for state in results:
        for key, value in initial.items():
            if key.endswith(STAT_NAMES):
                assert torch.equal(state[key], value), key
        assert not torch.equal(state[affine], initial[affine])
    # The gradient all-reduce keeps the trained affine parameters equal on both workers.
    torch.testing.assert_close(results[0][affine], results[1][affine])
