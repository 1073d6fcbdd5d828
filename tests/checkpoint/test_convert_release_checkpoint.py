"""DW release -> detectron2 checkpoint conversion: ``dual_weighting.checkpoint``
and ``tools/convert_release_checkpoint.py`` run as users run it.

The release state dicts here are written from MMDetection's naming rules (ResNet ``layerK``
blocks, FPN ``lateral_convs``/``fpn_convs``, ``DWHead``), not from the converter's table, and each
of their tensors is also written straight into a reference model by walking its modules. The
converted checkpoint must load into a fresh model with no missing or unexpected key and give
that model exactly the reference model's tensors and outputs.

The R-50 configs are shrunk (narrow stages and FPN, 3 classes) so that the test is fast; the
names and the block counts are those of the full models.
"""

import math
import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_model
from helpers import REPO, THIN, THIN_BOTTLENECK, RecordingCheckpointer, load_cfg

from dual_weighting.checkpoint import convert_for_config, load_release_state_dict
from dual_weighting.checkpoint.release import rename

TOOL = REPO / "tools" / "convert_release_checkpoint.py"

# Every config made thin as everywhere in the tests (helpers.thin_cfg), for the tool too.
TINY = [*THIN, *THIN_BOTTLENECK]
REFINE = REPO / "configs" / "dw_R_50_FPN_refine_1x.yaml"
DCN = REPO / "configs" / "dw_R_50_FPN_DCN_refine_ms_2x.yaml"
PLAIN = REPO / "configs" / "dw_R_50_FPN_1x.yaml"
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def release_keys(*, dcn_layers=(), dcn_head=False, refine=False):
    """Keys of the release's R-50 FCOS + DWHead, in MMDetection's naming."""
    keys = ["backbone.conv1.weight"] + [f"backbone.bn1.{p}" for p in BN]
    for layer, num_blocks in enumerate((3, 4, 6, 3), start=1):
        for i in range(num_blocks):
            block = f"backbone.layer{layer}.{i}"
            for j in (1, 2, 3):
                keys += [f"{block}.conv{j}.weight"] + [f"{block}.bn{j}.{p}" for p in BN]
            if layer in dcn_layers:
                keys += [f"{block}.conv2.conv_offset.weight", f"{block}.conv2.conv_offset.bias"]
            if i == 0:
                keys += [f"{block}.downsample.0.weight"]
                keys += [f"{block}.downsample.1.{p}" for p in BN]
    for kind, count in (("lateral_convs", 3), ("fpn_convs", 5)):
        keys += [f"neck.{kind}.{i}.conv.{p}" for i in range(count) for p in ("weight", "bias")]
    for branch in ("cls_convs", "reg_convs"):
        for i in range(4):
            conv = f"bbox_head.{branch}.{i}"
            # The release's DWHead passes conv_bias=True: tower convs keep a bias before GN.
            keys += [f"{conv}.conv.weight", f"{conv}.conv.bias"]
            if dcn_head and i == 3:
                keys += [f"{conv}.conv.conv_offset.weight", f"{conv}.conv.conv_offset.bias"]
            keys += [f"{conv}.gn.weight", f"{conv}.gn.bias"]
    for name in ("conv_cls", "conv_reg", "conv_centerness") + (("reg_offset",) if refine else ()):
        keys += [f"bbox_head.{name}.weight", f"bbox_head.{name}.bias"]
    keys += [f"bbox_head.scales.{i}.scale" for i in range(5)]
    return keys + ["bbox_head.center_prior.mean", "bbox_head.center_prior.sigma"]


