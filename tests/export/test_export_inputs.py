"""What the exported models' wrappers take: NumPy arrays as tensors, with the same detections; an
image scaled to 0-1 or already normalised refused with its range named, instead of no
detections without a word."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from helpers import DEMO_CONFIG, load_cfg

from dual_weighting.export import (
    OnnxRuntimeDetector,
    check_image,
    export_onnx,
    export_torchscript,
    load_torchscript,
)

pytest.importorskip("onnxruntime", reason="needs the export extra: pip install -e .[export]")


def image(seed=0, size=(96, 128)):
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    """``detectors(fmt)``: the demo model with random weights (class logits drawn wide, so that it
    detects), exported to ``fmt`` ("torchscript" or "onnx") once per module and loaded in its
    wrapper."""
    torch.manual_seed(0)
    model = build_model(load_cfg(DEMO_CONFIG, "MODEL.DW.SCORE_THRESH_TEST", "0.0")).eval()
    with torch.no_grad():
        model.head.cls_logits.weight.normal_(std=0.1)
    folder = tmp_path_factory.mktemp("export")
    cache = {}

    def get(fmt):
        if fmt not in cache:
            if fmt == "torchscript":
                export_torchscript(model, image(), folder / "model.ts")
                cache[fmt] = load_torchscript(folder / "model.ts")
            else:
                export_onnx(model, image(), folder / "model.onnx")
                cache[fmt] = OnnxRuntimeDetector(folder / "model.onnx", threads=1)
        return cache[fmt]

    return get


# ONNX export (torch.export) takes about a minute on a CPU: slow.
FORMATS = ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_numpy_images_give_the_detections_of_tensors(fmt, detectors):
    detector = detectors(fmt)
    tensor = image(seed=1)
    from_tensor = detector(tensor)
    from_numpy = detector(tensor.numpy())
    assert len(from_tensor[0]) > 0
    for a, b in zip(from_tensor, from_numpy):
        assert isinstance(b, torch.Tensor)
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("as_numpy", [False, True])
def test_images_outside_0_to_255_are_refused_with_their_range(fmt, as_numpy, detectors):
    good = image(seed=2)
    bad = {
        r"from 0 to 255.*values run from \S+ to 0\.99\d+ \(an image scaled to 0-1\?": good / 255,
        r"values run from -2\.\d+ to 2\.\d+$": (good - 127.5) / 60,
        r"values run from \S+ to 65535$": good * (65535 / good.max()),
    }
    for message, x in bad.items():
        with pytest.raises(ValueError, match=message):
            detectors(fmt)(x.numpy() if as_numpy else x)
    black = torch.zeros_like(good)
    assert detectors(fmt)(black.numpy() if as_numpy else black)[0].shape[1] == 4


def test_check_image_on_numpy_names_the_problem():
    good = image().numpy()
    check_image(good)
    with pytest.raises(ValueError, match="float32 pixel values, got float64"):
        check_image(good.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(one image, not a batch\)"):
        check_image(good[None])
    nan = good.copy()
    nan[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="infinite or NaN pixels"):
        check_image(nan)
    # Bilinear resizing stays within [0, 255]; a rounding error past it passes.
    check_image(np.clip(good, 0, 255) + np.float32(1e-4))
