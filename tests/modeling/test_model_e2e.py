"""detectron2's end-to-end model cases (empty and half-empty data, non-finite inference, autocast
dtypes), over every config in configs/, each made thin so that all of them take seconds."""

import pytest
import torch
from detectron2.structures import ImageList
from detectron2.utils.events import EventStorage
from helpers import (
    CUDA_PARAM,
    LOSS_NAMES,
    SIZES,
    YAMLS,
    images,
    instances,
    run_nan_offset_check,
    thin_model,
)


def train_step(model, num_boxes):
    batch = [
        {"image": image, "instances": instances(size, n)}
        for image, size, n in zip(images(), SIZES, num_boxes)
    ]
    with EventStorage():
        losses = model.train()(batch)
    assert set(losses) == set(LOSS_NAMES)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.head.cls_logits.weight.grad.abs().sum() > 0
    return losses


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_empty_data(path):
    model = thin_model(path)
    losses = train_step(model, num_boxes=[0, 0])
    # Nothing to match: only the negative classification loss remains.
    assert losses["loss_cls_pos"] == 0 and losses["loss_loc"] == 0
    assert losses["loss_cls_neg"] > 0
    model.eval().test_score_thresh = 0.0
    with torch.no_grad():
        outputs = model([{"image": image} for image in images()])
    for out, size in zip(outputs, SIZES):
        assert out["instances"].image_size == size and len(out["instances"]) > 0


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_half_empty_data(path):
    model = thin_model(path)
    losses = train_step(model, num_boxes=[0, 2])
    assert all(v > 0 for v in losses.values())
    # The localisation loss reaches the box branch (box refine included where configured).
    assert model.head.box.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def kernel_survives_nan():
    """The non-finite cases below run the deformable kernels on NaN offsets, which segfaulted
    before; stop here, with one error per test, if they still do (see test_robustness.py)."""
    proc = run_nan_offset_check()
    if proc.returncode != 0:
        pytest.fail(f"deformable conv on NaN offsets failed (exit {proc.returncode})")


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_inf_nan_data(path, value, kernel_survives_nan):
    model = thin_model(path).eval()
    model.test_score_thresh = 0.0
    image = ImageList(torch.full((1, 3, 64, 64), value), [(62, 62)])
    strides = [model.backbone.output_shape()[f].stride for f in model.head_in_features]
    features = [torch.full((1, 64, -(-64 // s), -(-64 // s)), value) for s in strides]
    with torch.no_grad():
        predictions = model.head(features)
        # Non-finite in, non-finite out: nothing that a finite check would let through.
        assert not any(torch.isfinite(x).any() for level in predictions for x in level)
        # Every candidate is dropped (test_robustness.py: which ones, by hand).
        results = model.forward_inference(image, features, predictions)

        # A model whose weights became non-finite, served on a finite image.
        model.backbone.bottom_up.stem.conv1.weight.fill_(value)
        (served,) = model([{"image": images()[0]}])
    results.append(served["instances"])
    for result in results:
        assert result.image_size in ((62, 62), SIZES[0])
        assert len(result) == 0


@pytest.mark.parametrize(
    "device, dtype",
    [("cpu", torch.bfloat16), pytest.param("cuda", torch.float16, marks=CUDA_PARAM.marks)],
)
@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_autocast_dtypes(path, device, dtype):
    model = thin_model(path, device).eval()
    model.test_score_thresh = 0.0
    seen = {}

    def record(name):
        def hook(module, args, output):
            seen[name] = (args[0], output)

        return hook

    model.backbone.register_forward_hook(record("backbone"))
    model.head.register_forward_hook(record("head"))
    with torch.no_grad(), torch.autocast(device, dtype=dtype):
        (out,) = model([{"image": images()[0]}])
    backbone_in, backbone_out = seen["backbone"]
    head_in, (logits, box_ltrb, centerness) = seen["head"]
    assert backbone_in.dtype == torch.float32
    assert {x.dtype for x in backbone_out.values()} == {dtype}
    assert {x.dtype for x in head_in + logits + centerness} == {dtype}
    # Box refine samples in float32 (deformable convolution has no half kernel on CPU).
    box_dtype = torch.float32 if model.head.box_refine else dtype
    assert {x.dtype for x in box_ltrb} == {box_dtype}
    inst = out["instances"]
    assert len(inst) > 0 and inst.scores.dtype == dtype
    assert inst.pred_boxes.tensor.dtype == torch.float32
    assert torch.isfinite(inst.pred_boxes.tensor).all()