def reference_tensor(model, key):
    """The tensor of ``model`` that the release's ``key`` holds, found by walking the modules;
    None for the release's tensors with no counterpart."""
    top, *rest = key.split(".")
    if rest[-1] == "num_batches_tracked" or rest[0] == "center_prior":
        return None
    if top == "backbone":
        resnet = model.backbone.bottom_up
        if rest[0] == "conv1":
            return resnet.stem.conv1.weight
        if rest[0] == "bn1":
            return getattr(resnet.stem.conv1.norm, rest[1])
        block = resnet.stages[int(rest[0].removeprefix("layer")) - 1][int(rest[1])]
        layer, *tail = rest[2:]
        if layer == "downsample":
            module = block.shortcut if tail[0] == "0" else block.shortcut.norm
        elif layer.startswith("bn"):
            module = getattr(block, "conv" + layer[2:]).norm
        elif tail[0] == "conv_offset":
            module = block.conv2_offset
        else:
            module = getattr(block, layer)
        return getattr(module, tail[-1])
    if top == "neck":
        fpn, index = model.backbone, int(rest[1])
        # detectron2 keeps its lateral/output convs coarsest first.
        if rest[0] == "lateral_convs":
            module = fpn.lateral_convs[::-1][index]
        elif index < 3:
            module = fpn.output_convs[::-1][index]
        else:
            module = (fpn.top_block.p6, fpn.top_block.p7)[index - 3]
        return getattr(module, rest[-1])
    head = model.head
    if rest[0] in ("cls_convs", "reg_convs"):
        conv = (head.cls_tower if rest[0] == "cls_convs" else head.reg_tower)[int(rest[1])]
        if rest[2] == "gn":
            return getattr(conv.norm, rest[3])
        return getattr(conv.conv_offset if rest[3] == "conv_offset" else conv, rest[-1])
    if rest[0] == "scales":
        return head.scales[int(rest[1])]
    module = {
        "conv_cls": head.cls_logits,
        "conv_reg": head.box,
        "conv_centerness": head.centerness,
        "reg_offset": head.box_refine_offsets,
    }[rest[0]]
    return getattr(module, rest[1])


def random_value(key, shape, generator):
    """Values that keep a random 50-layer network finite: fan-in scaled weights, BN variances
    in [0.5, 1.5]."""
    if key.endswith("running_var"):
        return torch.rand(shape, generator=generator) + 0.5
    if len(shape) == 4:
        return torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
    return 0.1 * torch.randn(shape, generator=generator) + (1.0 if key.endswith("scale") else 0.0)


def make_release_checkpoint(reference, keys, num_classes=3, seed=0):
    """A release state dict with ``keys``; each tensor is also copied into ``reference``."""
    generator = torch.Generator().manual_seed(seed)
    state, written = {}, set()
    for key in keys:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("center_prior.mean"):
            state[key] = torch.zeros(num_classes, 2)
        elif key.endswith("center_prior.sigma"):
            state[key] = torch.ones(num_classes, 2) + 0.11
        else:
            target = reference_tensor(reference, key)
            state[key] = random_value(key, target.shape, generator)
            with torch.no_grad():
                target.copy_(state[key])
            written.add(target.data_ptr())
    return state, written


def build(config, opts=()):
    return build_model(load_cfg(config, *TINY, *opts)).eval()


def outputs(model, image):
    with torch.no_grad():
        images = model.preprocess_image([{"image": image}])
        features = model.backbone(images.tensor)
        return [features[f] for f in sorted(features)], model.head(
            [features[f] for f in model.head_in_features]
        )


