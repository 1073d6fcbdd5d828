"""What the exported models' wrappers take: NumPy arrays as tensors, with the same detections; an
image scaled to 0-1 or already normalised refused with its range named, instead of no
detections without a word."""

import numpy as np
import pytest
import torch

from dual_weighting.export import check_image

pytest.importorskip("onnxruntime", reason="needs the export extra: pip install -e .[export]")


def image(seed=0, size=(96, 128)):
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.fixture
def detectors(exported):
    """``detectors(fmt)``: the demo model with random weights (prediction layers drawn wide, so
    that it detects) exported to ``fmt`` ("torchscript" or "onnx") and loaded in its wrapper:
    conftest's session-wide export, the one tests/export/test_export.py checks against PyTorch
    (what these tests check is the wrapper's, whatever the weights and the trace size)."""
    return lambda fmt: exported("demo", fmt)[1]


# ONNX export (torch.export) takes about a minute on a CPU, once a session: slow.
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