@pytest.mark.parametrize(
    "config,variant",
    [
        (REFINE, {"refine": True}),
        (DCN, {"refine": True, "dcn_layers": (2, 3, 4), "dcn_head": True}),
    ],
    ids=["refine", "dcn_refine"],
)
def test_converted_model_equals_directly_set_model(tmp_path, config, variant):
    reference = build(config)
    keys = release_keys(**variant)
    state, written = make_release_checkpoint(reference, keys)
    # Every tensor of the model was set from the release dict, through the module walk.
    assert written == {t.data_ptr() for t in reference.state_dict().values()}

    src, dst = tmp_path / "release.pth", tmp_path / "converted.pth"
    # The refine case writes MMDetection's file layout, the DCN case a raw state dict.
    torch.save(
        {"meta": {"epoch": 12}, "state_dict": state} if "dcn_layers" not in variant else state, src
    )
    proc = run_tool(src, dst, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"tensors for {config} to {dst}" in proc.stdout

    model = build(config)
    checkpointer = RecordingCheckpointer(model)
    checkpointer.load(str(dst))
    assert checkpointer.incompatible.missing_keys == []
    assert checkpointer.incompatible.unexpected_keys == []
    expected = reference.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key

    # P7 is 1 x 2 cells: GroupNorm with one channel per group needs more than one value.
    image = torch.rand(3, 96, 160) * 255
    (features, head), (ref_features, ref_head) = outputs(model, image), outputs(reference, image)
    for got, want in zip([*features, *sum(head, [])], [*ref_features, *sum(ref_head, [])]):
        assert torch.isfinite(want).all()
        assert torch.equal(got, want)


def run_tool(src, dst, config):
    """``tools/convert_release_checkpoint.py SRC DST --config-file CONFIG --opts TINY``."""
    return subprocess.run(
        [sys.executable, str(TOOL), str(src), str(dst), "--config-file", str(config),
         "--opts", *TINY],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
    )  # fmt: skip


def _convert_expecting_error(tmp_path, state, config=REFINE):
    """The ValueError message of converting ``state`` (saved to a file) for ``config``."""
    src = tmp_path / "release.pth"
    torch.save(state, src)
    with pytest.raises(ValueError) as error:
        convert_for_config(load_release_state_dict(src), load_cfg(config, *TINY))
    return str(error.value)


@pytest.fixture(scope="module")
def refine_release():
    reference = build(REFINE)
    keys = release_keys(refine=True)
    return make_release_checkpoint(reference, keys)[0]


def test_unknown_key_fails_loudly(tmp_path, refine_release):
    state = dict(refine_release, **{"bbox_head.conv_iou.weight": torch.zeros(1)})
    err = _convert_expecting_error(tmp_path, state)
    assert "bbox_head.conv_iou.weight" in err and "1 keys are not" in err


def test_tool_exits_with_the_error_and_writes_nothing(tmp_path, refine_release):
    src, dst = tmp_path / "release.pth", tmp_path / "out.pth"
    torch.save(dict(refine_release, **{"bbox_head.conv_iou.weight": torch.zeros(1)}), src)
    proc = run_tool(src, dst, REFINE)
    assert proc.returncode == 1
    assert not dst.exists()
    assert f"error: {src}: " in proc.stderr and "bbox_head.conv_iou.weight" in proc.stderr


def test_missing_key_fails_loudly(tmp_path, refine_release):
    state = {k: v for k, v in refine_release.items() if k != "backbone.layer3.5.bn2.running_var"}
    err = _convert_expecting_error(tmp_path, state)
    assert "1 missing" in err and "backbone.bottom_up.res4.5.conv2.norm.running_var" in err


def test_checkpoint_for_another_config_fails_loudly(tmp_path, refine_release):
    err = _convert_expecting_error(tmp_path, refine_release, config=PLAIN)
    assert "2 unexpected" in err and "head.box_refine_offsets.weight" in err


def test_wrong_shape_and_center_prior_fail_loudly(tmp_path, refine_release):
    state = dict(refine_release, **{"bbox_head.conv_cls.bias": torch.zeros(80)})
    err = _convert_expecting_error(tmp_path, state)
    assert "head.cls_logits.bias: (80,) vs (3,)" in err
    state = dict(refine_release, **{"bbox_head.center_prior.sigma": torch.full((3, 2), 2.0)})
    err = _convert_expecting_error(tmp_path, state)
    assert "center_prior.sigma" in err and "CENTER_PRIOR_SIGMA" in err


def test_release_names_map_to_detectron2_names_by_hand():
    assert rename("backbone.layer4.2.conv2.conv_offset.bias") == (
        "backbone.bottom_up.res5.2.conv2_offset.bias"
    )
    assert rename("backbone.layer1.0.downsample.1.running_mean") == (
        "backbone.bottom_up.res2.0.shortcut.norm.running_mean"
    )
    assert rename("neck.lateral_convs.0.conv.weight") == "backbone.fpn_lateral3.weight"
    assert rename("neck.fpn_convs.2.conv.bias") == "backbone.fpn_output5.bias"
    assert rename("neck.fpn_convs.4.conv.weight") == "backbone.top_block.p7.weight"
    assert rename("neck.lateral_convs.3.conv.weight") is None
    assert rename("bbox_head.cls_convs.3.conv.conv_offset.weight") == (
        "head.cls_tower.3.conv_offset.weight"
    )
    assert rename("bbox_head.reg_convs.1.gn.bias") == "head.reg_tower.1.norm.bias"
    assert rename("bbox_head.scales.4.scale") == "head.scales.4"
    assert rename("bbox_head.reg_offset.weight") == "head.box_refine_offsets.weight"
    assert rename("backbone.layer2.0.bn1.num_batches_tracked") == ""
    assert rename("bbox_head.center_prior.mean") == ""
    assert rename("roi_head.fc.weight") is None
